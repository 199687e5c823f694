"""Write-audit-publish of the dbt Gold store step on real dbt-duckdb (issue 15).

The ``ledger`` fixture project replaces the ``day`` slice of gold.daily_totals. Through a DAG run, the store step
commits on the run's branch and the checks publish it; a planted bad row fails the dbt test, so main stays
unchanged, the branch is kept and the checks do not run. Two overlapping runs of different days both publish,
the second by replaying its slice replace onto the main the first one moved.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from asgard_provider.dbt.cosmos import wap_env
from asgard_provider.engines import wap
from asgard_provider.hooks.iceberg import IcebergHook

PROJECT = Path(__file__).resolve().parents[2] / "fixtures" / "dbt" / "ledger"
GOLD = "gold.daily_totals"


def _payments(*rows: tuple[str | None, int, str]) -> None:
    """Replace bronze.payments with ``(account, amount, paid_on)`` rows."""
    accounts, amounts, days = zip(*rows, strict=True)
    data = {
        "account": pa.array(accounts, pa.string()),
        "amount": pa.array(amounts, pa.int64()),
        "paid_on": pa.array([date.fromisoformat(d) for d in days], pa.date32()),
    }
    IcebergHook().write("bronze.payments", [pa.table(data)])


def _dbt_build(tmp_path: Path, day: str, run_id: str) -> Any:
    """``dbt build`` of the project for ``day`` in the environment a dbt task of run ``run_id`` gets."""
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    from asgard_provider.dbt.cosmos import _forget_duckdb_environment

    env = {key: value.replace("{{ run_id }}", run_id) for key, value in wap_env([GOLD]).items()}
    env |= {"ASGARD_HOME": os.environ["ASGARD_HOME"], "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    target = tmp_path / run_id
    args = ["build", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target-path", str(target)]
    args += ["--log-path", str(target / "logs"), "--vars", f"{{day: '{day}'}}"]
    _forget_duckdb_environment()  # each invocation reads this test's catalog, as each Cosmos task does
    with environ(env):
        return dbtRunner().invoke(args)


def _rows(snapshot_id: int | None = None) -> list[tuple[str, str | None, int]]:
    table = IcebergHook().load_table(GOLD)
    rows = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted(((str(r["day"]), r["account"], r["total"]) for r in rows), key=str)


def _seed_gold(day: str) -> int:
    """Publish one row of ``day`` to main of gold.daily_totals, as an earlier run would; return main's snapshot."""
    data = {
        "day": pa.array([date.fromisoformat(day)], pa.date32()),
        "account": ["z"],
        "total": pa.array([4], pa.int64()),
    }
    return int(IcebergHook().write(GOLD, [pa.table(data)])["snapshot_id"])


def test_overlapping_runs_of_two_days_both_publish(asgard_home: Path, tmp_path: Path) -> None:
    _seed_gold("2025-11-09")
    _payments(("a", 2, "2025-11-10"), ("a", 3, "2025-11-10"), ("b", 5, "2025-11-11"))
    # Two runs branch from the same main, each replacing its own day; nothing reaches main before a publish.
    assert _dbt_build(tmp_path, "2025-11-10", "day10").success
    assert _dbt_build(tmp_path, "2025-11-11", "day11").success
    assert _rows() == [("2025-11-09", "z", 4)]
    staged = wap.branch_snapshot(IcebergHook().load_table(GOLD), wap.run_branch("day10"))
    # The later day publishes first (fast-forward); the other's main moved, so its slice replace is replayed.
    (fast,) = wap.publish(IcebergHook().catalog, [GOLD], wap.run_branch("day11"))
    (replayed,) = wap.publish(IcebergHook().catalog, [GOLD], wap.run_branch("day10"))
    assert fast.moved and replayed.moved and replayed.snapshot_id != fast.snapshot_id
    assert _rows() == [("2025-11-09", "z", 4), ("2025-11-10", "a", 5), ("2025-11-11", "b", 5)]
    table = IcebergHook().load_table(GOLD)
    assert set(table.refs()) == {"main"}  # both branches dropped
    props = table.current_snapshot().summary.additional_properties
    assert props[wap.RUN_PROPERTY] == "day10" and props[wap.REPLAYED_PROPERTY] == str(staged)


def test_tables_not_named_for_the_branch_commit_to_main(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asgard_provider.dbt.duckdb_plugin import run_target

    assert run_target(GOLD) == (None, "", wap.BRANCH_RETENTION_DAYS)
    for key, value in wap_env([GOLD, "gold.other"], 4).items():
        monkeypatch.setenv(key, value.replace("{{ run_id }}", "manual__x"))
    assert run_target("gold.daily_totals") == ("run_manual__x", "manual__x", 4)
    assert run_target("gold.unlisted") == (None, "manual__x", 4)


DAG_FILE = """
from pathlib import Path

from asgard_provider.pipeline.config import PipelineConfig
from asgard_provider.pipeline.factory import build_dag

dag = build_dag(PipelineConfig.model_validate({config!r}), base_dir=Path({include!r}))
"""


def test_a_dag_run_publishes_gold_only_after_its_dbt_tests_and_checks(
    airflow_db: Path, asgard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from datetime import UTC, datetime

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from asgard_provider.dbt.cosmos import ensure_manifest

    include = tmp_path / "include"
    shutil.copytree(PROJECT, include / "dbt" / "ledger")
    ensure_manifest(include / "dbt" / "ledger")
    config = {
        "pipeline": "gold_wap",
        "schedule": None,
        "retries": 0,
        "dbt": {
            "project": "ledger",
            "vars": {"day": "{{ ds }}"},
            "produces": [GOLD],
            "checks": {GOLD: {"min_rows": 1, "branch_retention_days": 2}},
        },
    }
    path = tmp_path / "gold_wap.py"
    path.write_text(DAG_FILE.format(config=config, include=str(include)))
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    dag = bag.dags["gold_wap"]

    _payments(("a", 2, "2025-11-10"), ("a", 3, "2025-11-10"), (None, 1, "2025-11-11"))
    run = dag.test(logical_date=datetime(2025, 11, 10, tzinfo=UTC))
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "gold.daily_totals_model_build": "success",
        "check_gold": "success",
    }
    assert _rows() == [("2025-11-10", "a", 5)]
    published = IcebergHook().load_table(GOLD).current_snapshot()
    assert published.summary.additional_properties[wap.RUN_PROPERTY] == run.run_id

    bad = dag.test(logical_date=datetime(2025, 11, 11, tzinfo=UTC))  # the NULL account fails the dbt test
    assert {ti.task_id: ti.state for ti in bad.get_task_instances()} == {
        "gold.daily_totals_model_build": "failed",
        "check_gold": "upstream_failed",
    }
    table = IcebergHook().load_table(GOLD)
    assert table.current_snapshot().snapshot_id == published.snapshot_id
    branch = wap.run_branch(bad.run_id)  # the model was stored there, so its test, not the store, failed the task
    assert _rows(wap.branch_snapshot(table, branch)) == [("2025-11-10", "a", 5), ("2025-11-11", None, 1)]
    assert table.refs()[branch].max_ref_age_ms == wap.retention_ms(2)
