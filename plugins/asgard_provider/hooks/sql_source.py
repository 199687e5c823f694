"""Hook reading source tables from relational databases (SQLite, PostgreSQL, MySQL/MariaDB) as Arrow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property

import pyarrow as pa
from airflow.sdk import BaseHook

from asgard_provider.exceptions import SourceCancelled, SourceError
from asgard_provider.sources.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    Columns,
    Watchdog,
    first_line,
    mask,
    source_connection,
)
from asgard_provider.sources.sql import DIALECTS, Dialect, SqlEndpoint, read_batches, select_sql


class SqlSourceHook(BaseHook):
    """Stream rows of a source database table as Arrow record batches (connectorx, binary protocols).

    The Airflow connection's type picks the dialect: ``sqlite`` (host = database file path), ``postgres``,
    ``mysql``. Passwords stay in the connection; they never appear in logs or errors. Reads run under a
    :class:`~asgard_provider.sources.common.Watchdog`: connect and statement timeouts hold even when the
    server accepts and never answers, and :meth:`cancel` (the operator's ``on_kill``) stops a read at once.
    """

    conn_name_attr = "source_conn_id"
    default_conn_name = "asgard_source_default"
    conn_type = "asgard_sql_source"
    hook_name = "SQL source (Asgard)"

    def __init__(
        self,
        source_conn_id: str = default_conn_name,
        *,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.source_conn_id = source_conn_id
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._watchdog = Watchdog()

    @cached_property
    def endpoint(self) -> SqlEndpoint:
        """The source database as the Airflow connection describes it."""
        conn = source_connection(self, self.source_conn_id)
        conn_type = (conn.conn_type or "").lower()
        dialect = DIALECTS.get(conn_type)
        if dialect is None:
            raise SourceError(
                f"connection {self.source_conn_id!r} has type {conn.conn_type!r}; use sqlite, postgres or mysql"
            )
        if dialect == "sqlite":
            path = conn.host or conn.schema
            if not path:
                raise SourceError(f"sqlite connection {self.source_conn_id!r} has no database path in 'host'")
            return SqlEndpoint("sqlite", database=path)
        return SqlEndpoint(
            dialect,
            database=conn.schema or "",
            host=conn.host or "127.0.0.1",
            port=conn.port or None,
            user=conn.login or "",
            password=conn.password or "",
        )

    def get_conn(self) -> SqlEndpoint:
        """Return the source endpoint (connections are opened per read)."""
        return self.endpoint

    @property
    def dialect_name(self) -> Dialect:
        """Dialect of the source: ``sqlite``, ``postgresql`` or ``mysql``."""
        return self.endpoint.dialect

    def cancel(self) -> None:
        """Stop the running read (called from a SIGTERM handler through the operator's ``on_kill``)."""
        self._watchdog.cancel()

    def stream_table(
        self,
        table: str,
        *,
        columns: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        cursor_column: str | None = None,
        lower: datetime | None = None,
        upper: datetime | None = None,
        batch_rows: int = 100_000,
    ) -> Iterator[pa.RecordBatch]:
        """Yield Arrow batches of ``table``; with ``cursor_column``, only rows with lower <= cursor < upper."""
        endpoint = self.endpoint
        sql = select_sql(table, endpoint.dialect, columns=columns, cursor=cursor_column, lower=lower, upper=upper)
        what = f"reading table {table!r} from connection {self.source_conn_id!r}"

        def produce() -> Iterator[pa.RecordBatch]:
            return read_batches(
                endpoint,
                sql,
                batch_rows=batch_rows,
                connect_timeout=self.connect_timeout,
                statement_timeout=self.statement_timeout,
            )

        batches = self._watchdog.run(
            produce,
            first_timeout=self.connect_timeout + self.statement_timeout,
            next_timeout=self.statement_timeout,
            what=what,
        )
        try:
            yield from Columns.of(columns, exclude_columns).apply(batches, f"source table {table!r}")
        except SourceError:
            raise
        except Exception as exc:
            message = mask(first_line(exc), [endpoint.password])
            raise SourceError(f"{what} failed: {type(exc).__name__}: {message}") from None

    def test_connection(self) -> tuple[bool, str]:
        """Run ``SELECT 1`` on the source."""
        try:
            endpoint = self.endpoint
            batches = self._watchdog.run(
                lambda: read_batches(
                    endpoint, "SELECT 1", batch_rows=1, connect_timeout=self.connect_timeout, statement_timeout=60
                ),
                first_timeout=self.connect_timeout + 60,
                next_timeout=60,
                what=f"connection {self.source_conn_id!r}",
            )
            list(batches)
        except (SourceError, SourceCancelled) as exc:
            return False, str(exc)
        except Exception as exc:
            return False, mask(first_line(exc), [self._password()])
        return True, "connection works"

    def _password(self) -> str:
        try:
            return self.endpoint.password
        except SourceError:
            return ""
