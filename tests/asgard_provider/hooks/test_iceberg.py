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


def _create_namespace_at_once(barrier, errors) -> None:  # type: ignore[no-untyped-def]
    hook = IcebergHook()
    hook.catalog  # noqa: B018 - open the catalog before the race, as each task process has
    barrier.wait()
    try:
        hook.ensure_namespace("bronze")
    except Exception as exc:
        errors.put(repr(exc))


def test_tasks_creating_one_namespace_at_once_all_succeed(asgard_home: Path) -> None:
    """Under a scheduler three ingest tasks start together and each creates ``bronze`` in the SQLite catalog."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for _ in range(3):
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_create_namespace_at_once, args=(barrier, errors)) for _ in range(6)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        IcebergHook().catalog.drop_namespace("bronze")
    assert errors.empty(), errors.get()


def test_small_batches_are_joined_into_few_appends_of_one_commit(
    asgard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgard_provider.engines import iceberg_tables

    batch_bytes = pa.table({"id": pa.array(range(100), pa.int64())}).nbytes
    monkeypatch.setattr(iceberg_tables, "APPEND_CHUNK_BYTES", 4 * batch_bytes)
    batches = [pa.table({"id": pa.array(range(i * 100, i * 100 + 100), pa.int64())}) for i in range(10)]
    batches.insert(5, pa.table({"id": pa.array([], pa.int64())}))
    batches.append(pa.table({"id": pa.array([1000], pa.int64()), "note": pa.array(["new"])}))
    result = IcebergHook().write("bronze.chunks", batches)
    table = IcebergHook().load_table("bronze.chunks")
    assert result["rows_written"] == 1001
    # one catalog commit; its appends: 4 + 4 + 2 batches of one schema, then the evolved one
    assert len(table.snapshots()) == 4
    assert table.inspect.files().num_rows == 4
    rows = table.scan().to_arrow().sort_by("id")
    assert rows["id"].to_pylist() == list(range(1001))
    assert rows["note"].to_pylist() == [None] * 1000 + ["new"]
