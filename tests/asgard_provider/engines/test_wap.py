"""Write-audit-publish with pyiceberg: branch writes, fast-forward publish, refusal when main moved, rollback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.engines import wap
from asgard_provider.exceptions import CatalogError, PublishError
from asgard_provider.hooks.iceberg import IcebergHook


def _ids(hook: IcebergHook, name: str, snapshot_id: int | None = None) -> list[int]:
    table = hook.load_table(name)
    return sorted(table.scan(snapshot_id=snapshot_id).to_arrow().column("id").to_pylist())


def test_run_branch_is_a_plain_identifier() -> None:
    assert wap.run_branch("scheduled__2025-11-11T06:00:00+00:00") == "run_scheduled__2025_11_11T06_00_00_00_00"
    with pytest.raises(PublishError, match="run id"):
        wap.run_branch("")


def test_branch_write_is_invisible_on_main_until_published(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("silver.t", [pa.table({"id": [1, 2]})])
    branch = wap.run_branch("run_b")
    written = hook.write("silver.t", [pa.table({"id": [3, 4, 5]})], branch=branch, branch_retention_days=3)
    table = hook.load_table("silver.t")
    assert _ids(hook, "silver.t") == [1, 2]
    assert (
        _ids(hook, "silver.t", wap.branch_snapshot(table, branch))
        == [3, 4, 5]
        == _ids(hook, "silver.t", written["snapshot_id"])
    )
    assert table.refs()[branch].max_ref_age_ms == 3 * 24 * 3600 * 1000

    (done,) = wap.publish(hook.catalog, ["silver.t"], branch)
    assert done.moved and done.snapshot_id == written["snapshot_id"]
    assert _ids(hook, "silver.t") == [3, 4, 5]
    assert branch not in hook.load_table("silver.t").refs()
    assert wap.publish(hook.catalog, ["silver.t"], branch)[0].moved is False  # publishing again changes nothing


def test_new_table_is_empty_on_main_until_published(asgard_home: Path) -> None:
    hook = IcebergHook()
    branch = wap.run_branch("first")
    hook.write("silver.fresh", [pa.table({"id": [9]})], branch=branch)
    assert _ids(hook, "silver.fresh") == []
    wap.publish(hook.catalog, ["silver.fresh"], branch)
    assert _ids(hook, "silver.fresh") == [9]


def test_publish_refuses_when_main_moved_and_moves_no_table(asgard_home: Path) -> None:
    hook = IcebergHook()
    for name in ("silver.a", "silver.b"):
        hook.write(name, [pa.table({"id": [1]})])
    slow, fast = wap.run_branch("slow"), wap.run_branch("fast")
    for name in ("silver.a", "silver.b"):
        hook.write(name, [pa.table({"id": [2]})], branch=slow)
    hook.write("silver.b", [pa.table({"id": [3]})], mode="append", branch=fast)
    wap.publish(hook.catalog, ["silver.b"], fast)
    with pytest.raises(PublishError, match=r"silver\.b: main moved"):
        wap.publish(hook.catalog, ["silver.a", "silver.b"], slow)
    assert _ids(hook, "silver.a") == [1] and _ids(hook, "silver.b") == [1, 3]  # neither table moved
    assert wap.branch_snapshot(hook.load_table("silver.a"), slow) is not None  # the branch stays for a rerun


def _slice(day: int, ids: list[int]) -> pa.Table:
    return pa.table({"day": pa.array([day] * len(ids), pa.int64()), "id": pa.array(ids, pa.int64())})


def test_an_overtaken_run_replays_its_slice_replace_and_its_appends(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("silver.days", [_slice(9, [1]), _slice(10, [2])])
    hook.write("silver.log", [pa.table({"id": [1]})])
    runs = {day: wap.run_branch(f"day{day}") for day in (10, 11)}
    for day, branch in runs.items():  # both branch from the same main, each replacing its own day
        where = f"day == {day}"
        props = {wap.REPLACE_PROPERTY: where, wap.RUN_PROPERTY: f"day{day}"}
        hook.write(
            "silver.days", [_slice(day, [day * 10])], overwrite_filter=where, branch=branch, snapshot_properties=props
        )
        hook.write("silver.log", [pa.table({"id": [day]})], mode="append", branch=branch)
    first = wap.publish(hook.catalog, ["silver.days", "silver.log"], runs[11])
    second = wap.publish(hook.catalog, ["silver.days", "silver.log"], runs[10])
    assert all(done.moved for done in first + second)
    rows = hook.load_table("silver.days").scan().to_arrow().to_pylist()
    assert sorted((r["day"], r["id"]) for r in rows) == [(9, 1), (10, 100), (11, 110)]  # day 10's old row replaced
    assert _ids(hook, "silver.log") == [1, 10, 11]
    days = hook.load_table("silver.days")
    assert days.refs().keys() == {"main"}
    assert days.current_snapshot().summary.additional_properties[wap.RUN_PROPERTY] == "day10"


def test_a_replay_rewrites_a_file_holding_several_slices_once(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("silver.days", [pa.concat_tables([_slice(d, [d]) for d in (9, 10, 11)])])
    assert len(hook.load_table("silver.days").inspect.files()) == 1  # one file holds all three days
    runs = {day: wap.run_branch(f"day{day}") for day in (10, 11)}
    for day, branch in runs.items():  # each run's delete rewrites that file, keeping the two other days
        where = f"day == {day}"
        props = {wap.REPLACE_PROPERTY: where}
        hook.write(
            "silver.days", [_slice(day, [day * 10])], overwrite_filter=where, branch=branch, snapshot_properties=props
        )
    wap.publish(hook.catalog, ["silver.days"], runs[11])
    wap.publish(hook.catalog, ["silver.days"], runs[10])
    rows = hook.load_table("silver.days").scan().to_arrow().to_pylist()
    assert sorted((r["day"], r["id"]) for r in rows) == [(9, 9), (10, 100), (11, 110)]  # no kept row twice


def test_rollback_restores_previous_contents_and_history_names_refs(asgard_home: Path) -> None:
    hook = IcebergHook()
    hook.write("silver.t", [pa.table({"id": [1, 2]})], snapshot_properties={wap.RUN_PROPERTY: "run-1"})
    good = hook.load_table("silver.t").current_snapshot().snapshot_id
    hook.write("silver.t", [pa.table({"id": [66]})], snapshot_properties={wap.RUN_PROPERTY: "run-2"})
    entries = wap.history(hook.load_table("silver.t"))
    assert [e.run_id for e in entries if e.added_records] == ["run-1", "run-2"]
    assert entries[-1].refs == ["branch:main"] and all(e.on_main for e in entries)

    done = wap.rollback(hook.load_table("silver.t"), "silver.t", good)
    assert done.previous == entries[-1].snapshot_id and done.snapshot_id == good
    assert _ids(hook, "silver.t") == [1, 2]
    after = {e.snapshot_id: e for e in wap.history(hook.load_table("silver.t"))}
    assert after[entries[-1].snapshot_id].on_main is False  # kept for a roll forward, off main's lineage
    with pytest.raises(CatalogError, match="has no snapshot 42"):
        wap.rollback(hook.load_table("silver.t"), "silver.t", 42)


def test_resolve_ref_takes_a_snapshot_id_a_tag_or_a_branch_and_names_them_otherwise(asgard_home: Path) -> None:
    hook = IcebergHook()
    first = hook.write("silver.refs", [pa.table({"id": [1]})])["snapshot_id"]
    table = hook.load_table("silver.refs")
    assert wap.tag(table, "silver.refs", "release_1") == first
    hook.write("silver.refs", [pa.table({"id": [2]})], mode="append")
    table = hook.load_table("silver.refs")
    assert wap.resolve_ref(table, "silver.refs", "release_1") == first
    assert wap.resolve_ref(table, "silver.refs", str(first)) == first
    assert wap.resolve_ref(table, "silver.refs", "main") == table.current_snapshot().snapshot_id
    for bad in ("²", "9" * 25, "release_2"):  # a Unicode digit or an overlong number is a name, not an id
        with pytest.raises(CatalogError, match=r"has no snapshot, tag or branch .*tag:release_1"):
            wap.resolve_ref(table, "silver.refs", bad)
