"""The Spark SQL engine without Airflow: the driver of a SparkApplication runs a transform in a process where
``import airflow`` fails, as in the Spark image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.catalog import CatalogSettings
from asgard_provider.child_env import child_env
from asgard_provider.engines import wap
from asgard_provider.engines.spark_sql import TransformSpec
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook

pytestmark = pytest.mark.spark

# Runs in the child: refuse every airflow import, then drive the engine through the Spark driver's entry point.
CHILD = r"""
import json, sys

class RefuseAirflow:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"{name} is not installed in the Spark image")
        return None

sys.meta_path.insert(0, RefuseAirflow())
from pyspark.sql import SparkSession
from asgard_provider import pod_entry, spark_driver  # noqa: F401 - both entry points import without Airflow

conf, job = json.loads(sys.argv[1]), json.loads(sys.argv[2])
builder = SparkSession.builder
for key, value in conf.items():
    builder = builder.config(key, value)
result = spark_driver.run(job, builder.getOrCreate())
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print("RESULT " + json.dumps({"result": result, "airflow_modules": loaded}))
"""

JOB = {
    "task_id": "clean",
    "sql": (
        "SELECT id, upper(name) AS name, "
        "CASE WHEN id < 0 THEN 'negative_id' END AS _rejected_reason FROM iceberg.bronze.items"
    ),
    "sql_source": "clean.sql",
    "output_table": "silver.items",
    "mode": "overwrite",
    "partition_by": [],
    "merge_keys": [],
    "quarantine_table": None,
    "withheld_conf": [],
    "branch": "run_manual__1",  # what SparkIcebergKubernetesOperator sends: the run's branch and run id
    "snapshot_properties": {"asgard.run-id": "manual__1"},
}


def test_spark_driver_runs_a_transform_where_airflow_cannot_be_imported(asgard_home: Path) -> None:
    iceberg = IcebergHook()
    iceberg.write("bronze.items", [pa.table({"id": [1, 2, -3], "name": ["a", "b", "c"]})])
    settings = CatalogSettings.embedded()
    hook = SparkHook()
    conf = {**hook.session_conf(settings), **hook.catalog_conf(settings)}
    env = child_env({"ASGARD_HOME": str(asgard_home), "PYTHONPATH": str(Path(__file__).parents[3] / "plugins")})
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(conf), json.dumps(JOB)],
        capture_output=True,
        text=True,
        env=env,
        cwd=asgard_home,
        check=False,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    outcome = json.loads(lines[-1].removeprefix("RESULT "))
    assert outcome["airflow_modules"] == []
    assert outcome["result"] == {
        "output_table": "silver.items",
        "rows_written": 2,
        "rows_quarantined": 1,
        "quarantine_table": "silver.items_quarantine",
        "input_tables": ["bronze.items"],
    }
    output = iceberg.load_table("silver.items")
    assert output.scan().to_arrow().num_rows == 0  # written on the run's branch: main has the empty new table
    on_branch = wap.branch_snapshot(output, "run_manual__1")
    assert output.snapshot_by_id(on_branch).summary.additional_properties[wap.RUN_PROPERTY] == "manual__1"
    wap.publish_run(iceberg.catalog, ["silver.items", "silver.items_quarantine"], "manual__1")  # as the task does
    rows = iceberg.load_table("silver.items").scan().to_arrow().sort_by("id").to_pylist()
    assert rows == [{"id": 1, "name": "A"}, {"id": 2, "name": "B"}]
    rejected = iceberg.load_table("silver.items_quarantine").scan().to_arrow().to_pylist()
    assert rejected == [{"id": -3, "name": "C", "_rejected_reason": "negative_id"}]
    assert not any(k.startswith("AIRFLOW") for k in env)  # no Airflow settings or connections reached the driver


def test_spec_problems_name_mode_and_keys() -> None:
    assert TransformSpec("SELECT 1", "silver.t").problems() == []
    assert TransformSpec("SELECT 1", "silver.t", mode="upsert").problems() == [
        "mode 'upsert' is not one of overwrite, append, merge"
    ]
    assert TransformSpec("SELECT 1", "silver.t", mode="merge").problems() == [
        "mode 'merge' needs merge_keys (the columns identifying a row)"
    ]
    assert TransformSpec("SELECT 1", "silver.t", mode="merge", merge_keys=["id; DROP"]).problems() == [
        "merge_keys ['id; DROP'] are not plain column names"
    ]
