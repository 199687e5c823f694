"""`airflow backfill create` over 7 dates with a real scheduler, LocalExecutor and a PostgreSQL metadata DB.

Every date's interval slice of Bronze must be written exactly once, runs overlap (two at a time) on the same
Iceberg tables, and each run emits an asset event for the table it wrote.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
DB = f"asgard_backfill_{os.getpid()}"
PIPELINE = """
pipeline: events_daily
description: Backfill fixture - daily interval slices of an event table.
schedule: "@daily"
start_date: 2025-10-01
catchup: false
max_active_runs: 2
retries: 3
retry_delay_minutes: 0.05
ingest:
  - name: ingest_events
    source: {connection: backfill_events, table: events}
    target: bronze.events
    incremental: {cursor: updated_at}
  - name: ingest_customers
    source: {connection: backfill_events, table: customers}
    target: bronze.customers
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(sql: str, database: str = "postgres") -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict]:
    """A small Airflow deployment: Postgres metadata DB, api-server, scheduler and dag-processor."""
    source = tmp_path / "events.db"
    start = datetime(2025, 10, 31)
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE events (event_id INTEGER, updated_at TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(i, (start + timedelta(hours=2 * i)).isoformat(sep=" "), float(i)) for i in range(12 * 10)],
        )
        conn.execute("CREATE TABLE customers (customer_id INTEGER, name TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}") for i in range(50)])
    include = tmp_path / "include"
    (include / "pipelines").mkdir(parents=True)
    (include / "pipelines" / "events_daily.yaml").write_text(PIPELINE)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "events_daily.py").write_text((REPO / "dags" / "customer_churn.py").read_text())
    port = _free_port()
    _pg(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    _pg(f'CREATE DATABASE "{DB}"')
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DB}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "ASGARD_HOME": str(tmp_path / "asgard"),
        "ASGARD_INCLUDE_DIR": str(include),
        "AIRFLOW_CONN_BACKFILL_EVENTS": json.dumps({"conn_type": "sqlite", "host": str(source)}),
    }
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    for component in (["api-server", "--port", str(port)], ["scheduler"], ["dag-processor"]):
        out = (logs / f"{component[0]}.log").open("w")
        procs.append(
            subprocess.Popen(
                [AIRFLOW, *component], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    try:
        yield {"env": env, "logs": logs, "asgard_home": tmp_path / "asgard", "port": port}
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        _pg(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


def _wait(predicate, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(3)
    tails = {p.name: p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log")}
    pytest.fail(
        f"timed out waiting for {what}; component logs:\n" + "\n".join(f"== {k}\n{v}" for k, v in tails.items())
    )


@pytest.mark.e2e
@pytest.mark.postgres
def test_backfill_writes_each_interval_exactly_once(deployment: dict) -> None:
    env, logs = deployment["env"], deployment["logs"]

    def serialized() -> bool:
        return bool(_pg("SELECT 1 FROM serialized_dag WHERE dag_id = 'events_daily'", DB))

    _wait(serialized, 240, "the dag-processor to serialize events_daily", logs)
    subprocess.run([AIRFLOW, "dags", "unpause", "events_daily"], env=env, check=True, capture_output=True, timeout=120)
    created = subprocess.run(
        [AIRFLOW, "backfill", "create", "--dag-id", "events_daily", "--from-date", "2025-11-01",
         "--to-date", "2025-11-07", "--max-active-runs", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr[-3000:]

    def finished() -> bool:
        # Unpausing also starts the latest scheduled interval (catchup is off); only the backfill runs count.
        states = dict(
            _pg(
                "SELECT state, count(*) FROM dag_run WHERE dag_id = 'events_daily' AND run_type = 'backfill' "
                "GROUP BY state",
                DB,
            )
        )
        if states.get("failed"):
            pytest.fail(f"backfill runs failed: {states}; see {logs}")
        return states.get("success", 0) == 7

    _wait(finished, 900, "7 successful backfill runs", logs)

    runs = _pg(
        "SELECT data_interval_start, data_interval_end, run_type FROM dag_run WHERE dag_id = 'events_daily' "
        "AND run_type = 'backfill' ORDER BY data_interval_start",
        DB,
    )
    assert [(r[0].date().isoformat(), r[2]) for r in runs] == [(f"2025-11-0{d}", "backfill") for d in range(1, 8)]

    from pyiceberg.catalog import load_catalog

    from asgard_provider.catalog import CATALOG_NAME, CatalogSettings

    home = deployment["asgard_home"]
    settings = CatalogSettings(
        type="sql", uri=f"sqlite:///{home / 'catalog.db'}", warehouse=f"file://{home / 'warehouse'}"
    )
    catalog = load_catalog(CATALOG_NAME, **settings.pyiceberg_properties())
    ids = sorted(catalog.load_table(("bronze", "events")).scan().to_arrow().column("event_id").to_pylist())
    # Events every 2 hours from 2025-10-31 00:00: 2025-11-01 .. 2025-11-07 are ids 12 .. 95, each exactly once.
    assert ids == list(range(12, 96))
    assert catalog.load_table(("bronze", "customers")).scan().to_arrow().num_rows == 50

    events = _pg(
        "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "JOIN dag_run r ON r.run_id = e.source_run_id AND r.dag_id = e.source_dag_id "
        "WHERE a.name = 'bronze.events' AND r.run_type = 'backfill'",
        DB,
    )
    assert events[0][0] == 7
