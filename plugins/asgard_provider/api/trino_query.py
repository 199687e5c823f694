"""Read-only SQL over the Iceberg tables on Trino (production): the embedded path's rules, Trino's engine.

The statement passes the same gate as on DuckDB (:func:`~asgard_provider.api.query.check_select`,
:func:`~asgard_provider.api.query.referenced_tables`). sqlglot then parses it in Trino's dialect: every table it
reads must be a catalog table DuckDB's tree named too (no table functions such as ``TABLE(system.query(...))``),
and ``as_of`` becomes Trino's ``FOR VERSION AS OF <snapshot id>`` on each table it names. Trino stops the query
after ``timeout_seconds`` (session property ``query_max_execution_time``, set by the hook); the client reads at
most ``limit + 1`` rows and cancels the rest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from asgard_provider.api.query import QueryResult, as_of_snapshots, catalog_tables, check_select, referenced_tables
from asgard_provider.catalog import CATALOG_NAME
from asgard_provider.exceptions import QueryEngineError, QueryError

#: Seconds past the timeout after which the client cancels a query Trino has not stopped itself.
CANCEL_GRACE_SECONDS = 5.0
#: Trino's error name for a query stopped by ``query_max_execution_time``.
TIME_LIMIT_ERROR = "EXCEEDED_TIME_LIMIT"


def run_trino_query(
    catalog: Any,
    sql: str,
    *,
    connect: Callable[[float], Any],
    limit: int,
    timeout_seconds: float,
    as_of: str | Mapping[str, str] | None = None,
) -> QueryResult:
    """Run one ``SELECT`` on Trino; ``connect(timeout_seconds)`` returns a DB-API connection to the cluster."""
    tree = trino_tree(sql)
    nodes = table_nodes(tree)
    check_select(sql)
    tables = referenced_tables(sql, catalog_tables(catalog))
    snapshots = as_of_snapshots(catalog, tables, as_of)
    statement = trino_statement(sql, tree, nodes, tables, snapshots)
    started = time.perf_counter()
    columns, rows = _fetch(_connect(connect, timeout_seconds), statement, limit, timeout_seconds)
    elapsed = (time.perf_counter() - started) * 1000
    return QueryResult(columns, rows[:limit], len(rows) > limit, tables, round(elapsed, 3), snapshots)


def trino_tree(sql: str) -> Any:
    """Parse ``sql`` in Trino's dialect (sqlglot): one query, without a ``FOR VERSION``/``TIMESTAMP`` of its own."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise QueryError(f"cannot parse the query as Trino SQL: {str(exc)[:300]}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise QueryError("send exactly one SELECT statement")
    if any(t.args.get("version") for t in statements[0].find_all(exp.Table)):
        raise QueryError("FOR VERSION/TIMESTAMP AS OF is not supported: read a snapshot, tag or branch with as_of")
    return statements[0]


def trino_statement(
    sql: str, tree: Any, nodes: list[tuple[str, Any]], tables: list[str], snapshots: Mapping[str, int]
) -> str:
    """Return the text Trino runs: ``sql`` itself, or sqlglot's rendering with ``FOR VERSION AS OF`` per snapshot.

    ``nodes`` (:func:`table_nodes`) must name the same tables as DuckDB's tree (``tables``).
    """
    from sqlglot import exp

    seen = sorted({name for name, _ in nodes})
    if seen != tables:
        raise QueryError(f"cannot map the query to Trino: Trino reads {seen or 'no tables'}, not {tables}")
    if not snapshots:
        return sql
    for name, node in nodes:
        if name in snapshots:
            version = exp.Version(this="VERSION", kind="AS OF", expression=exp.Literal.number(snapshots[name]))
            node.set("version", version)
    return str(tree.sql(dialect="trino"))


def table_nodes(tree: Any) -> list[tuple[str, Any]]:
    """``(namespace.table, node)`` of each catalog table the tree reads; CTE names skipped, table functions refused."""
    from sqlglot import exp

    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    nodes = []
    for node in tree.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):
            raise QueryError("table functions are not allowed: read the catalog's tables as namespace.table")
        if not node.db and not node.catalog and node.name in ctes:
            continue
        if node.catalog not in ("", CATALOG_NAME):
            raise QueryError(f"unknown table {'.'.join(p for p in (node.catalog, node.db, node.name) if p)}")
        nodes.append((f"{node.db}.{node.name}", node))
    return nodes


def _connect(connect: Callable[[float], Any], timeout_seconds: float) -> Any:
    """Open the DB-API connection; one that cannot be made (bad auth settings, say) is the engine's error."""
    try:
        return connect(timeout_seconds)
    except Exception as exc:  # the hook raises what the provider and the client raise: no narrower common type
        raise QueryEngineError(f"cannot connect to Trino: {type(exc).__name__}: {str(exc)[:300]}") from None


def _fetch(conn: Any, statement: str, limit: int, timeout_seconds: float) -> tuple[list[str], list[list[Any]]]:
    """Columns and at most ``limit + 1`` rows; cancels the query once it has them, or well past its timeout."""
    import trino.exceptions

    cursor = conn.cursor()
    timer = threading.Timer(timeout_seconds + CANCEL_GRACE_SECONDS, cursor.cancel)
    started = time.perf_counter()
    timer.start()
    try:
        cursor.execute(statement)
        rows = [list(r) for r in cursor.fetchmany(limit + 1)]
        columns = [d[0] for d in cursor.description or []]
        if len(rows) > limit:  # best effort: a cancel that fails leaves Trino's own timeout to stop the query
            with contextlib.suppress(trino.exceptions.Error, trino.exceptions.HttpError):
                cursor.cancel()
    except trino.exceptions.TrinoQueryError as exc:
        if exc.error_name == TIME_LIMIT_ERROR or time.perf_counter() - started >= timeout_seconds:
            raise QueryError(f"query stopped after its timeout of {timeout_seconds:g} s") from None
        kind = QueryError if isinstance(exc, trino.exceptions.TrinoUserError) else QueryEngineError
        raise kind(f"query failed on Trino: {exc.error_name}: {exc.message}") from None
    except (trino.exceptions.Error, trino.exceptions.HttpError) as exc:
        raise QueryEngineError(f"Trino did not answer: {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        timer.cancel()
        conn.close()
    return columns, rows
