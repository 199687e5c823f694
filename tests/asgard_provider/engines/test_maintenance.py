"""Maintenance after 20 reruns: fewer files and snapshots, the same rows, orphans gone, run branches kept."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.engines import wap
from asgard_provider.engines.maintenance import MaintenancePolicy, footprint, maintain
from asgard_provider.exceptions import CatalogError, PipelineConfigError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook
from asgard_provider.maintenance import load_maintenance_config

pytestmark = pytest.mark.spark


def _rows(hook: IcebergHook, name: str) -> list[int]:
    return sorted(hook.load_table(name).scan().to_arrow().column("id").to_pylist())


def test_maintenance_after_twenty_reruns_keeps_rows_and_drops_history(asgard_home: Path) -> None:
    hook = IcebergHook()
    for run in range(20):  # a daily slice rewritten by 20 reruns, plus one small append each
        hook.write("silver.events", [pa.table({"id": [1, 2, 3], "day": ["d1"] * 3})], overwrite_filter="day == 'd1'")
        hook.write("silver.events", [pa.table({"id": [100 + run], "day": ["d2"]})], mode="append")
    branch = wap.run_branch("failed_audit")
    hook.write("silver.events", [pa.table({"id": [-1], "day": ["bad"]})], mode="append", branch=branch)
    table = hook.load_table("silver.events")
    orphan = Path(table.location().removeprefix("file://")) / "data" / "killed-writer.parquet"
    orphan.write_bytes(b"left by a writer killed before its commit")
    old = time.time() - 4 * 86400
    os.utime(orphan, (old, old))
    expected = _rows(hook, "silver.events")

    spark = SparkHook().get_session(hook.settings)
    policy = MaintenancePolicy(snapshot_retention_days=0, retain_last=2, orphan_min_age_hours=24)
    done = maintain(spark, hook.catalog, "silver.events", policy, datetime.now(UTC))
    print(f"\nmaintenance after 20 reruns: {done.before} -> {done.after}")
    assert done.after.snapshots < done.before.snapshots / 5  # 60 -> 3: main's last 2 and the branch's
    # The unpublished branch still references the files of its snapshot, so they stay: 42 -> 24 data files.
    assert done.after.data_files < done.before.data_files and done.after.data_bytes < done.before.data_bytes
    assert done.rewritten_files > 0 and done.expired_data_files > 0
    assert done.orphans_removed == 1 and not orphan.exists()
    assert _rows(hook, "silver.events") == expected
    kept = hook.load_table("silver.events")
    assert sorted(kept.scan(snapshot_id=wap.branch_snapshot(kept, branch)).to_arrow().column("id").to_pylist())[0] == -1

    again = maintain(spark, hook.catalog, "silver.events", policy, datetime.now(UTC))
    assert (again.orphans_removed, again.expired_data_files) == (0, 0)  # idempotent
    assert again.after.snapshots <= done.after.snapshots and _rows(hook, "silver.events") == expected
    assert footprint(hook.load_table("silver.events")) == again.after


def test_orphans_younger_than_a_day_are_never_removed(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("silver.t", [pa.table({"id": [1]})])
    spark = SparkHook().get_session(hook.settings)
    with pytest.raises(CatalogError, match="orphan_min_age_hours must be at least 24"):
        maintain(spark, hook.catalog, "silver.t", MaintenancePolicy(orphan_min_age_hours=1), datetime.now(UTC))


def test_maintenance_config_defaults_and_errors(tmp_path: Path) -> None:
    assert load_maintenance_config(tmp_path).policy() == MaintenancePolicy()
    (tmp_path / "maintenance.yaml").write_text("orphan_min_age_hours: 2\nretention: 3\n")
    with pytest.raises(PipelineConfigError) as err:
        load_maintenance_config(tmp_path)
    message = str(err.value)
    assert "maintenance.yaml" in message and "orphan_min_age_hours" in message and "retention" in message
