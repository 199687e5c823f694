"""Arrow-native reads of relational tables: ADBC for PostgreSQL and SQLite, connectorx for MySQL/MariaDB.

Both decode the databases' binary protocols straight into Arrow. Chosen by measurement at 10x seed scale
(``benchmarks/throughput.py --ingest-only``, docs/performance.md): ADBC read PostgreSQL 1.6x and SQLite 2-4x
faster than connectorx, and has no MySQL driver; connectorx read MariaDB 2x faster than DuckDB's scanner
(which needs duckdb 1.5, while the lock pins 2.0). Identifiers are quoted per dialect,
``schema.table`` names are split and each part quoted; interval bounds are formatted from parsed timestamps,
never from config text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote

import pyarrow as pa

from asgard_provider.exceptions import SourceError

Dialect = Literal["sqlite", "postgresql", "mysql"]
#: Airflow connection types and the dialect each one reads with.
DIALECTS: dict[str, Dialect] = {
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_QUOTES: dict[Dialect, str] = {"sqlite": '"', "postgresql": '"', "mysql": "`"}
_DEFAULT_PORTS: dict[Dialect, int] = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True, repr=False)
class SqlEndpoint:
    """Where a source database is; ``database`` is the file path for SQLite. ``repr`` omits the password."""

    dialect: Dialect
    database: str
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = ""

    def __repr__(self) -> str:
        """Describe the endpoint without its password."""
        return f"SqlEndpoint({self.describe()})"

    def describe(self) -> str:
        """``postgresql://host:port/db`` or ``sqlite:///path``: for logs and lineage, no credentials."""
        if self.dialect == "sqlite":
            return f"sqlite://{self.database}"
        return f"{self.dialect}://{self.host}:{self.port or _DEFAULT_PORTS[self.dialect]}/{self.database}"

    def url(self, connect_timeout: int) -> str:
        """Return the libpq URI (PostgreSQL) or connectorx URL (MySQL); it holds the password: never log it."""
        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        port = self.port or _DEFAULT_PORTS[self.dialect]
        scheme = "postgresql" if self.dialect == "postgresql" else "mysql"
        timeout = (
            f"connect_timeout={connect_timeout}"
            if self.dialect == "postgresql"
            else f"tcp_connect_timeout_ms={connect_timeout * 1000}"
        )
        return f"{scheme}://{auth}@{self.host}:{port}/{quote(self.database, safe='')}?{timeout}"


def quote_identifier(name: str, dialect: Dialect) -> str:
    """Quote one identifier for ``dialect``, doubling embedded quote characters."""
    mark = _QUOTES[dialect]
    if not name or "\x00" in name:
        raise SourceError(f"invalid identifier {name!r}")
    return mark + name.replace(mark, mark * 2) + mark


def quote_table(table: str, dialect: Dialect) -> str:
    """Quote ``table`` or ``schema.table`` (each part separately, so ``public.orders`` works)."""
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise SourceError(f"invalid source table {table!r}: use 'table' or 'schema.table'")
    return ".".join(quote_identifier(p, dialect) for p in parts)


def _bound(value: datetime, dialect: Dialect) -> str:
    """Format a timestamp literal; SQLite keeps timestamps as ISO text, so it compares text."""
    text = value.isoformat(sep=" ")
    if dialect == "sqlite":
        return f"'{text}'"
    return f"CAST('{text}' AS {'TIMESTAMP' if dialect == 'postgresql' else 'DATETIME'})"


def select_sql(
    table: str,
    dialect: Dialect,
    *,
    columns: Sequence[str] | None = None,
    cursor: str | None = None,
    lower: datetime | None = None,
    upper: datetime | None = None,
) -> str:
    """``SELECT`` of ``columns`` (all by default) from ``table``; with ``cursor``, rows in ``[lower, upper)``."""
    cols = ", ".join(quote_identifier(c, dialect) for c in columns) if columns else "*"
    sql = f"SELECT {cols} FROM {quote_table(table, dialect)}"  # noqa: S608 - identifiers quoted, bounds typed
    if cursor:
        quoted = quote_identifier(cursor, dialect)
        clauses = [f"{quoted} >= {_bound(lower, dialect)}"] if lower is not None else []
        clauses += [f"{quoted} < {_bound(upper, dialect)}"] if upper is not None else []
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {quoted}"
    return sql


