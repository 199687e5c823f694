"""Arrow-native SQL reads against the real servers: schema-qualified tables, types, columns, timeouts, SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.sql_source import SqlSourceHook
from asgard_provider.operators.ingest import SqlToIcebergOperator

CONTEXT = {"run_id": "manual__test"}
PASSWORD = "s3cr3t-Pw/with:odd@chars"


def _pg_conn(db: str, **extra: object) -> str:
    return json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db, **extra}
    )


@pytest.fixture
def pg_tables(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``public.customers`` and a different ``sales.customers`` (with a numeric column) in a fresh database."""
    import psycopg2

    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}")
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.customers (customer_id BIGINT, email TEXT, city TEXT)")
        cur.execute("INSERT INTO public.customers VALUES (1, 'a@example.com', 'Oslo'), (2, 'b@example.com', 'Bergen')")
        cur.execute("CREATE SCHEMA sales")
        cur.execute('CREATE TABLE sales.customers (customer_id BIGINT, "Email" TEXT, balance NUMERIC(10, 2))')
        cur.execute("INSERT INTO sales.customers VALUES (7, 'c@example.com', 12.34), (8, NULL, NULL)")
    conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_TEST_PG", _pg_conn(postgres_db))
    return postgres_db


def _read(hook: SqlSourceHook, table: str, **kwargs: object) -> pa.Table:
    return pa.Table.from_batches(list(hook.stream_table(table, **kwargs)))  # type: ignore[arg-type]


def test_schema_qualified_tables_are_quoted_per_part(pg_tables: str) -> None:
    hook = SqlSourceHook("test_pg")
    assert sorted(_read(hook, "public.customers").column("customer_id").to_pylist()) == [1, 2]
    sales = _read(hook, "sales.customers")
    assert sorted(sales.column("customer_id").to_pylist()) == [7, 8]
    assert "Email" in sales.column_names  # mixed-case identifiers keep their case
    assert sales.schema.field("balance").type == pa.decimal128(10, 2)
    assert Decimal("12.34") in sales.column("balance").to_pylist()


def test_bad_table_name_names_the_table(pg_tables: str) -> None:
    with pytest.raises(SourceError, match=r"a\.b\.c"):
        _read(SqlSourceHook("test_pg"), "a.b.c")
    with pytest.raises(SourceError, match=r"no_such\.table"):
        _read(SqlSourceHook("test_pg"), "no_such.table")


def test_exclude_columns_never_reach_bronze(asgard_home: Path, pg_tables: str) -> None:
    op = SqlToIcebergOperator(
        task_id="i",
        source_conn_id="test_pg",
        source_table="public.customers",
        target_table="bronze.customers",
        exclude_columns=["email"],
    )
    assert op.execute(CONTEXT)["rows_written"] == 2
    assert IcebergHook().load_table("bronze.customers").schema().as_arrow().names == ["customer_id", "city"]


def test_misspelt_exclude_column_fails_without_a_snapshot(asgard_home: Path, pg_tables: str) -> None:
    op = SqlToIcebergOperator(
        task_id="i",
        source_conn_id="test_pg",
        source_table="public.customers",
        target_table="bronze.customers",
        exclude_columns=["e_mail"],
    )
    with pytest.raises(
        SourceError, match=r"exclude_columns names 'e_mail'.*public\.customers|public\.customers.*e_mail"
    ):
        op.execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.customers")


