"""REST API sources (dlt's RESTClient) against the demo's support API on 127.0.0.1: pages, auth, intervals, errors.

Failures the demo API does not make (5xx, a foreign next link, basic auth) come from a small server on 127.0.0.1
in this file that serves the same tickets.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


@pytest.mark.parametrize(
    "pagination",
    [
        {"style": "cursor", "size": 100},
        {"style": "next_url", "next_url_path": "next"},
        {"style": "link_header"},
    ],
    ids=["cursor", "next_url", "link_header"],
)
def test_every_pagination_style_reads_every_ticket_once(
    asgard_home: Path, support_api: str, pagination: dict[str, object]
) -> None:
    params = {"per_page": "100"}
    result = _op(pagination=pagination, params=params).execute(CONTEXT)
    assert result["rows_written"] == N_TICKETS
    assert _ids() == list(range(N_TICKETS))


class _Api(ThreadingHTTPServer):
    """Pages of 10 tickets that can fail: ``fail`` maps a page to the statuses it answers before a 200."""

    daemon_threads = True

    def __init__(self, n: int, *, basic: tuple[str, str] | None = None, next_host: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.n, self.basic, self.next_host = n, basic, next_host
        self.fail: dict[int, list[int]] = {}
        self.hits: dict[int, int] = {}
        self.authorizations: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ApiHandler(BaseHTTPRequestHandler):
    server: _Api

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        api = self.server
        api.authorizations.append(self.headers.get("Authorization"))
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[-1])
        api.hits[page] = api.hits.get(page, 0) + 1
        if api.basic and self.headers.get("Authorization") != "Basic " + base64.b64encode(
            ":".join(api.basic).encode()
        ).decode("ascii"):
            return self._send(401, {})
        pending = api.fail.get(page)
        if pending:
            return self._send(pending.pop(0), {"detail": "failing on purpose"})
        rows = [{"ticket_id": i} for i in range((page - 1) * 10, min(page * 10, api.n))]
        following = f"{api.next_host or api.url}/tickets?page={page + 1}" if page * 10 < api.n else None
        self._send(200, {"data": rows, "next": following})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api_server() -> Iterator[Any]:
    servers: list[_Api] = []

    def start(n: int = 50, **kwargs: Any) -> _Api:
        api = _Api(n, **kwargs)
        threading.Thread(target=api.serve_forever, daemon=True).start()
        servers.append(api)
        return api

    yield start
    for api in servers:
        api.shutdown()
        api.server_close()


def _connect(monkeypatch: pytest.MonkeyPatch, api: _Api, **fields: object) -> None:
    conn = {"conn_type": "http", "host": api.url, "password": TOKEN, "extra": {"auth": "bearer"}} | fields
    monkeypatch.setenv("AIRFLOW_CONN_TEST_API", json.dumps(conn))


def _snapshot() -> int | None:
    snapshot = IcebergHook().load_table("bronze.tickets").current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def test_a_server_error_on_page_3_is_retried_then_commits_nothing(
    asgard_home: Path, api_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = api_server()
    _connect(monkeypatch, api)
    assert _op(pagination={"style": "page_number", "size": 10}).execute(CONTEXT)["rows_written"] == 50
    before = _snapshot()
    api.fail[3] = [500, 500, 500]
    with pytest.raises(SourceError, match=r"'tickets'.*'test_api'.*page 3: HTTP 500"):
        _op(pagination={"style": "page_number", "size": 10}).execute(CONTEXT)
    assert api.hits[3] == 1 + 3  # the first run's read, then three tries
    assert _snapshot() == before


def test_a_transient_503_is_retried_and_every_row_lands(
    asgard_home: Path, api_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = api_server()
    _connect(monkeypatch, api)
    api.fail[2] = [503]
    assert _op(pagination={"style": "page_number", "size": 10}).execute(CONTEXT)["rows_written"] == 50
    assert api.hits[2] == 2
    assert _ids() == list(range(50))


def test_a_next_link_to_another_origin_is_refused_before_the_token_follows_it(
    asgard_home: Path, api_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = api_server()
    api = api_server(next_host=elsewhere.url.replace("127.0.0.1", "localhost"))
    _connect(monkeypatch, api)
    with pytest.raises(SourceError, match=r"next page link leaves the API's origin \(localhost:\d+\); refused"):
        _op(pagination={"style": "next_url"}).execute(CONTEXT)
    assert elsewhere.authorizations == []
    assert not IcebergHook().table_exists("bronze.tickets")


@pytest.fixture
def debug_log() -> Any:
    """Every record at DEBUG of the root, urllib3 and task loggers, whatever handlers earlier tests configured."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("", "urllib3", "airflow.task")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_basic_auth_from_the_connection_and_no_secret_in_debug_logs(
    asgard_home: Path, api_server: Any, monkeypatch: pytest.MonkeyPatch, debug_log: list[str]
) -> None:
    api = api_server(basic=("reader", TOKEN))
    _connect(monkeypatch, api, login="reader", extra={"headers": {"X-Api-Key": "k3y-" + TOKEN}})
    assert _op(pagination={"style": "next_url"}).execute(CONTEXT)["rows_written"] == 50
    assert api.authorizations[0] == "Basic " + base64.b64encode(f"reader:{TOKEN}".encode()).decode("ascii")
    text = "\n".join(debug_log)
    assert "GET /tickets" in text  # urllib3 logged each request at DEBUG ...
    assert TOKEN not in text and "cmVhZGVy" not in text  # ... without a credential
    _connect(monkeypatch, api, login="reader", password="wrong-" + TOKEN)
    with pytest.raises(SourceError, match=r"page 1: HTTP 401") as raised:
        _op().execute(CONTEXT)
    assert TOKEN not in str(raised.value) and TOKEN not in "\n".join(debug_log)


def test_dlt_is_not_imported_until_a_read_starts() -> None:
    import subprocess
    import sys

    code = "import sys, asgard_provider.operators.ingest, asgard_provider.stages.ingest; print('dlt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "False"
