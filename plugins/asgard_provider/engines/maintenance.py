"""Iceberg table maintenance with Spark's procedures: expire snapshots, compact data files, remove orphans.

Each step is idempotent and safe beside running pipelines: snapshots referenced by a branch or tag (a run's
unpublished branch, a release tag) are never expired, the newest ``retain_last`` snapshots and those younger
than the retention stay for rollback and backfills, and orphan files younger than ``orphan_min_age_hours``
(at least 24 h) are left to writers that may still commit them. Nothing here imports Airflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgard_provider.catalog import CATALOG_NAME, split_table_name
from asgard_provider.engines.spark_sql import short_message
from asgard_provider.exceptions import CatalogError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOG = logging.getLogger(__name__)
#: Iceberg refuses to remove orphan files younger than this from SQL (a writer may still commit them).
MIN_ORPHAN_AGE_HOURS = 24


@dataclass(frozen=True)
class MaintenancePolicy:
    """How much history maintenance keeps and what it compacts."""

    snapshot_retention_days: int = 7
    retain_last: int = 5
    orphan_min_age_hours: int = 72
    compact_min_input_files: int = 5


@dataclass(frozen=True)
class Footprint:
    """What a table occupies in storage: snapshots, data files and metadata files (orphans included)."""

    snapshots: int
    data_files: int
    data_bytes: int
    metadata_files: int
    metadata_bytes: int


@dataclass(frozen=True)
class Maintained:
    """One table's maintenance: the footprint before and after, and what each procedure reported."""

    table: str
    before: Footprint
    after: Footprint
    rewritten_files: int
    expired_data_files: int
    orphans_removed: int


def footprint(table: Any) -> Footprint:
    """Count the snapshots of a pyiceberg table and the files and bytes under its data/ and metadata/ folders."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(table.location().rstrip("/"))
    counts = {}
    for folder in ("data", "metadata"):
        infos = filesystem.get_file_info(fs.FileSelector(f"{root}/{folder}", recursive=True, allow_not_found=True))
        files = [i for i in infos if i.type == fs.FileType.File]
        counts[folder] = (len(files), sum(i.size or 0 for i in files))
    return Footprint(len(table.snapshots()), *counts["data"], *counts["metadata"])


def maintain(
    spark: SparkSession, catalog: Any, name: str, policy: MaintenancePolicy, now: datetime, log: logging.Logger = _LOG
) -> Maintained:
    """Compact, expire and remove orphans of ``namespace.table``; return its footprint before and after."""
    from asgard_provider.engines.iceberg_tables import load_table

    if policy.orphan_min_age_hours < MIN_ORPHAN_AGE_HOURS:
        raise CatalogError(f"orphan_min_age_hours must be at least {MIN_ORPHAN_AGE_HOURS} (a writer may still commit)")
    ident = ".".join(split_table_name(name))
    before = footprint(load_table(catalog, ident))
    compact = (
        f"rewrite_data_files(table => '{ident}', options => map('min-input-files', '{policy.compact_min_input_files}'))"
    )
    (rewritten,) = _call(spark, compact, ident)
    keep_from = _at(now - timedelta(days=policy.snapshot_retention_days))
    expire = f"expire_snapshots(table => '{ident}', older_than => {keep_from}, retain_last => {policy.retain_last})"
    (expired,) = _call(spark, expire, ident)
    orphan_before = _at(now - timedelta(hours=policy.orphan_min_age_hours))
    orphans = _call(spark, f"remove_orphan_files(table => '{ident}', older_than => {orphan_before})", ident)
    after = footprint(load_table(catalog, ident))
    done = Maintained(ident, before, after, int(rewritten[0] or 0), int(expired[0] or 0), len(orphans))
    log.info(
        "%s: snapshots %d -> %d, data files %d (%d bytes) -> %d (%d bytes), metadata %d (%d bytes) -> %d (%d bytes)",
        ident,
        before.snapshots,
        after.snapshots,
        before.data_files,
        before.data_bytes,
        after.data_files,
        after.data_bytes,
        before.metadata_files,
        before.metadata_bytes,
        after.metadata_files,
        after.metadata_bytes,
    )
    return done


def _call(spark: SparkSession, procedure: str, table: str) -> list[Any]:
    """Run ``CALL iceberg.system.<procedure>`` and return its result rows."""
    try:
        return list(spark.sql(f"CALL {CATALOG_NAME}.system.{procedure}").collect())
    except Exception as exc:
        raise CatalogError(f"maintenance of {table} failed ({procedure.split('(')[0]}): {short_message(exc)}") from exc


def _at(moment: datetime) -> str:
    """Return a Spark timestamp literal of ``moment`` in UTC (the session's time zone), to the microsecond.

    Cut to the second, a cut-off would keep every snapshot of its last second: a run right after a burst of
    commits would keep them all, and the next run would expire them.
    """
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"