@pytest.fixture
def mysql_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh MariaDB database with an ``orders`` table (DECIMAL, DATETIME, DATE); dropped afterwards."""
    import pymysql  # type: ignore[import-untyped]

    name = f"asgard_t_sql_source_{os.getpid()}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(
            f"CREATE TABLE `{name}`.orders (order_id BIGINT, amount DECIMAL(10,2), updated_at DATETIME, "
            "day DATE, note VARCHAR(20))"
        )
        cur.executemany(
            f"INSERT INTO `{name}`.orders VALUES (%s, %s, %s, %s, %s)",
            [(i, f"{i}.25", f"2025-11-1{i // 10} 0{i % 10}:00:00", f"2025-11-1{i // 10}", None) for i in range(30)],
        )
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_MY",
        json.dumps({"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": name}),
    )
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def test_mariadb_interval_read_and_types(asgard_home: Path, mysql_db: str) -> None:
    def ingest(lo: str, hi: str) -> int:
        op = SqlToIcebergOperator(
            task_id="i",
            source_conn_id="test_my",
            source_table=f"{mysql_db}.orders",
            target_table="bronze.orders",
            cursor_column="updated_at",
            interval_start=lo,
            interval_end=hi,
        )
        return int(op.execute(CONTEXT)["rows_written"])

    assert ingest("2025-11-11T00:00:00+00:00", "2025-11-12T00:00:00+00:00") == 10
    assert ingest("2025-11-11T00:00:00+00:00", "2025-11-12T00:00:00+00:00") == 10  # a rerun replaces its slice
    assert ingest("2025-11-12T00:00:00+00:00", "2025-11-13T00:00:00+00:00") == 10
    data = IcebergHook().load_table("bronze.orders").scan().to_arrow()
    assert sorted(data.column("order_id").to_pylist()) == list(range(10, 30))
    assert pa.types.is_decimal(data.schema.field("amount").type)
    assert pa.types.is_timestamp(data.schema.field("updated_at").type)
    assert data.schema.field("day").type == pa.date32()


class SilentServer(int):
    """The port of a server that accepts connections and never sends a byte; ``held``: its accepted sockets."""

    held: list[socket.socket]


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = SilentServer(server.getsockname()[1])
        port.held = held
        yield port
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        server.close()


@pytest.mark.parametrize("conn_type", ["postgres", "mysql"])
def test_server_that_never_answers_times_out_without_leaking_the_password(
    asgard_home: Path,
    silent_server: int,
    conn_type: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_SILENT",
        json.dumps(
            {
                "conn_type": conn_type,
                "host": "127.0.0.1",
                "port": silent_server,
                "login": "u",
                "password": PASSWORD,
                "schema": "db",
            }
        ),
    )
    op = SqlToIcebergOperator(
        task_id="i",
        source_conn_id="test_silent",
        source_table="public.customers",
        target_table="bronze.customers",
        connect_timeout=1,
        statement_timeout=1,
    )
    caplog.set_level(logging.DEBUG)
    timed_out = r"test_silent.*(no answer within 2 s|timeout expired|no greeting within 1 s)"
    with pytest.raises(SourceError, match=timed_out) as raised:
        op.execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.customers")
    for text in (str(raised.value), repr(raised.value), caplog.text):
        assert PASSWORD not in text
        assert "s3cr3t" not in text


def test_refused_connection_error_has_no_password(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for conn_type in ("postgres", "mysql"):
        monkeypatch.setenv(
            "AIRFLOW_CONN_TEST_CLOSED",
            json.dumps(
                {
                    "conn_type": conn_type,
                    "host": "127.0.0.1",
                    "port": port,
                    "login": "u",
                    "password": PASSWORD,
                    "schema": "db",
                }
            ),
        )
        with pytest.raises(SourceError, match="test_closed") as raised:
            _read(SqlSourceHook("test_closed"), "customers")
        assert "s3cr3t" not in str(raised.value)
        assert "s3cr3t" not in repr(SqlSourceHook("test_closed").endpoint)


_TERM_SCRIPT = """
import json, os, signal, sys
from asgard_provider.operators.ingest import SqlToIcebergOperator
op = SqlToIcebergOperator(task_id="i", source_conn_id="test_silent", source_table="t", target_table="bronze.t")
signal.signal(signal.SIGTERM, lambda *_: op.on_kill())  # what Airflow's task runner does on SIGTERM
try:
    op.execute({"run_id": "manual__t"})
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
    sys.exit(3)
"""


def test_sigterm_stops_a_read_that_hangs(asgard_home: Path, silent_server: SilentServer) -> None:
    env = {
        **os.environ,
        "AIRFLOW_CONN_TEST_SILENT": json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": silent_server, "login": "u", "schema": "db"}
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _TERM_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    while not silent_server.held and proc.poll() is None:  # the read is connected and waiting for the server
        threading.Event().wait(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)  # default timeouts are 30 s + 1 h: only the signal ends it this soon
    assert proc.returncode == 3, err[-2000:]
    assert "SourceCancelled" in out and "stopped" in out
    assert not IcebergHook().table_exists("bronze.t")
