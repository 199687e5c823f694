"""Injected faults: a writer killed mid-commit, a source database that goes away, secrets kept out of outputs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.ingest import SqlToIcebergOperator

PASSWORD = "Pa55-w0rd-never-shown"


def test_writer_killed_mid_write_leaves_the_previous_snapshot(asgard_home: Path, tmp_path: Path) -> None:
    hook = IcebergHook()
    before = hook.write("bronze.t", [pa.table({"id": list(range(100))})])
    marker = tmp_path / "half-written"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        import pyarrow as pa
        from asgard_provider.hooks.iceberg import IcebergHook

        def batches():
            for i in range(10):
                if i == 3:
                    Path({str(marker)!r}).touch()
                    time.sleep(600)
                yield pa.table({{"id": list(range(i * 1000, (i + 1) * 1000))}})

        IcebergHook().write("bronze.t", batches())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "writer exited before the kill"
            assert time.monotonic() < deadline, "writer never reached the middle of its write"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    table = hook.load_table("bronze.t")
    # Data files of the dead writer may sit in the warehouse, but no snapshot references them.
    assert table.current_snapshot().snapshot_id == before["snapshot_id"]
    assert table.scan().to_arrow().num_rows == 100
    retry = hook.write("bronze.t", [pa.table({"id": list(range(10_000))})])
    assert retry["rows_written"] == 10_000
    assert hook.load_table("bronze.t").scan().to_arrow().num_rows == 10_000


@pytest.fixture
def slow_postgres_source(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Postgres view that yields rows slowly, so a test can cut the connection mid-stream."""
    import psycopg2

    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}")
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers AS SELECT g AS customer_id, 'c' || g AS name FROM generate_series(1, 4000) g"
        )
        cur.execute(
            "CREATE VIEW slow_customers AS SELECT "
            "CASE WHEN pg_sleep(0.002) IS NULL THEN customer_id ELSE customer_id END AS customer_id, name "
            "FROM customers"
        )
    conn.close()
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAULTY_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "password": PASSWORD,
                "schema": postgres_db,
            }
        ),
    )
    return postgres_db


def _ingest(table: str) -> dict:
    op = SqlToIcebergOperator(
        task_id="ingest", source_conn_id="faulty_db", source_table=table, target_table="bronze.customers",
        batch_rows=200,
    )  # fmt: skip
    return op.execute({"run_id": "manual__faults"})


@pytest.mark.postgres
def test_source_going_away_mid_ingest_fails_cleanly_and_rerun_is_complete(
    asgard_home: Path, slow_postgres_source: str
) -> None:
    import psycopg2

    first = _ingest("customers")
    assert first["rows_written"] == 4000

    def cut() -> None:
        time.sleep(2)
        admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (slow_postgres_source,),
            )
        admin.close()

    killer = threading.Thread(target=cut)
    killer.start()
    with pytest.raises(SourceError, match="reading table 'slow_customers' from connection 'faulty_db' failed") as info:
        _ingest("slow_customers")
    killer.join()
    assert PASSWORD not in str(info.value)
    table = IcebergHook().load_table("bronze.customers")
    assert table.current_snapshot().snapshot_id == first["snapshot_id"]  # nothing half-written became visible
    again = _ingest("slow_customers")
    ids = IcebergHook().load_table("bronze.customers").scan().to_arrow().column("customer_id").to_pylist()
    assert again["rows_written"] == 4000 and sorted(ids) == list(range(1, 4001))


@pytest.mark.postgres
def test_connection_password_never_reaches_logs_xcom_or_snapshots(
    asgard_home: Path, slow_postgres_source: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = _ingest("customers")
    assert PASSWORD not in json.dumps(result, default=str)
    assert PASSWORD not in caplog.text
    summary = IcebergHook().load_table("bronze.customers").current_snapshot().summary
    assert PASSWORD not in json.dumps(summary.additional_properties)
    with pytest.raises(SourceError) as info:
        _ingest("no_such_table")
    assert PASSWORD not in str(info.value)
