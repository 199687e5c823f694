from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _dagbag(dags: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dags), safe_mode=False)


def test_shipped_dags_import_without_errors() -> None:
    bag = _dagbag(REPO / "dags")
    assert bag.import_errors == {}
    pipelines = {"customer_churn", "customer_value", "fraud_detection", "patient_readmission"}
    pipelines |= {"retail_catalog", "demand_forecasting"}
    assert set(bag.dags) == pipelines | {"asgard_maintenance"}
    # One DAG per pipeline YAML, plus the catalog's maintenance DAG.
    assert pipelines == {p.stem for p in (REPO / "include" / "pipelines").glob("*.yaml")}


def test_churn_dag_has_every_stage_in_order() -> None:
    dag = _dagbag(REPO / "dags").dags["customer_churn"]
    ids = set(dag.task_ids)
    for task_id in (
        "ingest_customers",
        "ingest_transactions",
        "ingest_support_tickets",
        "clean_customers",
        "clean_transactions",
        "clean_support_tickets",
        "register_features",
        "materialize_features",
        "train_model",
        "batch_inference",
    ):
        assert task_id in ids
    assert any(t.startswith("gold.") for t in ids), "the dbt models are rendered as the 'gold' task group"
    clean = dag.get_task("clean_transactions")
    assert clean.upstream_task_ids == {"ingest_transactions"}
    assert dag.get_task("batch_inference").upstream_task_ids == {"train_model"}
    assert dag.get_task("train_model").upstream_task_ids == {"register_features"}
    # the online store is loaded beside training: the batch path never waits for it
    assert dag.get_task("materialize_features").upstream_task_ids == {"register_features"}
    assert dag.get_task("materialize_features").downstream_task_ids == set()


def test_a_broken_config_fails_only_its_own_dag_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include, ignore=shutil.ignore_patterns("target", "logs"))
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "customer_churn.py", dags / "customer_churn.py")
    (include / "pipelines" / "broken_one.yaml").write_text("pipeline: broken_one\nschedule: 'not a cron'\n")
    shutil.copy(REPO / "dags" / "customer_churn.py", dags / "broken_one.py")
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(include))
    bag = _dagbag(dags)
    assert set(bag.import_errors) == {str(dags / "broken_one.py")}
    error = bag.import_errors[str(dags / "broken_one.py")]
    assert "broken_one.yaml" in error and "schedule" in error
    assert "customer_churn" in bag.dags


def test_plugins_folder_does_not_shadow_libraries(tmp_path: Path) -> None:
    """Airflow imports every .py under plugins/ as a top-level module unless .airflowignore excludes it."""
    import os
    import subprocess
    import sys

    code = (
        "from airflow import plugins_manager\n"
        "plugins_manager.get_plugin_info()\n"
        "import cosmos, feast, mlflow\n"
        "print(cosmos.__file__, feast.__file__, mlflow.__file__)\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "site-packages" in out.stdout and "asgard_provider" not in out.stdout, out.stdout


def test_a_changed_dbt_project_is_an_import_error_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_manifests: Path
) -> None:
    """The DAG processor never runs dbt: a project changed since `asgard dbt compile` fails fast, by name."""
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include, ignore=shutil.ignore_patterns("target", "logs"))
    model = include / "dbt" / "customer_churn" / "models" / "gold" / "customer_metrics.sql"
    model.write_text(model.read_text() + "\n-- edited after the last compile\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("customer_churn.py", "customer_value.py"):
        shutil.copy(REPO / "dags" / name, dags / name)
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(include))
    built = set(dbt_manifests.iterdir())

    bag = _dagbag(dags)

    assert set(bag.import_errors) == {str(dags / "customer_churn.py")}
    error = bag.import_errors[str(dags / "customer_churn.py")]
    assert "customer_churn (target duckdb)" in error and "Run `asgard dbt compile`" in error
    assert "customer_value" in bag.dags
    assert set(dbt_manifests.iterdir()) == built, "parsing a DAG file ran dbt"


def test_dag_files_name_the_factory_the_dag_processor_pre_imports() -> None:
    """Airflow's DAG processor pre-imports a file's ``airflow.*`` imports in its parent, then forks the parse."""
    from airflow.utils.file import iter_airflow_imports

    for path in sorted((REPO / "dags").glob("*.py")):
        assert "airflow.providers.asgard" in set(iter_airflow_imports(str(path))), path.name


PROCESSOR = """
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.dag_processing.processor import _pre_import_airflow_modules
from airflow.utils.log.logging_mixin import LoggingMixin

path = sys.argv[1]
_pre_import_airflow_modules(path, LoggingMixin().log)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = set(sys.modules)
    bag = DagBag(dag_folder=path, safe_mode=False)
    new = sorted(m for m in set(sys.modules) - before if m.startswith(("asgard_provider", "cosmos", "pydantic")))
    os.write(write, json.dumps({"dags": sorted(bag.dags), "errors": list(bag.import_errors), "new": new}).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    print("REPORT " + pipe.read())
os.waitpid(pid, 0)
"""


def test_processor_child_parses_without_importing_the_provider_again() -> None:
    """In a fresh interpreter, as the DAG processor does: pre-import, fork; the child imports no provider module."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k.startswith(("ASGARD_", "AIRFLOW")) or k in ("PATH", "HOME")}
    proc = subprocess.run(
        [sys.executable, "-c", PROCESSOR, str(REPO / "dags" / "customer_churn.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report["dags"] == ["customer_churn"] and report["errors"] == []
    assert report["new"] == [], "modules the DAG processor's child imported again"
