"""Every Spark transform writes on its run's branch (write-audit-publish, issue 15), on real Spark and pyiceberg.

A transform without checks publishes output and quarantine at the end of its own task: main stays where the last
run left it while the SQL runs and the tables are written, a failure leaves main there and the branch for
inspection, and an overwrite overtaken by another run's publish is refused until the task's retry lands it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from asgard_provider.assets import table_asset
from asgard_provider.engines import wap
from asgard_provider.engines.spark_sql import TransformResult, run_transform
from asgard_provider.exceptions import PublishConflictError, TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook
from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator, publish_transform, wap_branch

pytestmark = pytest.mark.spark

OUTPUT, QUARANTINE = "silver.items", "silver.items_quarantine"
SPLIT = (
    "SELECT id, upper(name) AS name, CASE WHEN id < 0 THEN 'negative_id' END AS _rejected_reason "
    "FROM iceberg.bronze.items"
)


@pytest.fixture
def bronze(asgard_home: Path) -> IcebergHook:
    hook = IcebergHook()
    hook.write("bronze.items", [_items([1, 2, -3])])
    return hook


def _items(ids: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids]})


def _op(sql: str = SPLIT, **kwargs: Any) -> SparkIcebergTransformOperator:
    op = SparkIcebergTransformOperator(task_id="clean_items", sql=sql, output_table=OUTPUT, **kwargs)
    op.outlets = [table_asset(OUTPUT), table_asset(QUARANTINE)]
    return op


def _context(op: SparkIcebergTransformOperator, run_id: str) -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": run_id, "task": op, "outlet_events": OutletEventAccessors()}


def _write_step(op: SparkIcebergTransformOperator, ctx: dict[str, Any]) -> TransformResult:
    """What the task does before it publishes: run the SQL and write the tables on the run's branch."""
    op.render_template_fields(ctx)  # type: ignore[arg-type]
    spark = SparkHook().get_session(IcebergHook().settings)
    return run_transform(spark, op.transform_spec(wap_branch(ctx, op.publish), ctx["run_id"]))


def _main(name: str) -> int:
    return int(IcebergHook().load_table(name).current_snapshot().snapshot_id)


def _rows(name: str, snapshot_id: int | None = None) -> list[tuple[Any, ...]]:
    rows = IcebergHook().load_table(name).scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted(tuple(row.values()) for row in rows)


def test_without_checks_main_moves_only_when_the_task_publishes(bronze: IcebergHook) -> None:
    first = _op()
    ctx = _context(first, "scheduled__1")
    result = first.execute(ctx)  # type: ignore[arg-type]
    assert _rows(OUTPUT) == [(1, "N1"), (2, "N2")] and _rows(QUARANTINE) == [(-3, "N-3", "negative_id")]
    output = bronze.load_table(OUTPUT)
    assert result["snapshot_id"] == _main(OUTPUT) and result["published_from"] == "run_scheduled__1"
    assert output.refs().keys() == {"main"} and bronze.load_table(QUARANTINE).refs().keys() == {"main"}
    assert output.current_snapshot().summary.additional_properties[wap.RUN_PROPERTY] == "scheduled__1"
    assert ctx["outlet_events"][table_asset(OUTPUT)].extra["snapshot_id"] == _main(OUTPUT)

    bronze.write("bronze.items", [_items([4, -5])], mode="append")
    before = {name: _main(name) for name in (OUTPUT, QUARANTINE)}
    second = _op()
    ctx = _context(second, "scheduled__2")
    written = _write_step(second, ctx)
    branch = "run_scheduled__2"
    assert {name: _main(name) for name in (OUTPUT, QUARANTINE)} == before  # readers of main see the last run
    on_branch = wap.branch_snapshot(bronze.load_table(OUTPUT), branch)
    assert _rows(OUTPUT, on_branch) == [(1, "N1"), (2, "N2"), (4, "N4")]
    assert ctx["outlet_events"][table_asset(OUTPUT)].extra == {}  # no asset event before the publish

    published = publish_transform(second, ctx, bronze, written.as_dict(), "overwrite", None, branch, publish=True)
    assert _main(OUTPUT) == on_branch == published["snapshot_id"]  # a fast-forward to the audited snapshot
    assert _rows(QUARANTINE) == [(-5, "N-5", "negative_id"), (-3, "N-3", "negative_id")]
    assert branch not in bronze.load_table(OUTPUT).refs() and branch not in bronze.load_table(QUARANTINE).refs()
    assert ctx["outlet_events"][table_asset(OUTPUT)].extra["snapshot_id"] == on_branch


