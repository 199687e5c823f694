"""Promotion against the current champion on the same holdout, run lineage, plots, and a second script."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.settings import include_dir

from ..conftest import run_context, train_operator

MODEL = "customer_churn_predictor"


@pytest.fixture(scope="module")
def champion(ml_home: Path) -> dict[str, Any]:
    return train_operator().execute(run_context())


def _holdout(run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(MLflowHook().client().download_artifacts(run_id, "asgard/holdout.parquet", tmp))


def _auc_on(holdout: pd.DataFrame, version: str) -> float:
    """The holdout metric recomputed here, independently of the operator."""
    model = MLflowHook().load_sklearn_model(MODEL, version)
    columns = list(model.feature_names_in_)
    proba = model.predict_proba(holdout[columns].astype("float64"))[:, list(model.classes_).index(1)]
    return float(roc_auc_score(holdout["churned"], proba))


def _champion_version() -> str:
    return str(MLflowHook().client().get_model_version_by_alias(MODEL, "champion").version)


def test_run_records_lineage_plots_and_datasets(ml_home: Path, champion: dict[str, Any]) -> None:
    client = MLflowHook().client()
    run = client.get_run(champion["run_id"])
    tags = run.data.tags
    assert tags["airflow.dag_id"] == "customer_churn"
    assert tags["airflow.run_id"] == "scheduled__test"
    assert tags["airflow.logical_date"] == "2025-11-11T06:00:00+00:00"
    snapshot = IcebergHook().load_table("gold.customer_metrics").current_snapshot().snapshot_id
    assert tags["asgard.label_table_snapshot_id"] == str(snapshot)
    assert json.loads(tags["asgard.input_snapshots"]) == {"gold.customer_metrics": snapshot}
    assert tags["asgard.feature_views"] == "customer_churn_features"
    script = include_dir() / "training" / "churn_training.py"
    assert tags["asgard.script_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(script.parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert tags["asgard.git_sha"] == tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert tags["asgard.git_dirty"] in ("true", "false")
    assert tags["asgard.promotion_reason"].startswith("passed every gate; no champion yet")

    plots = {a.path for a in client.list_artifacts(champion["run_id"], "plots")}
    assert plots == {"plots/roc_curve.png", "plots/confusion_matrix.png", "plots/feature_importance.png"}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(client.download_artifacts(champion["run_id"], "plots/roc_curve.png", tmp))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        profile = json.loads(
            Path(client.download_artifacts(champion["run_id"], "asgard/reference_profile.json", tmp)).read_text()
        )
    assert profile["label_snapshot_id"] == snapshot
    assert len(profile["features"]) == 8

    holdout = _holdout(champion["run_id"])
    assert len(holdout) == int(run.data.params["test_rows"]) == champion["holdout"]["rows"]
    # The operator's holdout metric is the script's own on the same rows.
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(run.data.metrics["roc_auc"])
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(_auc_on(holdout, champion["model_version"]))


def test_model_worse_than_the_champion_on_the_same_holdout_stays_challenger(
    ml_home: Path, champion: dict[str, Any]
) -> None:
    weak = train_operator(hyperparameters={"n_estimators": 1, "max_depth": 1}, min_metrics={"roc_auc": 0.5}).execute(
        run_context(run_id="scheduled__weak")
    )
    assert weak["gate_failures"] != [] and weak["promoted"] is False
    assert weak["alias"] == "challenger"
    assert _champion_version() == champion["model_version"]
    assert weak["metrics"]["roc_auc"] >= 0.5, "the minimum-metric gate alone would have promoted it"

    holdout = _holdout(weak["run_id"])
    new_auc, old_auc = _auc_on(holdout, weak["model_version"]), _auc_on(holdout, champion["model_version"])
    assert new_auc < old_auc
    run = MLflowHook().client().get_run(weak["run_id"])
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(new_auc)
    assert run.data.metrics["champion_holdout_roc_auc"] == pytest.approx(old_auc)
    assert run.data.tags["asgard.compared_with_version"] == champion["model_version"]
    reason = run.data.tags["asgard.promotion_reason"]
    expected = f"holdout roc_auc {new_auc:.4f} is worse than champion version {champion['model_version']}'s"
    assert reason.startswith(expected) and reason.endswith("(higher is better)")
    assert reason == weak["promotion_reason"] == "; ".join(weak["gate_failures"])
    version = MLflowHook().client().get_model_version(MODEL, weak["model_version"])
    assert version.tags["asgard.promoted"] == "false" and version.tags["asgard.promotion_reason"] == reason


def test_gradient_boosting_script_runs_through_the_same_operator(ml_home: Path, champion: dict[str, Any]) -> None:
    before = _champion_version()
    result = train_operator(
        task_id="train_gbm", script="churn_training_gbm.py", hyperparameters={"n_estimators": 60}
    ).execute(run_context(run_id="scheduled__gbm"))
    model = MLflowHook().load_sklearn_model(MODEL, result["model_version"])
    assert type(model).__name__ == "GradientBoostingClassifier"
    assert model.n_estimators == 60
    assert result["metrics"]["roc_auc"] >= 0.75
    holdout = _holdout(result["run_id"])
    new_auc, old_auc = _auc_on(holdout, result["model_version"]), _auc_on(holdout, before)
    # Whichever wins, the decision follows the two numbers on the same holdout.
    assert result["promoted"] is (new_auc >= old_auc)
    assert _champion_version() == (result["model_version"] if new_auc >= old_auc else before)
    assert result["holdout"]["new"] == pytest.approx(new_auc)
    assert result["holdout"]["champion"] == pytest.approx(old_auc)
    client = MLflowHook().client()
    assert {a.path for a in client.list_artifacts(result["run_id"], "plots")} >= {"plots/feature_importance.png"}
    assert client.get_run(result["run_id"]).data.tags["mlflow.source.name"] == "churn_training_gbm.py"


def test_without_a_logged_holdout_a_new_model_cannot_replace_the_champion(
    ml_home: Path, champion: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "include" / "training"
    folder.mkdir(parents=True)
    (folder / "no_holdout.py").write_text(
        "import mlflow, mlflow.sklearn\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from asgard_provider.training import TrainingContext\n"
        "ctx = TrainingContext.from_env()\n"
        "frame = ctx.training_frame()\n"
        "model = LogisticRegression(max_iter=500).fit(frame[ctx.feature_columns], frame[ctx.label_column])\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('roc_auc', 0.99)\n"
        "    requirements = mlflow.sklearn.get_default_pip_requirements(include_skops=True)\n"
        "    mlflow.sklearn.log_model(model, name=ctx.model_artifact_path, pip_requirements=requirements)\n"
    )
    before = _champion_version()
    result = train_operator(task_id="train_lr", script="no_holdout.py", include_dir=str(tmp_path / "include")).execute(
        run_context(run_id="scheduled__lr")
    )
    assert result["promoted"] is False
    assert result["gate_failures"] == [
        f"the run logged no holdout (asgard/holdout.parquet), so it cannot be compared with champion version {before}"
    ]
    assert _champion_version() == before
