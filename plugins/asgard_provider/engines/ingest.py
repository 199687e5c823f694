"""Bronze loads with pyiceberg: the run's window, the slice of the target it replaces, one commit (no Airflow).

A full refresh replaces the whole target table. An incremental load reads the rows whose cursor lies in the
run's data interval ``[lower, upper)`` and replaces exactly that slice of the target, so rerunning an interval
never duplicates rows. With a run id the commit goes to the run's branch and is published once it succeeded
(write-audit-publish, :mod:`asgard_provider.engines.wap`): a failed load leaves main as it was.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from asgard_provider.catalog import split_table_name
from asgard_provider.engines import wap
from asgard_provider.engines.iceberg_tables import WriteResult, write_batches
from asgard_provider.exceptions import SourceError
from asgard_provider.sources.common import utc_naive

#: Snapshot property recording the interval an incremental load replaced.
INTERVAL_PROPERTY = "asgard.interval"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Window:
    """The run's data interval an incremental load reads: ``lower <= cursor < upper`` (naive UTC)."""

    lower: datetime
    upper: datetime

    def label(self) -> str:
        """Return the interval as ``[lower, upper)`` in ISO format."""
        return f"[{self.lower.isoformat()}, {self.upper.isoformat()})"


@dataclass(frozen=True)
class Load:
    """One Bronze load: target, partition spec, snapshot properties, the run (``""``: write main) and window."""

    target_table: str
    partition_by: Sequence[str] = ()
    snapshot_properties: Mapping[str, str] = field(default_factory=dict)
    cursor: str | None = None
    window: Window | None = None
    run_id: str = ""


def truthy(value: bool | str) -> bool:
    """Whether a flag (``True`` or a rendered template such as ``"True"``) is set."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def window(
    cursor: str | None, start: str | None, end: str | None, full_refresh: bool | str, source: str
) -> Window | None:
    """Return the interval to read, or None for a full refresh (no cursor, or ``full_refresh`` set)."""
    if not cursor or truthy(full_refresh):
        return None
    if not start or not end:
        raise SourceError(
            f"incremental read of {source!r} by {cursor!r} needs interval_start and interval_end (the run's data "
            "interval); trigger with full_refresh to reload everything"
        )
    lower, upper = utc_naive(start, "interval bound"), utc_naive(end, "interval bound")
    if not lower < upper:
        raise SourceError(
            f"empty data interval [{lower}, {upper}) for {source!r}: the DAG needs a schedule with data intervals "
            "(cron), or trigger with full_refresh"
        )
    return Window(lower, upper)


def slice_filter(catalog: Any, table: str, cursor: str, within: Window) -> str:
    """Iceberg filter selecting the rows of ``table`` whose ``cursor`` lies in the window."""
    name = split_table_name(table)
    if not catalog.table_exists(name):
        return f"{cursor} IS NULL AND {cursor} IS NOT NULL"  # nothing to replace yet
    kind = str(catalog.load_table(name).schema().find_field(cursor, case_sensitive=True).field_type)
    lower, upper = within.lower, within.upper
    if kind == "date":
        lo, hi = lower.date().isoformat(), upper.date().isoformat()
    elif kind.startswith("timestamp"):
        lo, hi = lower.isoformat(), upper.isoformat()
    else:  # text timestamps copied from SQLite
        lo, hi = lower.isoformat(sep=" "), upper.isoformat(sep=" ")
    return f"{cursor} >= '{lo}' AND {cursor} < '{hi}'"


def load(catalog: Any, batches: Iterable[pa.RecordBatch], spec: Load, log: logging.Logger) -> WriteResult:
    """Write ``batches`` to the target in ONE commit (:func:`write`), then publish it (:func:`publish`).

    A load that fails leaves main unchanged and, with a run id, keeps the run's branch for inspection.
    """
    return publish(catalog, write(catalog, batches, spec, log), spec, log)


def write(catalog: Any, batches: Iterable[pa.RecordBatch], spec: Load, log: logging.Logger) -> WriteResult:
    """Commit ``batches`` as the whole table, or as the window's slice when incremental; return the commit.

    With ``spec.run_id`` the commit goes to the run's branch, recording the slice's filter for a replay. An
    empty window of a table that does not exist yet commits nothing; the result's ``snapshot_id`` is then None.
    """
    props = dict(spec.snapshot_properties)
    overwrite_filter = None
    rows = iter(batches)
    if spec.window is not None and spec.cursor is not None:
        overwrite_filter = slice_filter(catalog, spec.target_table, spec.cursor, spec.window)
        props[INTERVAL_PROPERTY] = spec.window.label()
        first = next(rows, None)
        if first is None and not catalog.table_exists(split_table_name(spec.target_table)):
            log.info("no rows in this interval and %s does not exist yet: nothing to do", spec.target_table)
            return WriteResult(".".join(split_table_name(spec.target_table)), 0, None)
        rows = itertools.chain([first] if first is not None else [], rows)
    return write_batches(
        catalog,
        spec.target_table,
        rows,
        mode="overwrite",
        overwrite_filter=overwrite_filter,
        partition_by=spec.partition_by,
        snapshot_properties=props,
        run_id=spec.run_id,
    )


def publish(catalog: Any, written: WriteResult, spec: Load, log: logging.Logger) -> WriteResult:
    """Move main of the target to the run's branch (:func:`wap.publish_run`); return ``written`` with main's snapshot.

    A fast-forward, or a replay of the slice replace when another run published the table since this one
    branched. Nothing to do without a run id (the write went to main) or without a commit.
    """
    if written.snapshot_id is None:
        return written
    done = wap.publish_run(catalog, [written.table], spec.run_id).get(written.table)
    if done is None:
        return written
    log.info("published %s: main %s -> %s (run %s)", written.table, done.previous, done.snapshot_id, spec.run_id)
    return dataclasses.replace(written, snapshot_id=done.snapshot_id)