def test_a_failed_transform_leaves_main_and_keeps_the_branch(bronze: IcebergHook) -> None:
    op = _op("SELECT id, name FROM iceberg.bronze.items")
    op.execute(_context(op, "scheduled__1"))  # type: ignore[arg-type]
    published = _main(OUTPUT)
    op = _op("SELECT id, CASE WHEN id < 0 THEN raise_error('bad id') ELSE name END AS name FROM iceberg.bronze.items")
    with pytest.raises(TransformError, match=r"bad id.*\nmain of silver\.items is unchanged$"):
        op.execute(_context(op, "scheduled__2"))  # type: ignore[arg-type]
    assert _main(OUTPUT) == published

    # The quarantine table has an incompatible column type: the output is written, then the quarantine fails.
    bronze.write(QUARANTINE, [pa.table({"id": [0], "name": [0], "_rejected_reason": ["old"]})])
    op = _op()
    ctx = _context(op, "scheduled__3")
    with pytest.raises(TransformError, match=r"main of silver\.items is unchanged; what the run wrote is on branch"):
        op.execute(ctx)  # type: ignore[arg-type]
    output = bronze.load_table(OUTPUT)
    assert _main(OUTPUT) == published and _rows(OUTPUT) == [(-3, "n-3"), (1, "n1"), (2, "n2")]
    branch = output.refs()["run_scheduled__3"]
    assert _rows(OUTPUT, branch.snapshot_id) == [(1, "N1"), (2, "N2")]  # the run's rows, for inspection
    assert branch.max_ref_age_ms == wap.retention_ms(wap.BRANCH_RETENTION_DAYS)
    assert ctx["outlet_events"][table_asset(OUTPUT)].extra == {}


@pytest.mark.parametrize(
    ("mode", "first", "second", "expected"),
    [
        ("append", "VALUES (1, 'a'), (2, 'b')", "VALUES (3, 'c')", [(1, "a"), (2, "b"), (3, "c")]),
        ("merge", "VALUES (1, 'a'), (2, 'b')", "VALUES (2, 'B'), (3, 'c')", [(1, "a"), (2, "B"), (3, "c")]),
    ],
)
def test_append_and_merge_write_on_the_branch_then_publish(
    bronze: IcebergHook, mode: str, first: str, second: str, expected: list[tuple[Any, ...]]
) -> None:
    keys = {"merge_keys": ["id"]} if mode == "merge" else {}
    op = _op(f"SELECT * FROM {first} AS t(id, name)", mode=mode, **keys)
    op.execute(_context(op, "scheduled__1"))  # type: ignore[arg-type]
    before = _main(OUTPUT)
    op = _op(f"SELECT * FROM {second} AS t(id, name)", mode=mode, **keys)
    ctx = _context(op, "scheduled__2")
    written = _write_step(op, ctx)
    assert _main(OUTPUT) == before and _rows(OUTPUT) == [(1, "a"), (2, "b")]
    on_branch = wap.branch_snapshot(bronze.load_table(OUTPUT), "run_scheduled__2")
    assert _rows(OUTPUT, on_branch) == expected

    publish_transform(op, ctx, bronze, written.as_dict(), mode, None, "run_scheduled__2", publish=True)
    output = bronze.load_table(OUTPUT)
    assert _main(OUTPUT) == on_branch and _rows(OUTPUT) == expected and output.refs().keys() == {"main"}
    assert output.current_snapshot().summary.operation.value == ("append" if mode == "append" else "overwrite")


def test_an_overwrite_overtaken_by_another_run_is_refused_and_its_retry_lands(bronze: IcebergHook) -> None:
    slow = _op("SELECT id, 'slow' AS name FROM iceberg.bronze.items")
    slow_ctx = _context(slow, "scheduled__1")
    written = _write_step(slow, slow_ctx)  # the slow run's SQL and writes are done, its publish is not
    fast = _op("SELECT id, 'fast' AS name FROM iceberg.bronze.items")
    fast.execute(_context(fast, "scheduled__2"))  # type: ignore[arg-type]  # another run publishes first
    assert _rows(OUTPUT) == [(-3, "fast"), (1, "fast"), (2, "fast")]

    with pytest.raises(PublishConflictError) as err:
        publish_transform(slow, slow_ctx, bronze, written.as_dict(), "overwrite", None, "run_scheduled__1", True)
    message = str(err.value)
    assert "main moved to snapshot" in message and "a whole-table overwrite or a MERGE" in message
    assert "Retry the task that wrote silver.items: it branches again from the new main" in message
    assert _rows(OUTPUT) == [(-3, "fast"), (1, "fast"), (2, "fast")]  # nothing moved, the other run's rows stay
    assert wap.branch_snapshot(bronze.load_table(OUTPUT), "run_scheduled__1") is not None

    retry = _op("SELECT id, 'slow' AS name FROM iceberg.bronze.items")
    retry.execute(_context(retry, "scheduled__1"))  # type: ignore[arg-type]  # the task's retry
    assert _rows(OUTPUT) == [(-3, "slow"), (1, "slow"), (2, "slow")]
    assert bronze.load_table(OUTPUT).refs().keys() == {"main"}
