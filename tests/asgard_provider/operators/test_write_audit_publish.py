"""Write-audit-publish through a real DAG run: bad rows planted in a source fail the Silver checks, main of the
Silver table stays as the last good run left it, the downstream transform does not run, and the run's branch
holds the bad rows; a good run publishes (issue 15)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asgard_provider.engines import wap
from asgard_provider.hooks.iceberg import IcebergHook

pytestmark = pytest.mark.spark

CONFIG = {
    "pipeline": "wap_items",
    "schedule": None,
    "retries": 0,
    "ingest": [
        {"name": "ingest_items", "source": {"connection": "asgard_wap_db", "table": "items"}, "target": "bronze.items"}
    ],
    "transform": [
        {
            "name": "clean_items",
            "sql": "wap/clean.sql",
            "output_table": "silver.items",
            "checks": {"min_rows": 1, "not_null": ["name"], "branch_retention_days": 2},
        },
        {"name": "summarise_items", "sql": "wap/summary.sql", "output_table": "silver.items_summary"},
    ],
}

DAG_FILE = """
from pathlib import Path

from asgard_provider.pipeline.config import PipelineConfig
from asgard_provider.pipeline.factory import build_dag

dag = build_dag(PipelineConfig.model_validate({config!r}), base_dir=Path({include!r}))
"""


@pytest.fixture
def pipeline(airflow_db: Path, asgard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The wap_items DAG over a SQLite source of two good rows, serialized as the DAG processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    include = tmp_path / "include"
    (include / "sql" / "wap").mkdir(parents=True)
    (include / "sql" / "wap" / "clean.sql").write_text("SELECT id, name FROM iceberg.bronze.items\n")
    (include / "sql" / "wap" / "summary.sql").write_text("SELECT count(*) AS items FROM iceberg.silver.items\n")
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(include))
    db = asgard_home / "items.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b")])
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_WAP_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    path = tmp_path / "wap_items.py"
    path.write_text(DAG_FILE.format(config=CONFIG, include=str(include)))
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()  # a fresh metadata DB has no bundle row for the DAG to reference
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags["wap_items"], db


def _run(dag: Any, day: int) -> tuple[str, dict[str, str]]:
    run = dag.test(logical_date=datetime(2025, 11, day, tzinfo=UTC))
    return run.run_id, {ti.task_id: ti.state for ti in run.get_task_instances()}


def _rows(table: Any, snapshot_id: int | None = None) -> list[dict[str, Any]]:
    return sorted(table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist(), key=lambda r: r[next(iter(r))])


def test_bad_rows_fail_the_audit_keep_main_and_stop_downstream(pipeline: tuple[Any, Path]) -> None:
    dag, db = pipeline
    hook = IcebergHook()
    good_run, states = _run(dag, 10)
    assert set(states.values()) == {"success"}, states
    silver = hook.load_table("silver.items")
    assert _rows(silver) == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert wap.run_branch(good_run) not in silver.refs()  # published, branch dropped
    assert good_run in {e.run_id for e in wap.history(silver) if e.on_main}  # asgard tables history names the run
    summary = hook.load_table("silver.items_summary")
    assert _rows(summary) == [{"items": 2}]
    # the transform without checks wrote on the run's branch too, and published it at the end of its task
    assert summary.refs().keys() == {"main"}
    assert summary.current_snapshot().summary.additional_properties[wap.RUN_PROPERTY] == good_run
    published = silver.current_snapshot().snapshot_id

    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO items VALUES (3, NULL)")  # the planted bad row
    bad_run, states = _run(dag, 11)
    assert states == {
        "ingest_items": "success",
        "clean_items": "success",
        "check_clean_items": "failed",
        "summarise_items": "upstream_failed",
    }
    silver = hook.load_table("silver.items")
    assert silver.current_snapshot().snapshot_id == published  # main unchanged
    assert _rows(silver) == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    branch = wap.run_branch(bad_run)
    assert _rows(silver, wap.branch_snapshot(silver, branch)) == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
        {"id": 3, "name": None},
    ]
    assert silver.refs()[branch].max_ref_age_ms == wap.retention_ms(2)  # kept for inspection, from config
    assert _rows(hook.load_table("silver.items_summary")) == [{"items": 2}]  # downstream never saw the bad rows
