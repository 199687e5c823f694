"""Read-only SQL over the Iceberg tables: one ``SELECT`` in a locked-down, in-memory DuckDB.

The statement is parsed by DuckDB itself and must be a single ``SELECT``. The tables it names are scanned
through pyiceberg and registered as Arrow tables; then file system, network and extension access are switched
off and the configuration is locked before the query runs. A timer interrupts it after ``timeout_seconds``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from asgard_provider.catalog import CATALOG_NAME
from asgard_provider.exceptions import AsgardError


class QueryError(AsgardError):
    """The statement is refused, names an unknown table, fails or runs out of time."""


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query, at most ``limit``."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    tables: list[str]
    elapsed_ms: float


def check_select(sql: str) -> None:
    """Refuse anything but exactly one ``SELECT`` statement, as DuckDB's parser classifies it."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the query: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT is allowed, got {kind.name}")


def referenced_tables(sql: str, known: set[str]) -> list[str]:
    """Catalog tables (``namespace.table``) the query reads, from DuckDB's syntax tree; anything else is refused.

    A name without a namespace must be one of the query's own CTEs: files (``'x.csv'``) and other databases never
    reach the catalog's tables.
    """
    import duckdb

    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
        tree = json.loads(row[0] if row else "{}")
    finally:
        con.close()
    if tree.get("error"):
        message = str(tree.get("error_message"))
        if "Only SELECT" in message:  # a statement DuckDB rewrites into a SELECT, e.g. PRAGMA
            raise QueryError(f"only SELECT is allowed, got {sql.split(maxsplit=1)[0].upper()}")
        raise QueryError(f"cannot parse the query: {message}")
    ctes = set(_values(tree, "cte_map"))
    tables = set()
    for catalog, namespace, name in _base_tables(tree):
        if not namespace and not catalog and name in ctes:
            continue
        table = f"{namespace}.{name}"
        if catalog not in ("", CATALOG_NAME) or table not in known:
            shown = ".".join(p for p in (catalog, namespace, name) if p)
            raise QueryError(
                f"unknown table {shown}: query the catalog's tables as namespace.table ({', '.join(sorted(known))})"
            )
        tables.add(table)
    return sorted(tables)


def _base_tables(node: Any) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE":
            yield node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", "")
        for value in node.values():
            yield from _base_tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _base_tables(value)


def _values(node: Any, key: str) -> Iterator[str]:
    """Names defined under ``key`` anywhere in the tree (``cte_map`` entries)."""
    if isinstance(node, dict):
        if isinstance(node.get(key), dict):
            yield from (entry["key"] for entry in node[key].get("map", []))
        for value in node.values():
            yield from _values(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value, key)


def catalog_tables(catalog: Any) -> set[str]:
    """Every ``namespace.table`` of the catalog."""
    names = set()
    for namespace in catalog.list_namespaces():
        for identifier in catalog.list_tables(namespace):
            names.add(".".join(identifier))
    return names


def run_query(catalog: Any, sql: str, *, limit: int, timeout_seconds: float) -> QueryResult:
    """Run one ``SELECT`` over the catalog's tables; at most ``limit`` rows, interrupted after the timeout."""
    check_select(sql)
    tables = referenced_tables(sql, catalog_tables(catalog))
    started = time.perf_counter()
    con = _locked_connection(catalog, tables)
    timer = threading.Timer(timeout_seconds, con.interrupt)
    timer.start()
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = [list(r) for r in cursor.fetchmany(limit + 1)]
    except Exception as exc:
        if time.perf_counter() - started >= timeout_seconds:
            raise QueryError(f"query stopped after its timeout of {timeout_seconds:g} s") from None
        raise QueryError(f"query failed: {exc}") from None
    finally:
        timer.cancel()
        con.close()
    elapsed = (time.perf_counter() - started) * 1000
    return QueryResult(columns, rows[:limit], len(rows) > limit, tables, round(elapsed, 3))


def _locked_connection(catalog: Any, tables: list[str]) -> Any:
    """In-memory DuckDB database ``iceberg`` holding ``tables``, with external access off and settings locked."""
    import duckdb

    con = duckdb.connect(":memory:", config=_LOCKED)
    con.execute(f"ATTACH ':memory:' AS {CATALOG_NAME}")
    con.execute(f"USE {CATALOG_NAME}")
    for table in tables:
        namespace, name = table.split(".")
        con.register("_scan", catalog.load_table((namespace, name)).scan().to_arrow())
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        # Names come from the catalog's own table list (referenced_tables), never from the query text.
        con.execute(f'CREATE TABLE "{namespace}"."{name}" AS SELECT * FROM _scan')  # noqa: S608
        con.unregister("_scan")
    con.execute("SET lock_configuration = true")
    return con


#: No files, network, extensions or other databases; bounded threads and memory.
_LOCKED: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "threads": 2,
    "memory_limit": "1GB",
}
