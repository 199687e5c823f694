from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from asgard_provider.engines import wap
from asgard_provider.exceptions import TrainingError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.operators.mlflow import resolve_script

from ..conftest import run_context, train_operator

MODEL = "customer_churn_predictor"


@pytest.fixture(scope="module")
def champion(ml_home: Path) -> dict[str, Any]:
    """The real churn_training.py trained once for the module."""
    return train_operator().execute(run_context())


def _versions() -> list[str]:
    return sorted(str(v.version) for v in MLflowHook().client().search_model_versions(f"name = '{MODEL}'"))


def _champion_version() -> str:
    return str(MLflowHook().client().get_model_version_by_alias(MODEL, "champion").version)


def _scripts(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "include" / "training"
    folder.mkdir(parents=True)
    (folder / name).write_text(body)
    return tmp_path / "include"


def test_training_registers_a_champion_with_metrics(ml_home: Path, champion: dict[str, Any]) -> None:
    assert champion["promoted"] is True
    assert champion["gate_failures"] == []
    assert champion["model_version"] == "1"
    assert _champion_version() == "1"
    metrics = champion["metrics"]
    for name in ("accuracy", "precision", "recall", "f1_score", "roc_auc", "baseline_accuracy"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["roc_auc"] >= 0.75
    assert metrics["accuracy"] > metrics["baseline_accuracy"]

    client = MLflowHook().client()
    run = client.get_run(champion["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "40"
    # Only the labelled PRIOR snapshot (2,000 rows); about 20 % of the customers held out by hash.
    train_rows, test_rows = int(run.data.params["train_rows"]), int(run.data.params["test_rows"])
    assert train_rows + test_rows == 2000
    assert 300 <= test_rows <= 500
    assert run.data.tags["airflow.dag_id"] == "customer_churn"
    assert run.data.tags["airflow.run_id"] == "scheduled__test"
    assert run.data.tags["airflow.task_id"] == "train_model"
    assert run.data.tags["asgard.model_version"] == "1"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "customer_churn_prediction"
    assert experiment.artifact_location.startswith((ml_home / "mlflow" / "artifacts").as_uri())
    assert [a.path for a in client.list_artifacts(run.info.run_id, "code")] == ["code/churn_training.py"]

    version = client.get_model_version(MODEL, "1")
    assert version.run_id == champion["run_id"]
    assert version.tags["asgard.promoted"] == "true"
    model = MLflowHook().load_sklearn_model(MODEL, "1")
    assert list(model.feature_names_in_)[:2] == ["total_purchases", "customer_lifetime_value"]


def test_failing_script_registers_nothing_and_keeps_the_champion(
    ml_home: Path, champion: dict[str, Any], tmp_path: Path
) -> None:
    include = _scripts(tmp_path, "broken.py", "print('loading data')\nraise RuntimeError('label column is empty')\n")
    before = _versions()
    op = train_operator(task_id="train_broken", script="broken.py", include_dir=str(include))
    with pytest.raises(TrainingError) as err:
        op.execute(run_context(run_id="scheduled__broken"))
    message = str(err.value)
    assert "broken.py exited with code 1" in message
    assert "RuntimeError: label column is empty" in message and "loading data" in message
    assert _versions() == before
    assert _champion_version() == champion["model_version"]
    runs = (
        MLflowHook()
        .client()
        .search_runs(
            [MLflowHook().ensure_experiment("customer_churn_prediction")],
            filter_string="tags.`airflow.run_id` = 'scheduled__broken'",
        )
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_script_past_its_timeout_is_killed_and_its_run_failed(
    ml_home: Path, champion: dict[str, Any], tmp_path: Path
) -> None:
    include = _scripts(tmp_path, "slow.py", "import time\nprint('starting', flush=True)\ntime.sleep(600)\n")
    before = _versions()
    op = train_operator(task_id="train_slow", script="slow.py", include_dir=str(include), timeout=3)
    with pytest.raises(TrainingError, match=r"slow\.py did not finish within 3s"):
        op.execute(run_context(run_id="scheduled__slow"))
    assert _versions() == before
    experiment = MLflowHook().ensure_experiment("customer_churn_prediction")
    runs = MLflowHook().client().search_runs([experiment], filter_string="tags.`airflow.run_id` = 'scheduled__slow'")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_script_that_logs_no_model_fails(ml_home: Path, champion: dict[str, Any], tmp_path: Path) -> None:
    body = "import mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('roc_auc', 0.99)\n"
    include = _scripts(tmp_path, "no_model.py", body)
    before = _versions()
    with pytest.raises(TrainingError, match="logged no model named 'model'"):
        train_operator(script="no_model.py", include_dir=str(include)).execute(run_context())
    assert _versions() == before


def test_gate_not_met_registers_a_challenger_only(ml_home: Path, champion: dict[str, Any]) -> None:
    result = train_operator(
        hyperparameters={"n_estimators": 5, "max_depth": 2}, min_metrics={"roc_auc": 0.999, "lift": 2.0}
    ).execute(run_context())
    assert result["promoted"] is False
    assert any(f.startswith("roc_auc = ") and "below 0.999" in f for f in result["gate_failures"])
    assert "lift was not logged (gate: >= 2.0)" in result["gate_failures"]
    client = MLflowHook().client()
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == result["model_version"]
    assert _champion_version() == champion["model_version"]
    assert client.get_model_version(MODEL, result["model_version"]).tags["asgard.promoted"] == "false"


@pytest.mark.parametrize("script", ["../pipelines/customer_churn.yaml", "/etc/passwd", "sub/../../x.py"])
def test_scripts_outside_include_training_are_rejected(script: str, asgard_home: Path) -> None:
    with pytest.raises(TrainingError, match=r"leaves include/training/"):
        train_operator(script=script).execute(run_context())
    assert not (asgard_home / "mlflow").exists(), "rejected before any MLflow call"


def test_missing_script_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"training/nope\.py does not exist"):
        resolve_script("nope.py", tmp_path)


#: Runs the real churn script after recording what the child process sees.
ENV_PROBE = """
import json, os, runpy, sys
import asgard_provider.training  # must not import Airflow (whose settings are poisoned in the parent)
assert not [m for m in sys.modules if m == "airflow" or m.startswith("airflow.")], "asgard_provider imported Airflow"
with open(os.path.join(os.environ["ASGARD_HOME"], "child_env.json"), "w") as out:
    json.dump(dict(os.environ), out)
runpy.run_path({script!r}, run_name="__main__")
"""


def test_script_gets_a_minimal_environment_and_trains_without_airflow(
    ml_home: Path, champion: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a scheduler the task process carries Airflow's poisoned DB setting and every connection."""
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE_DB", '{"conn_type": "postgres", "password": "pw-0f-source"}')
    monkeypatch.setenv("WORKER_ONLY_SETTING", "not for scripts")
    real = Path(__file__).resolve().parents[3] / "include" / "training" / "churn_training.py"
    include = _scripts(tmp_path, "probe.py", ENV_PROBE.format(script=str(real)))

    result = train_operator(script="probe.py", include_dir=str(include)).execute(run_context(run_id="scheduled__env"))

    assert result["metrics"]["roc_auc"] >= 0.75
    seen = json.loads((ml_home / "child_env.json").read_text())
    assert not [k for k in seen if k.startswith("AIRFLOW")], sorted(seen)
    assert "WORKER_ONLY_SETTING" not in seen
    assert "pw-0f-source" not in json.dumps(seen)
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "ASGARD_TRAINING_CONTEXT", "ASGARD_HOME", "PATH"} <= set(seen)
    assert seen["MLFLOW_RUN_ID"] == result["run_id"]


def test_as_of_tag_trains_the_real_script_on_the_tagged_release(ml_home: Path, champion: dict[str, Any]) -> None:
    """Rows appended after the tag (new labelled customers) stay out of a run trained ``as_of_tag``."""
    hook = IcebergHook()
    table = hook.load_table("gold.customer_metrics")
    tagged = wap.tag(table, "gold.customer_metrics", "release_1")
    labelled = table.scan(row_filter="churned IS NOT NULL", snapshot_id=tagged).to_arrow()
    newer = labelled.set_column(0, "customer_id", pc.add(labelled["customer_id"], 10**6))
    assert labelled.schema.names[0] == "customer_id"
    hook.write("gold.customer_metrics", [newer], mode="append")

    result = train_operator(as_of_tag="release_1", registered_model_name="churn_tagged").execute(run_context())

    run = MLflowHook().client().get_run(result["run_id"])
    assert int(run.data.params["train_rows"]) + int(run.data.params["test_rows"]) == labelled.num_rows == 2000
    assert run.data.tags["asgard.as_of_tag"] == "release_1"
    assert json.loads(run.data.tags["asgard.input_snapshots"]) == {"gold.customer_metrics": tagged}
