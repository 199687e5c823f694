"""IcebergHook.write on a real SQL catalog: atomic commits, partition replacement, schema evolution."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.exceptions import CatalogError
from asgard_provider.hooks.iceberg import IcebergHook


def test_widened_types_and_new_columns_evolve_the_table(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("bronze.t", [pa.table({"id": pa.array([1, 2], pa.int32()), "x": pa.array([1.5, 2.5], pa.float32())})])
    hook.write(
        "bronze.t",
        [
            pa.table(
                {
                    "id": pa.array([3], pa.int64()),
                    "x": pa.array([3.5], pa.float64()),
                    "note": pa.array(["new"], pa.string()),
                }
            )
        ],
        mode="append",
    )
    table = hook.load_table("bronze.t")
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types == {"id": "long", "x": "double", "note": "string"}
    rows = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["note"]) for r in rows] == [(1, None), (2, None), (3, "new")]


def test_incompatible_type_change_fails_and_keeps_the_table(asgard_home: Path) -> None:
    hook = IcebergHook()
    first = hook.write("bronze.t", [pa.table({"id": pa.array([1, 2], pa.int64())})])
    with pytest.raises(CatalogError, match=r"incompatible schema change for bronze\.t"):
        hook.write("bronze.t", [pa.table({"id": pa.array(["a"], pa.string())})])
    table = hook.load_table("bronze.t")
    assert table.current_snapshot().snapshot_id == first["snapshot_id"]
    assert str(table.schema().find_field("id").field_type) == "long"


def test_overwrite_filter_replaces_only_matching_rows(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("gold.p", [pa.table({"day": ["a", "a", "b"], "v": [1, 2, 3]})], partition_by=["day"])
    hook.write("gold.p", [pa.table({"day": ["a"], "v": [9]})], overwrite_filter="day == 'a'")
    rows = sorted((r["day"], r["v"]) for r in hook.load_table("gold.p").scan().to_arrow().to_pylist())
    assert rows == [("a", 9), ("b", 3)]