def session_setup(dialect: Dialect, statement_timeout: int) -> list[str]:
    """Statements run before the query: PostgreSQL enforces the statement timeout on the server."""
    if dialect == "postgresql":
        return [f"SET statement_timeout = {int(statement_timeout) * 1000}"]
    return []


def read_batches(
    endpoint: SqlEndpoint, sql: str, *, batch_rows: int, connect_timeout: int, statement_timeout: int
) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` and yield its rows as Arrow record batches of about ``batch_rows`` rows."""
    if endpoint.dialect == "mysql":
        yield from _connectorx(endpoint, sql, batch_rows=batch_rows, connect_timeout=connect_timeout)
    else:
        yield from _adbc(
            endpoint, sql, batch_rows=batch_rows, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        )


def _connectorx(endpoint: SqlEndpoint, sql: str, *, batch_rows: int, connect_timeout: int) -> Iterator[pa.RecordBatch]:
    import connectorx as cx

    _await_greeting(endpoint, connect_timeout)

    reader = cx.read_sql(endpoint.url(connect_timeout), sql, return_type="arrow_stream", batch_size=batch_rows)
    for batch in reader:
        if batch.num_rows:
            yield batch


def _adbc(
    endpoint: SqlEndpoint, sql: str, *, batch_rows: int, connect_timeout: int, statement_timeout: int
) -> Iterator[pa.RecordBatch]:
    if endpoint.dialect == "sqlite":
        import adbc_driver_sqlite.dbapi as driver

        conn = driver.connect(endpoint.database)
        setup: list[str] = []
        options = {"adbc.sqlite.query.batch_rows": str(batch_rows)}
    else:
        import adbc_driver_postgresql.dbapi as driver  # type: ignore[no-redef]

        conn = driver.connect(endpoint.url(connect_timeout))
        setup = session_setup(endpoint.dialect, statement_timeout)
        options = {}
    with conn, conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
        if options:
            cur.adbc_statement.set_options(**options)
        cur.execute(sql)
        for batch in cur.fetch_record_batch():
            if batch.num_rows:
                yield _plain_types(batch)


def _plain_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Decode PostgreSQL ``numeric`` (an opaque string column in ADBC) to its declared decimal type."""
    opaque = [i for i, f in enumerate(batch.schema) if isinstance(f.type, pa.BaseExtensionType)]
    if not opaque:
        return batch
    columns, fields = list(batch.columns), list(batch.schema)
    for i in opaque:
        field = fields[i]
        meta = field.metadata or {}
        storage = columns[i].storage if isinstance(columns[i], pa.ExtensionArray) else columns[i]
        target = (
            _numeric_type(meta.get(b"POSTGRESQL:typmod")) if meta.get(b"POSTGRESQL:type") == b"numeric" else pa.string()
        )
        columns[i] = storage.cast(target)
        fields[i] = pa.field(field.name, target)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _numeric_type(typmod: bytes | None) -> pa.DataType:
    """``numeric(p, s)`` from its typmod; an unconstrained ``numeric`` becomes float64."""
    mod = int(typmod or -1)
    if mod < 4:
        return pa.float64()
    mod -= 4
    return pa.decimal128(mod >> 16, mod & 0xFFFF)


def _await_greeting(endpoint: SqlEndpoint, timeout: int) -> None:
    """Wait for a MySQL server's greeting, which it sends first on every connection.

    connectorx's connection pool waits for a silent server for 30 s while holding the GIL, out of reach of
    timeouts and signal handlers; this check runs in Python, in short waits, so both take effect.
    """
    import socket
    import time

    deadline = time.monotonic() + timeout
    port = endpoint.port or _DEFAULT_PORTS[endpoint.dialect]
    try:
        with socket.create_connection((endpoint.host, port), timeout=timeout) as sock:
            while True:
                sock.settimeout(min(0.5, max(deadline - time.monotonic(), 0.01)))
                try:
                    if sock.recv(1):
                        return
                    raise ConnectionError(f"{endpoint.describe()} closed the connection before greeting")
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"{endpoint.describe()} accepted the connection but sent no greeting within {timeout} s "
                            "(connect_timeout_seconds)"
                        ) from None
    except (TimeoutError, ConnectionError):
        raise
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {endpoint.describe()}: {exc.strerror or exc}") from None
