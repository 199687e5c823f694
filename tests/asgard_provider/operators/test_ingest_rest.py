"""REST API sources against the demo's support API on 127.0.0.1: pagination, auth, intervals, bad answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.ingest import RestToIcebergOperator

CONTEXT = {"run_id": "manual__rest"}
TOKEN = "tok3n-for-the-test-api"
START = datetime(2025, 11, 9)
N_TICKETS = 1050  # one every hour: 11 pages of 100, the last one short


@pytest.fixture
def support_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from asgard_demo.support_api import serve

    with (tmp_path / "support_tickets.jsonl").open("w") as fh:
        for i in range(N_TICKETS):
            created = (START + timedelta(hours=i)).isoformat() + "Z"
            fh.write(
                json.dumps({"ticket_id": i, "customer_id": 1000 + i % 7, "email": f"u{i}@x.io", "created_at": created})
                + "\n"
            )
    with serve(tmp_path, token=TOKEN) as api:
        monkeypatch.setenv(
            "AIRFLOW_CONN_TEST_API",
            json.dumps({"conn_type": "http", "host": api.url, "password": TOKEN, "extra": {"auth": "bearer"}}),
        )
        yield api.url


def _op(**overrides: object) -> RestToIcebergOperator:
    kwargs: dict[str, object] = {
        "task_id": "ingest_tickets",
        "rest_conn_id": "test_api",
        "resource": "tickets",
        "record_path": "data",
        "target_table": "bronze.tickets",
        "pagination": {"style": "page_number", "size": 100},
    }
    kwargs.update(overrides)
    return RestToIcebergOperator(**kwargs)  # type: ignore[arg-type]


def _ids() -> list[int]:
    return sorted(IcebergHook().load_table("bronze.tickets").scan().to_arrow().column("ticket_id").to_pylist())


def test_every_page_lands_in_one_snapshot_without_excluded_columns(asgard_home: Path, support_api: str) -> None:
    result = _op(exclude_columns=["email"], batch_rows=400).execute(CONTEXT)
    assert result["rows_written"] == N_TICKETS
    assert _ids() == list(range(N_TICKETS))
    table = IcebergHook().load_table("bronze.tickets")
    assert "email" not in table.schema().as_arrow().names
    _op(exclude_columns=["email"]).execute(CONTEXT)  # a rerun replaces, never duplicates
    assert _ids() == list(range(N_TICKETS))


def test_interval_reads_send_updated_since_and_replace_their_slice(asgard_home: Path, support_api: str) -> None:
    def ingest(day: int) -> int:
        lo, hi = START + timedelta(days=day), START + timedelta(days=day + 1)
        op = _op(
            cursor_column="created_at",
            since_param="updated_since",
            interval_start=lo.isoformat() + "+00:00",
            interval_end=hi.isoformat() + "+00:00",
        )
        return int(op.execute(CONTEXT)["rows_written"])

    assert ingest(1) == 24
    assert ingest(1) == 24
    assert _ids() == list(range(24, 48))
    assert ingest(2) == 24
    assert _ids() == list(range(24, 72))
    cursor = IcebergHook().load_table("bronze.tickets").schema().find_field("created_at")
    assert str(cursor.field_type).startswith("timestamp")


def test_wrong_token_is_refused_naming_the_resource_not_the_token(
    asgard_home: Path, support_api: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_API",
        json.dumps(
            {"conn_type": "http", "host": support_api, "password": "wrong-" + TOKEN, "extra": {"auth": "bearer"}}
        ),
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError, match=r"'tickets'.*'test_api'.*HTTP 401") as raised:
        _op().execute(CONTEXT)
    assert TOKEN not in str(raised.value) and TOKEN not in caplog.text
    assert not IcebergHook().table_exists("bronze.tickets")


def test_missing_record_path_names_the_key(asgard_home: Path, support_api: str) -> None:
    with pytest.raises(SourceError, match=r"record_path 'items' has no key 'items'"):
        _op(record_path="items").execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.tickets")


def test_misspelt_column_names_the_key(asgard_home: Path, support_api: str) -> None:
    with pytest.raises(SourceError, match=r"columns names 'ticket'"):
        _op(columns=["ticket"]).execute(CONTEXT)


def test_unknown_host_names_the_connection(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_API",
        json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9", "login": "u", "password": TOKEN}),
    )
    with pytest.raises(SourceError, match=r"'test_api'.*request failed") as raised:
        _op(connect_timeout=2).execute(CONTEXT)
    assert TOKEN not in str(raised.value)
