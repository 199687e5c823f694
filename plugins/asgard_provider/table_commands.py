"""``asgard tables history|rollback|tag`` and ``asgard query --as-of``: time travel on the catalog's Iceberg tables."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from asgard_provider.exceptions import AsgardError


def add_commands(tables: argparse.ArgumentParser) -> None:
    """Add ``history``, ``rollback`` and ``tag`` under the ``asgard tables`` parser (which still lists tables alone)."""
    sub = tables.add_subparsers(dest="action")
    history = sub.add_parser("history", help="snapshots of TABLE with branches, tags and the run that wrote each")
    history.add_argument("table", help="namespace.table")
    history.add_argument("--conn-id", help="Airflow connection of the catalog (default: the embedded catalog)")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(func=_history)
    rollback = sub.add_parser("rollback", help="point main of TABLE at an earlier snapshot (asks first)")
    rollback.add_argument("table", help="namespace.table")
    rollback.add_argument("--to", required=True, type=int, metavar="SNAPSHOT", help="snapshot id (tables history)")
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.add_argument("--conn-id", help="Airflow connection of the catalog (default: the embedded catalog)")
    rollback.set_defaults(func=_rollback)
    tag = sub.add_parser("tag", help="tag a snapshot of TABLE (default: main's current one), e.g. a release")
    tag.add_argument("table", help="namespace.table")
    tag.add_argument("name", help="tag name: letters, digits, '.', '_' and '-' (an existing tag is moved)")
    tag.add_argument("--snapshot", type=int, metavar="ID", help="snapshot id (tables history; default: main's)")
    tag.add_argument("--retain-days", type=int, metavar="N", help="expire the tag after N days (default: never)")
    tag.add_argument("--conn-id", help="Airflow connection of the catalog (default: the embedded catalog)")
    tag.set_defaults(func=_tag)


def add_query_command(sub: Any) -> None:
    """Add ``asgard query SQL [--as-of [TABLE=]REF ...]`` to the top-level subcommands."""
    query = sub.add_parser("query", help="run one read-only SELECT over the Iceberg tables (optionally as of a ref)")
    query.add_argument("sql", help="one SELECT naming tables as namespace.table")
    query.add_argument(
        "--as-of",
        action="append",
        metavar="[TABLE=]REF",
        help="read TABLE (default: every table read) as of a snapshot id, tag or branch (repeatable)",
    )
    query.add_argument("--limit", type=int, default=100, help="most rows printed (default 100)")
    query.add_argument("--timeout", type=float, default=60.0, help="seconds before the query is stopped")
    query.add_argument("--conn-id", help="Airflow connection of the catalog (default: the embedded catalog)")
    query.add_argument("--json", action="store_true", help="machine-readable output")
    query.set_defaults(func=_query)


def _hook(args: argparse.Namespace) -> Any:
    from asgard_provider.hooks.iceberg import IcebergHook

    return IcebergHook(args.conn_id) if args.conn_id else IcebergHook()


def _history(args: argparse.Namespace) -> int:
    from asgard_provider.engines import wap

    try:
        entries = wap.history(_hook(args).load_table(args.table))
    except AsgardError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{**asdict(e), "committed_at": e.committed_at.isoformat()} for e in entries]))
        return 0
    header = ("snapshot_id", "committed_at (UTC)", "operation", "added", "deleted", "total", "main", "refs", "run")
    cells = [
        (
            str(e.snapshot_id),
            e.committed_at.isoformat(timespec="seconds"),
            e.operation,
            str(e.added_records),
            str(e.deleted_records),
            str(e.total_records),
            "*" if e.on_main else "",
            ",".join(e.refs) or "-",
            e.run_id or "-",
        )
        for e in entries
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    for line in (header, *cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from asgard_provider.engines import wap

    try:
        table = _hook(args).load_table(args.table)
        current = table.current_snapshot()
        if current is not None and current.snapshot_id == args.to:
            print(f"{args.table}: main is already at snapshot {args.to}")
            return 0
        if not args.yes and not _confirmed(args.table, current, args.to, input):
            print("rollback cancelled")
            return 1
        done = wap.rollback(table, args.table, args.to, by=getpass.getuser())
    except AsgardError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print(
        f"{done.table}: main {done.previous} -> {done.snapshot_id} (recorded in table property {wap.ROLLBACK_PROPERTY})"
    )
    return 0


def _tag(args: argparse.Namespace) -> int:
    from asgard_provider.engines import wap

    try:
        table = _hook(args).load_table(args.table)
        snapshot = wap.tag(table, args.table, args.name, args.snapshot, args.retain_days)
    except AsgardError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    kept = f"{args.retain_days} days" if args.retain_days else "until removed"
    print(f"{args.table}: tag {args.name} -> snapshot {snapshot} (kept {kept}; read it with --as-of {args.name})")
    return 0


def as_of_refs(values: list[str] | None) -> str | dict[str, str] | None:
    """``--as-of`` values as ``run_query`` takes them: one ref for every table, or ``TABLE=REF`` pairs."""
    if not values:
        return None
    pairs = [v.partition("=") for v in values]
    if len(values) == 1 and not pairs[0][1]:
        return values[0]
    if any(not sep or not table or not ref for table, sep, ref in pairs):
        raise AsgardError(f"--as-of {' '.join(values)}: give one REF for every table, or TABLE=REF for each")
    return {table.strip(): ref.strip() for table, _, ref in pairs}


def _query(args: argparse.Namespace) -> int:
    from asgard_provider.api.query import run_query

    try:
        hook = _hook(args)
        result = run_query(
            hook.catalog, args.sql, limit=args.limit, timeout_seconds=args.timeout, as_of=as_of_refs(args.as_of)
        )
    except AsgardError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(result), default=str))
        return 0
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in result.rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(result.columns)]
    for line in (result.columns, *cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    read = ", ".join(f"{t}@{result.snapshots[t]}" if t in result.snapshots else f"{t}@main" for t in result.tables)
    more = " (more rows: raise --limit)" if result.truncated else ""
    print(f"-- {len(result.rows)} rows{more} from {read or 'no table'}", file=sys.stderr)
    return 0


def _confirmed(table: str, current: Any, target: int, ask: Callable[[str], str]) -> bool:
    """Ask before moving main: readers and the next runs see the target snapshot's rows."""
    now = current.snapshot_id if current is not None else "-"
    answer = ask(
        f"Point main of {table} from snapshot {now} to {target}? Readers and the next runs see its rows. [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")
