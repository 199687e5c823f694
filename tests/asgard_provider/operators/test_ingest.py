from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from asgard_provider.exceptions import CatalogError, SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.ingest import FileToIcebergOperator, SqlToIcebergOperator

CONTEXT = {"run_id": "manual__test"}


@pytest.fixture
def customers_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "customers.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, registration_date TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [(1000 + i, f"user{i}@example.com", "2024-01-15", i * 1.5) for i in range(2500)]
            + [(9999, None, None, None)],
        )
    monkeypatch.setenv("AIRFLOW_CONN_TEST_CUSTOMERS", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


def _rows(table: str) -> pa.Table:
    return IcebergHook().load_table(table).scan().to_arrow()


def test_sql_to_iceberg_streams_all_rows_in_one_snapshot(asgard_home: Path, customers_db: Path) -> None:
    op = SqlToIcebergOperator(
        task_id="ingest",
        source_conn_id="test_customers",
        source_table="customers",
        target_table="bronze.customers",
        batch_rows=1000,
    )
    result = op.execute(CONTEXT)
    assert result["rows_written"] == 2501
    data = _rows("bronze.customers")
    assert data.num_rows == 2501
    assert sorted(data.column("customer_id").to_pylist())[:2] == [1000, 1001]
    table = IcebergHook().load_table("bronze.customers")
    # three batches, one commit visible as the current snapshot; a rerun replaces rather than duplicates
    op.execute(CONTEXT)
    assert _rows("bronze.customers").num_rows == 2501
    assert table.refresh().current_snapshot().snapshot_id != result["snapshot_id"]


def test_sql_to_iceberg_evolves_schema_when_source_adds_a_column(asgard_home: Path, customers_db: Path) -> None:
    op = SqlToIcebergOperator(
        task_id="i", source_conn_id="test_customers", source_table="customers", target_table="bronze.customers"
    )
    op.execute(CONTEXT)
    with sqlite3.connect(customers_db) as conn:
        conn.execute("ALTER TABLE customers ADD COLUMN city TEXT")
        conn.execute("UPDATE customers SET city = 'Oslo'")
    op.execute(CONTEXT)
    data = _rows("bronze.customers")
    assert "city" in data.column_names
    assert set(data.column("city").to_pylist()) == {"Oslo"}


def test_missing_connection_names_the_connection(asgard_home: Path) -> None:
    op = SqlToIcebergOperator(
        task_id="i", source_conn_id="nope_db", source_table="customers", target_table="bronze.customers"
    )
    with pytest.raises(SourceError, match="nope_db"):
        op.execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.customers")


def test_missing_source_table_fails_without_creating_target(asgard_home: Path, customers_db: Path) -> None:
    op = SqlToIcebergOperator(
        task_id="i", source_conn_id="test_customers", source_table="no_such_table", target_table="bronze.x"
    )
    with pytest.raises(SourceError, match="no_such_table"):
        op.execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.x")


def test_unsafe_target_identifier_rejected(asgard_home: Path, customers_db: Path) -> None:
    op = SqlToIcebergOperator(
        task_id="i", source_conn_id="test_customers", source_table="customers", target_table="bronze.x; DROP TABLE y"
    )
    with pytest.raises(CatalogError, match="invalid table name"):
        op.execute(CONTEXT)


def test_jsonl_file_to_iceberg(asgard_home: Path) -> None:
    path = asgard_home / "tickets.jsonl"
    with path.open("w") as fh:
        for i in range(3000):
            fh.write(json.dumps({"ticket_id": i, "customer_id": 1000 + i % 50, "resolution_time_hours": i % 48}) + "\n")
    op = FileToIcebergOperator(
        task_id="t",
        path="${ASGARD_HOME}/tickets.jsonl",  # only ASGARD_HOME, ASGARD_INCLUDE_DIR and AIRFLOW_HOME expand
        target_table="bronze.support_tickets",
        block_bytes=16 << 10,
        partition_by=["bucket(4, customer_id)"],
    )
    assert op.execute(CONTEXT)["rows_written"] == 3000
    table = IcebergHook().load_table("bronze.support_tickets")
    assert table.scan().to_arrow().num_rows == 3000
    assert [f.transform.__class__.__name__ for f in table.spec().fields] == ["BucketTransform"]


def test_missing_file_is_a_clear_error(asgard_home: Path) -> None:
    op = FileToIcebergOperator(task_id="t", path="/nonexistent/x.jsonl", target_table="bronze.t")
    with pytest.raises(SourceError, match=r"/nonexistent/x\.jsonl"):
        op.execute(CONTEXT)


def _tickets(path: Path, ids: list[object]) -> None:
    path.write_text("".join(json.dumps({"ticket_id": i}) + "\n" for i in ids))


def _file_load(asgard_home: Path, run_id: str) -> tuple[FileToIcebergOperator, dict, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from asgard_provider.assets import table_asset

    op = FileToIcebergOperator(
        task_id="t", path="${ASGARD_HOME}/tickets-*.jsonl", target_table="bronze.tickets", block_bytes=1 << 10
    )
    op.outlets = [table_asset("bronze.tickets")]
    events = OutletEventAccessors()
    return op, {"run_id": run_id, "task": op, "outlet_events": events}, events[table_asset("bronze.tickets")]


def test_a_load_publishes_its_run_branch_before_the_asset_event(asgard_home: Path) -> None:
    from asgard_provider.engines import wap

    _tickets(asgard_home / "tickets-1.jsonl", list(range(500)))
    op, context, event = _file_load(asgard_home, "scheduled__1")
    result = op.execute(context)  # type: ignore[arg-type]
    table = IcebergHook().load_table("bronze.tickets")
    assert event.extra["snapshot_id"] == result["snapshot_id"] == table.current_snapshot().snapshot_id
    assert table.current_snapshot().summary.additional_properties[wap.RUN_PROPERTY] == "scheduled__1"
    assert table.refs().keys() == {"main"} and table.scan().to_arrow().num_rows == 500


def test_a_load_failing_mid_write_leaves_main_unchanged_keeps_the_branch_and_emits_no_event(
    asgard_home: Path,
) -> None:
    from asgard_provider.engines import wap

    _tickets(asgard_home / "tickets-1.jsonl", [1, 2])
    op, context, _ = _file_load(asgard_home, "scheduled__1")
    op.execute(context)  # type: ignore[arg-type]
    before = IcebergHook().load_table("bronze.tickets").current_snapshot().snapshot_id
    _tickets(asgard_home / "tickets-1.jsonl", list(range(300)))  # a good first batch, then a bad one
    _tickets(asgard_home / "tickets-2.jsonl", ["not a number"])
    op, context, event = _file_load(asgard_home, "scheduled__2")
    with pytest.raises(CatalogError, match=r"incompatible schema change for bronze\.tickets"):
        op.execute(context)  # type: ignore[arg-type]
    table = IcebergHook().load_table("bronze.tickets")
    assert table.current_snapshot().snapshot_id == before
    assert sorted(table.scan().to_arrow().column("ticket_id").to_pylist()) == [1, 2]
    assert wap.run_branch("scheduled__2") in table.refs()  # kept for inspection
    assert event.extra == {}  # nothing published, no asset event
