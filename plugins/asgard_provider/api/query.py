"""Read-only SQL over the Iceberg tables: one ``SELECT`` in a locked-down, in-memory DuckDB.

The statement is parsed by DuckDB itself and must be a single ``SELECT``. The tables it names are scanned
through pyiceberg and registered as Arrow tables; then file system, network and extension access are switched
off and the configuration is locked before the query runs. A timer interrupts it after ``timeout_seconds``.

Time travel: ``as_of`` reads tables as of a snapshot id, tag or branch (``{"gold.t": "release-1"}``, or one
ref for every table read). DuckDB's own ``AT (VERSION => ...)`` clause is refused: the registered tables are
plain in-memory tables.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from asgard_provider.catalog import CATALOG_NAME
from asgard_provider.exceptions import AsgardError, QueryError


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query, at most ``limit``."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    tables: list[str]
    elapsed_ms: float
    #: Snapshot read per table when the query traveled in time (``as_of``).
    snapshots: dict[str, int] = field(default_factory=dict)


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
    if any(_values_of(tree, "at_clause")):
        raise QueryError("AT (VERSION => ...) is not supported: read a snapshot, tag or branch with as_of instead")
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


def run_query(
    catalog: Any, sql: str, *, limit: int, timeout_seconds: float, as_of: str | Mapping[str, str] | None = None
) -> QueryResult:
    """Run one ``SELECT`` over the catalog's tables; at most ``limit`` rows, interrupted after the timeout.

    ``as_of``: a snapshot id, tag or branch for every table read, or one per table (others read main).
    """
    check_select(sql)
    tables = referenced_tables(sql, catalog_tables(catalog))
    snapshots = as_of_snapshots(catalog, tables, as_of)
    started = time.perf_counter()
    con = _locked_connection(catalog, tables, snapshots)
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
    return QueryResult(columns, rows[:limit], len(rows) > limit, tables, round(elapsed, 3), snapshots)


def _values_of(node: Any, key: str) -> Iterator[Any]:
    """Non-null values under ``key`` anywhere in the tree."""
    if isinstance(node, dict):
        if node.get(key) is not None:
            yield node[key]
        for value in node.values():
            yield from _values_of(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _values_of(value, key)


def as_of_snapshots(catalog: Any, tables: list[str], as_of: str | Mapping[str, str] | None) -> dict[str, int]:
    """Snapshot id per table that ``as_of`` names; refuses a per-table ref for a table the query does not read."""
    from asgard_provider.engines.wap import resolve_ref

    if as_of is None:
        return {}
    refs = dict.fromkeys(tables, as_of) if isinstance(as_of, str) else dict(as_of)
    unread = sorted(set(refs) - set(tables))
    if unread:
        raise QueryError(f"as_of names {', '.join(unread)}, which the query does not read ({', '.join(tables)})")
    try:
        return {t: resolve_ref(catalog.load_table(tuple(t.split("."))), t, ref) for t, ref in refs.items()}
    except AsgardError as exc:
        raise QueryError(str(exc)) from None


def _locked_connection(catalog: Any, tables: list[str], snapshots: Mapping[str, int] | None = None) -> Any:
    """In-memory DuckDB database ``iceberg`` holding ``tables``, with external access off and settings locked."""
    import duckdb

    con = duckdb.connect(":memory:", config=_LOCKED)
    con.execute(f"ATTACH ':memory:' AS {CATALOG_NAME}")
    con.execute(f"USE {CATALOG_NAME}")
    for table in tables:
        namespace, name = table.split(".")
        scan = catalog.load_table((namespace, name)).scan(snapshot_id=(snapshots or {}).get(table))
        con.register("_scan", scan.to_arrow())
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
