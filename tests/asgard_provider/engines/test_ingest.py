"""Bronze loads write-audit-publish: commit on the run's branch, publish after, a failed load leaves main alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.engines import ingest, wap
from asgard_provider.engines.ingest import Load, Window
from asgard_provider.exceptions import CatalogError
from asgard_provider.hooks.iceberg import IcebergHook

TABLE = "bronze.events"
LOG = logging.getLogger("test_ingest")
DAY10, DAY11 = datetime(2025, 11, 10), datetime(2025, 11, 11)


def _events(day: datetime, ids: list[int]) -> pa.RecordBatch:
    times = [day + timedelta(hours=i % 24) for i in range(len(ids))]
    return pa.RecordBatch.from_pydict(
        {"event_id": pa.array(ids, pa.int64()), "updated_at": pa.array(times, pa.timestamp("us"))}
    )


def _day(day: datetime, run_id: str) -> Load:
    return Load(TABLE, cursor="updated_at", window=Window(day, day + timedelta(days=1)), run_id=run_id)


def _rows(snapshot_id: int | None = None) -> list[tuple[str, int]]:
    data = IcebergHook().load_table(TABLE).scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted((r["updated_at"].date().isoformat(), r["event_id"]) for r in data)


def test_a_load_commits_on_the_run_branch_then_publishes_it(asgard_home: Path) -> None:
    hook = IcebergHook()
    result = ingest.load(hook.catalog, [_events(DAY10, [1, 2])], Load(TABLE, run_id="manual__1"), LOG)
    table = hook.load_table(TABLE)
    current = table.current_snapshot()
    assert result.snapshot_id == current.snapshot_id and result.rows_written == 2
    assert current.summary.additional_properties[wap.RUN_PROPERTY] == "manual__1"
    assert table.refs().keys() == {"main"}  # published: the run's branch is gone
    assert _rows() == [("2025-11-10", 1), ("2025-11-10", 2)]


def test_an_incremental_load_records_the_slice_it_replaced(asgard_home: Path) -> None:
    hook = IcebergHook()
    ingest.load(hook.catalog, [_events(DAY10, [1])], Load(TABLE, run_id="full"), LOG)
    ingest.load(hook.catalog, [_events(DAY10, [5])], _day(DAY10, "scheduled__10"), LOG)
    table = hook.load_table(TABLE)
    recorded = {
        s.summary.additional_properties.get(wap.REPLACE_PROPERTY)
        for s in table.snapshots()
        if s.summary.additional_properties.get(wap.RUN_PROPERTY) == "scheduled__10"
    }
    assert recorded == {"updated_at >= '2025-11-10T00:00:00' AND updated_at < '2025-11-11T00:00:00'"}
    assert _rows() == [("2025-11-10", 5)]


def test_a_bad_batch_mid_write_leaves_main_unchanged_and_keeps_the_branch(asgard_home: Path) -> None:
    hook = IcebergHook()
    ingest.load(hook.catalog, [_events(DAY10, [1, 2])], Load(TABLE, run_id="good"), LOG)
    before = hook.load_table(TABLE).current_snapshot().snapshot_id
    bad = pa.RecordBatch.from_pydict({"event_id": ["x"], "updated_at": pa.array([DAY11], pa.timestamp("us"))})
    with pytest.raises(CatalogError, match=r"incompatible schema change for bronze\.events"):
        ingest.load(hook.catalog, [_events(DAY11, [3]), bad], Load(TABLE, run_id="bad"), LOG)
    table = hook.load_table(TABLE)
    assert table.current_snapshot().snapshot_id == before and _rows() == [("2025-11-10", 1), ("2025-11-10", 2)]
    branch = table.refs()[wap.run_branch("bad")]  # kept for inspection, with the default retention
    assert branch.max_ref_age_ms == wap.retention_ms(wap.BRANCH_RETENTION_DAYS)
    assert branch.snapshot_id == before  # nothing of the failed write was committed, on the branch either


def _one_file_of_two_days(hook: IcebergHook) -> None:
    """A full refresh leaves days 10 and 11 in one data file: each day's replace rewrites that file."""
    ingest.load(hook.catalog, [pa.concat_batches([_events(DAY10, [1]), _events(DAY11, [2])])], Load(TABLE), LOG)
    assert len(hook.load_table(TABLE).inspect.files()) == 1


BOTH_DAYS = [("2025-11-10", 100), ("2025-11-10", 101), ("2025-11-11", 110), ("2025-11-11", 111)]


def test_overlapping_loads_of_two_days_both_land_once(asgard_home: Path) -> None:
    hook = IcebergHook()
    _one_file_of_two_days(hook)
    day10 = _day(DAY10, "scheduled__10")
    staged = ingest.write(hook.catalog, [_events(DAY10, [100, 101])], day10, LOG)  # on its branch, unpublished
    assert _rows() == [("2025-11-10", 1), ("2025-11-11", 2)]
    ingest.load(hook.catalog, [_events(DAY11, [110, 111])], _day(DAY11, "scheduled__11"), LOG)  # writes, publishes
    assert _rows() == [("2025-11-10", 1), ("2025-11-11", 110), ("2025-11-11", 111)]
    assert _rows(staged.snapshot_id) == [("2025-11-10", 100), ("2025-11-10", 101), ("2025-11-11", 2)]

    result = ingest.publish(hook.catalog, staged, day10, LOG)
    assert _rows() == BOTH_DAYS  # day 10 replayed onto day 11's main: no row lost, none twice
    table = hook.load_table(TABLE)
    props = table.current_snapshot().summary.additional_properties
    assert result.snapshot_id == table.current_snapshot().snapshot_id != staged.snapshot_id
    assert props[wap.RUN_PROPERTY] == "scheduled__10" and props[wap.REPLAYED_PROPERTY] == str(staged.snapshot_id)
    assert table.refs().keys() == {"main"}


def test_a_load_overtaken_while_writing_fails_cleanly_and_its_retry_lands(asgard_home: Path) -> None:
    hook = IcebergHook()
    _one_file_of_two_days(hook)

    def day10() -> Iterator[pa.RecordBatch]:  # day 11's run writes and publishes while day 10's commit is staged
        yield _events(DAY10, [100])
        ingest.load(hook.catalog, [_events(DAY11, [110, 111])], _day(DAY11, "scheduled__11"), LOG)
        yield _events(DAY10, [101])

    with pytest.raises(CatalogError, match=r"concurrent commit to bronze\.events conflicted; retry the task"):
        ingest.load(hook.catalog, day10(), _day(DAY10, "scheduled__10"), LOG)
    assert _rows() == [("2025-11-10", 1), ("2025-11-11", 110), ("2025-11-11", 111)]  # day 11 landed, day 10 not
    ingest.load(hook.catalog, [_events(DAY10, [100, 101])], _day(DAY10, "scheduled__10"), LOG)  # the task's retry
    assert _rows() == BOTH_DAYS


def test_without_a_run_id_a_load_commits_on_main(asgard_home: Path) -> None:
    hook = IcebergHook()
    result = ingest.load(hook.catalog, [_events(DAY10, [1])], Load(TABLE), LOG)
    table = hook.load_table(TABLE)
    assert len(table.snapshots()) == 1 and result.snapshot_id == table.current_snapshot().snapshot_id
