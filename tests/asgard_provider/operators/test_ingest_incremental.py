"""Interval-keyed ingestion: each run replaces exactly its data interval's slice of Bronze."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.ingest import SqlToIcebergOperator

CONTEXT = {"run_id": "scheduled__test"}
DAY1 = ("2025-11-10T06:00:00+00:00", "2025-11-11T06:00:00+00:00")
DAY2 = ("2025-11-11T06:00:00+00:00", "2025-11-12T06:00:00+00:00")


def _events() -> list[tuple[int, str, float]]:
    start = datetime(2025, 11, 10, 0, 0)
    # one event every 30 minutes over two and a half days, ids in time order
    return [(i, (start + timedelta(minutes=30 * i)).isoformat(sep=" "), float(i)) for i in range(120)]


@pytest.fixture
def sqlite_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (event_id INTEGER, updated_at TEXT, amount REAL)")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", _events())
    monkeypatch.setenv("AIRFLOW_CONN_TEST_EVENTS", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


@pytest.fixture
def postgres_events(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import psycopg2

    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}")
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events (event_id INTEGER, updated_at TIMESTAMP, amount DOUBLE PRECISION)")
        cur.executemany("INSERT INTO events VALUES (%s, %s, %s)", _events())
    conn.close()
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_EVENTS",
        json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": postgres_db}
        ),
    )
    return postgres_db


def _ingest(interval: tuple[str, str], full_refresh: str = "False") -> dict:
    op = SqlToIcebergOperator(
        task_id="ingest_events",
        source_conn_id="test_events",
        source_table="events",
        target_table="bronze.events",
        cursor_column="updated_at",
        interval_start=interval[0],
        interval_end=interval[1],
        full_refresh=full_refresh,
    )
    return op.execute(CONTEXT)


def _ids() -> list[int]:
    return sorted(IcebergHook().load_table("bronze.events").scan().to_arrow().column("event_id").to_pylist())


def _check_interval_semantics(update_source) -> None:
    # 2025-11-10 06:00 <= t < 2025-11-11 06:00: events 12..59 (events are every 30 minutes from midnight)
    assert _ingest(DAY1)["rows_written"] == 48
    assert _ids() == list(range(12, 60))
    for _ in range(2):  # reruns replace the slice: same rows, never duplicates
        _ingest(DAY1)
        assert _ids() == list(range(12, 60))
    assert _ingest(DAY2)["rows_written"] == 48
    assert _ids() == list(range(12, 108))
    # A corrected source row inside DAY1 is picked up by a rerun of DAY1, without touching DAY2's rows.
    update_source()
    _ingest(DAY1)
    rows = IcebergHook().load_table("bronze.events").scan().to_arrow().to_pylist()
    assert len(rows) == 96
    assert {r["event_id"]: r["amount"] for r in rows}[20] == -1.0
    # full refresh reloads everything
    assert _ingest(DAY1, full_refresh="True")["rows_written"] == 120
    assert _ids() == list(range(120))


def test_sqlite_interval_reads_replace_their_slice(asgard_home: Path, sqlite_events: Path) -> None:
    def update() -> None:
        with sqlite3.connect(sqlite_events) as conn:
            conn.execute("UPDATE events SET amount = -1 WHERE event_id = 20")

    _check_interval_semantics(update)


@pytest.mark.postgres
def test_postgres_interval_reads_replace_their_slice(asgard_home: Path, postgres_events: str) -> None:
    import psycopg2

    def update() -> None:
        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_events}")
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE events SET amount = -1 WHERE event_id = 20")
        conn.close()

    _check_interval_semantics(update)
    field = IcebergHook().load_table("bronze.events").schema().find_field("updated_at")
    assert str(field.field_type).startswith("timestamp")


def test_zero_length_interval_is_refused(asgard_home: Path, sqlite_events: Path) -> None:
    with pytest.raises(SourceError, match="empty data interval"):
        _ingest((DAY1[0], DAY1[0]))
    assert not IcebergHook().table_exists("bronze.events")


def test_empty_interval_is_a_successful_no_op(asgard_home: Path, sqlite_events: Path) -> None:
    quiet = ("2025-12-01T00:00:00+00:00", "2025-12-02T00:00:00+00:00")
    assert _ingest(quiet)["rows_written"] == 0
    assert not IcebergHook().table_exists("bronze.events")
    _ingest(DAY1)
    assert _ingest(quiet)["rows_written"] == 0
    assert _ids() == list(range(12, 60))
