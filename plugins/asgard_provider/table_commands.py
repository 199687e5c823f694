"""``asgard tables history`` and ``asgard tables rollback``: time travel on the catalog's Iceberg tables."""

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
    """Add ``history`` and ``rollback`` under the ``asgard tables`` parser (which still lists tables alone)."""
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


def _confirmed(table: str, current: Any, target: int, ask: Callable[[str], str]) -> bool:
    """Ask before moving main: readers and the next runs see the target snapshot's rows."""
    now = current.snapshot_id if current is not None else "-"
    answer = ask(
        f"Point main of {table} from snapshot {now} to {target}? Readers and the next runs see its rows. [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")
