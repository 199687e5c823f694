"""Hook reading source tables from relational databases (SQLite, PostgreSQL, MySQL/MariaDB) as Arrow."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseHook

from asgard_provider.exceptions import SourceError

_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


class SqlSourceHook(BaseHook):
    """Stream rows of a source database table as Arrow record batches.

    The Airflow connection's type picks the driver: ``sqlite`` (host = database file path), ``postgres``,
    ``mysql``. Passwords stay in the connection; they never appear in logs or errors.
    """

    conn_name_attr = "source_conn_id"
    default_conn_name = "asgard_source_default"
    conn_type = "asgard_sql_source"
    hook_name = "SQL source (Asgard)"

    def __init__(self, source_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.source_conn_id = source_conn_id

    @cached_property
    def sqlalchemy_url(self) -> Any:
        """SQLAlchemy URL built from the Airflow connection."""
        from sqlalchemy.engine import URL

        try:
            conn = self.get_connection(self.source_conn_id)
        except Exception as exc:
            raise SourceError(
                f"Airflow connection {self.source_conn_id!r} is not defined "
                f"(set AIRFLOW_CONN_{self.source_conn_id.upper()} or add it in the UI)"
            ) from exc
        conn_type = (conn.conn_type or "").lower()
        if conn_type == "sqlite":
            path = conn.host or conn.schema
            if not path:
                raise SourceError(f"sqlite connection {self.source_conn_id!r} has no database path in 'host'")
            return URL.create("sqlite", database=path)
        if conn_type not in _DRIVERS:
            raise SourceError(
                f"connection {self.source_conn_id!r} has type {conn.conn_type!r}; use sqlite, postgres or mysql"
            )
        return URL.create(
            _DRIVERS[conn_type],
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )

    @cached_property
    def engine(self) -> Any:
        """SQLAlchemy engine (pool_pre_ping so a dropped server is noticed early)."""
        from sqlalchemy import create_engine

        return create_engine(self.sqlalchemy_url, pool_pre_ping=True)

    def get_conn(self) -> Any:
        """Return the SQLAlchemy engine."""
        return self.engine

    @property
    def dialect_name(self) -> str:
        """SQLAlchemy dialect of the source: ``sqlite``, ``postgresql`` or ``mysql``."""
        return str(self.engine.dialect.name)

    def quote(self, identifier: str) -> str:
        """Quote an identifier for this database's dialect."""
        return str(self.engine.dialect.identifier_preparer.quote(identifier))

    def stream_table(
        self,
        table: str,
        *,
        columns: list[str] | None = None,
        cursor_column: str | None = None,
        lower: Any = None,
        upper: Any = None,
        batch_rows: int = 100_000,
    ) -> Iterator[pa.RecordBatch]:
        """Yield Arrow batches of ``table``; with ``cursor_column``, only rows with lower <= cursor < upper."""
        from sqlalchemy import text

        cols = ", ".join(self.quote(c) for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM {self.quote(table)}"  # noqa: S608 - identifiers are quoted by the dialect
        params: dict[str, Any] = {}
        if cursor_column:
            cursor = self.quote(cursor_column)
            clauses = []
            if lower is not None:
                clauses.append(f"{cursor} >= :lower")
                params["lower"] = lower
            if upper is not None:
                clauses.append(f"{cursor} < :upper")
                params["upper"] = upper
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            sql += f" ORDER BY {cursor}"
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(text(sql), params)
                names = list(result.keys())
                for rows in result.partitions(batch_rows):
                    yield _rows_to_batch(names, rows)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(
                f"reading table {table!r} from connection {self.source_conn_id!r} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc

    def test_connection(self) -> tuple[bool, str]:
        """Open a connection and run ``SELECT 1``."""
        from sqlalchemy import text

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return False, _first_line(exc)
        return True, "connection works"


def _rows_to_batch(names: list[str], rows: list[Any]) -> pa.RecordBatch:
    columns: list[list[Any]] = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in names]
    arrays = [pa.array(col) for col in columns]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
