"""The data-quality gate on real Iceberg tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.exceptions import DataQualityError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.checks import IcebergTableCheckOperator


def _write(rows: list[dict]) -> int:
    return IcebergHook().write("gold.m", [pa.Table.from_pylist(rows)])["snapshot_id"]


def _op(**kwargs) -> IcebergTableCheckOperator:
    return IcebergTableCheckOperator(task_id="check", tables=["gold.m"], **kwargs)


GOOD = [{"id": i, "day": "2025-11-11", "label": i % 2} for i in range(10)]


def test_clean_table_passes_and_reports_its_snapshot(asgard_home: Path) -> None:
    snapshot = _write(GOOD)
    result = _op(min_rows=10, not_null=["id"], unique=[["id", "day"]], accepted_values={"label": [0, 1]}).execute({})
    assert result["gold.m"]["snapshot_id"] == snapshot
    assert result["gold.m"]["total_records"] == 10


def test_every_failed_check_is_listed(asgard_home: Path) -> None:
    _write([*GOOD, {"id": 3, "day": "2025-11-11", "label": 7}, {"id": None, "day": "2025-11-11", "label": 0}])
    with pytest.raises(DataQualityError) as info:
        _op(min_rows=100, not_null=["id"], unique=[["id", "day"]], accepted_values={"label": [0, 1]}).execute({})
    message = str(info.value)
    assert "gold.m: 12 rows, expected at least 100" in message
    assert "gold.m.id: 1 NULL values (not_null)" in message
    assert "gold.m: 1 duplicated keys (id, day) (unique)" in message
    assert "gold.m.label: values [7] not in [0, 1] (accepted_values)" in message


def test_unknown_column_is_named(asgard_home: Path) -> None:
    _write(GOOD)
    with pytest.raises(DataQualityError, match=r"checked columns \['nope'\] do not exist"):
        _op(not_null=["nope"]).execute({})


def test_row_filter_limits_the_checked_rows(asgard_home: Path) -> None:
    _write([*GOOD, {"id": 1, "day": "2025-11-12", "label": 9}])
    _op(accepted_values={"label": [0, 1]}, row_filter="day == '2025-11-11'").execute({})
    with pytest.raises(DataQualityError):
        _op(accepted_values={"label": [0, 1]}, row_filter="day == '2025-11-12'").execute({})


def test_absent_columns_fail_when_the_table_has_them(asgard_home: Path) -> None:
    _write([{"id": 1, "MRN": "A-1", "day": "2025-11-11"}])
    with pytest.raises(DataQualityError) as info:
        _op(absent_columns=["mrn", "ssn"]).execute({})
    assert "gold.m.MRN: column exists (absent_columns)" in str(info.value)
    assert "ssn" not in str(info.value)
    assert _op(absent_columns=["ssn"]).execute({})["gold.m"]["total_records"] == 1


def test_tables_with_checks_of_their_own_are_audited_then_published_together(asgard_home: Path) -> None:
    from airflow.sdk import DAG

    from asgard_provider.engines import wap
    from asgard_provider.stages.checks import TableChecks, build_checks

    hook, branch = IcebergHook(), wap.run_branch("manual__1")
    for name in ("gold.a", "gold.b"):
        hook.write(name, [pa.table({"id": [1]})])
        hook.write(name, [pa.table({"id": [1, 2]})], branch=branch)
    per_table = {"gold.a": TableChecks(min_rows=2), "gold.b": TableChecks(not_null=["id"])}
    with DAG("d", schedule=None):
        group = build_checks("gold", ["gold.a", "gold.b"], TableChecks(), per_table, write_audit_publish=True)
    tasks = {t.task_id: t for t in group}
    assert sorted(tasks) == ["check_gold.gold__a", "check_gold.gold__b", "check_gold.publish"]
    assert tasks["check_gold.publish"].upstream_task_ids == {"check_gold.gold__a", "check_gold.gold__b"}
    assert [a.name for a in tasks["check_gold.publish"].outlets] == ["gold.a", "gold.b"]
    assert tasks["check_gold.gold__a"].outlets == []  # the audit publishes nothing
    context = {"run_id": "manual__1"}
    for table in ("gold.a", "gold.b"):
        audited = tasks[f"check_gold.{table.replace('.', '__')}"].execute(context)
        assert audited[table]["total_records"] == 2  # the branch was checked
    assert [len(hook.load_table(t).scan().to_arrow()) for t in ("gold.a", "gold.b")] == [1, 1]  # main unchanged
    published = tasks["check_gold.publish"].execute(context)
    assert {t: published[t]["published_from"] for t in published} == {"gold.a": branch, "gold.b": branch}
    assert [len(hook.load_table(t).scan().to_arrow()) for t in ("gold.a", "gold.b")] == [2, 2]
