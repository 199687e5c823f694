"""Regression and multiclass training end to end on real MLflow: fit, log, gate both ways, compare, register."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import f1_score, mean_absolute_error

from asgard_provider.exceptions import ModelTaskError
from asgard_provider.hooks.mlflow import MLflowHook

from ..conftest import run_context, task_train_operator

REGRESSION = "regression"
MULTICLASS = "multiclass_classification"


def _versions(model: str) -> list[str]:
    return sorted(str(v.version) for v in MLflowHook().client().search_model_versions(f"name = '{model}'"))


def _alias(model: str, alias: str = "champion") -> str:
    return str(MLflowHook().client().get_model_version_by_alias(model, alias).version)


def _holdout(run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(MLflowHook().client().download_artifacts(run_id, "asgard/holdout.parquet", tmp))


@pytest.fixture(scope="module")
def regression_champion(task_home: Path) -> dict[str, Any]:
    op = task_train_operator(REGRESSION, "regression_training.py", "spend_next", task_home, max_metrics={"mae": 1000.0})
    return op.execute(run_context())


@pytest.fixture(scope="module")
def multiclass_champion(task_home: Path) -> dict[str, Any]:
    return task_train_operator(MULTICLASS, "multiclass_training.py", "segment", task_home).execute(run_context())


def test_regression_model_is_evaluated_with_regression_metrics(regression_champion: dict[str, Any]) -> None:
    result = regression_champion
    assert result["promoted"] is True and result["model_version"] == "1"
    assert result["holdout"]["metric"] == "rmse"
    metrics = MLflowHook().run_metrics(result["run_id"])
    assert {"holdout_mae", "holdout_rmse", "holdout_wape", "holdout_r2"} <= set(metrics)
    assert "holdout_roc_auc" not in metrics
    assert metrics["holdout_r2"] > 0.9, metrics
    # Recomputed here from the holdout artifact and the registered model.
    holdout = _holdout(result["run_id"])
    model = MLflowHook().load_sklearn_model("asgard_regression_model", "1")
    predicted = model.predict(holdout[list(model.feature_names_in_)].astype("float64"))
    assert metrics["holdout_mae"] == pytest.approx(mean_absolute_error(holdout["spend_next"], predicted))
    plots = {a.path for a in MLflowHook().client().list_artifacts(result["run_id"], "plots")}
    assert {"plots/predicted_vs_actual.png", "plots/residuals.png", "plots/feature_importance.png"} <= plots
    assert "plots/roc_curve.png" not in plots


def test_max_metrics_is_a_ceiling(regression_champion: dict[str, Any], task_home: Path) -> None:
    assert regression_champion["gate_failures"] == [], "mae below the 1000.0 ceiling passes"
    tight = task_train_operator(
        REGRESSION, "regression_training.py", "spend_next", task_home, max_metrics={"mae": 0.01}
    ).execute(run_context())
    assert tight["promoted"] is False
    assert [f for f in tight["gate_failures"] if f.startswith("mae = ") and f.endswith("is above 0.01")]
    assert _alias("asgard_regression_model", "challenger") == tight["model_version"]
    assert _alias("asgard_regression_model") == regression_champion["model_version"]


def test_worse_regressor_stays_challenger_lower_error_wins(
    regression_champion: dict[str, Any], task_home: Path
) -> None:
    champion = _alias("asgard_regression_model")
    worse = task_train_operator(
        REGRESSION, "regression_training.py", "spend_next", task_home, hyperparameters={"alpha": 1e7}
    ).execute(run_context())
    assert worse["promoted"] is False
    assert worse["holdout"]["new"] > worse["holdout"]["champion"], "a higher rmse is worse"
    assert "is worse than champion version" in worse["promotion_reason"]
    assert "(lower is better)" in worse["promotion_reason"]
    assert _alias("asgard_regression_model") == champion


def test_classifier_for_a_regression_task_fails_before_registration(
    regression_champion: dict[str, Any], task_home: Path
) -> None:
    before = _versions("asgard_regression_model")
    op = task_train_operator(
        REGRESSION, "regression_training.py", "spend_next", task_home, hyperparameters={"model": "classifier"}
    )
    with pytest.raises(ModelTaskError) as err:
        op.execute(run_context(run_id="scheduled__wrong_model"))
    message = str(err.value)
    assert "LogisticRegression is a classifier, but train.task is 'regression'" in message
    assert "include/pipelines/customer_churn.yaml" in message
    assert _versions("asgard_regression_model") == before
    experiment = MLflowHook().ensure_experiment("asgard_regression")
    runs = MLflowHook().client().search_runs([experiment], "tags.`airflow.run_id` = 'scheduled__wrong_model'")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_regressor_for_a_binary_task_names_the_key(regression_champion: dict[str, Any], task_home: Path) -> None:
    op = task_train_operator(
        "binary_classification",
        "regression_training.py",
        "spend_next",
        task_home,
        registered_model_name="asgard_wrong_task",
    )
    with pytest.raises(ModelTaskError, match=r"Ridge has no predict_proba, but train\.task is 'binary_classification'"):
        op.execute(run_context())
    assert _versions("asgard_wrong_task") == []


def test_multiclass_model_is_evaluated_with_class_metrics(multiclass_champion: dict[str, Any]) -> None:
    result = multiclass_champion
    assert result["promoted"] is True
    assert result["holdout"]["metric"] == "macro_f1"
    metrics = MLflowHook().run_metrics(result["run_id"])
    assert {"holdout_accuracy", "holdout_macro_f1", "holdout_log_loss"} <= set(metrics)
    assert metrics["holdout_accuracy"] > 0.8, metrics
    holdout = _holdout(result["run_id"])
    model = MLflowHook().load_sklearn_model("asgard_multiclass_classification_model", result["model_version"])
    assert sorted(model.classes_) == ["casual", "lapsing", "loyal"]
    predicted = model.predict(holdout[list(model.feature_names_in_)].astype("float64"))
    expected = f1_score(holdout["segment"], predicted, average="macro")
    assert metrics["holdout_macro_f1"] == pytest.approx(expected)
    plots = {a.path for a in MLflowHook().client().list_artifacts(result["run_id"], "plots")}
    assert "plots/confusion_matrix.png" in plots and "plots/roc_curve.png" not in plots


def test_multiclass_compares_on_log_loss_when_asked(multiclass_champion: dict[str, Any], task_home: Path) -> None:
    weak = task_train_operator(
        MULTICLASS,
        "multiclass_training.py",
        "segment",
        task_home,
        hyperparameters={"C": 1e-5},
        compare_metric="log_loss",
    ).execute(run_context())
    assert weak["holdout"]["metric"] == "log_loss"
    assert weak["holdout"]["new"] > weak["holdout"]["champion"]
    assert weak["promoted"] is False and "(lower is better)" in weak["promotion_reason"]


def _score(task: str, model: str, **overrides: Any) -> dict[str, Any]:
    from asgard_provider.operators.inference import BatchInferenceOperator

    from ..conftest import AS_OF, FEATURE_REFS

    kwargs: dict[str, Any] = {
        "task_id": f"score_{task}",
        "model_name": model,
        "feature_refs": FEATURE_REFS,
        "entity_table": "gold.customer_metrics",
        "entity_key": "customer_id",
        "timestamp_field": "feature_timestamp",
        "as_of": AS_OF.isoformat(),
        "output_table": f"gold.{task}_predictions",
        "task": task,
        **overrides,
    }
    return BatchInferenceOperator(**kwargs).execute(run_context())


def _snapshot() -> pd.DataFrame:
    from asgard_provider.hooks.iceberg import IcebergHook

    from ..conftest import AS_OF, snapshot_time

    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    return gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].sort_values("customer_id")


def _table(name: str) -> pd.DataFrame:
    from asgard_provider.hooks.iceberg import IcebergHook

    return IcebergHook().load_table(name).scan().to_pandas()


def test_regression_champion_scores_into_the_configured_column(regression_champion: dict[str, Any]) -> None:
    result = _score(REGRESSION, "asgard_regression_model", prediction_column="spend_next_30d")
    assert result["rows"] == 2000
    written = _table("gold.regression_predictions").sort_values("customer_id")
    assert list(written.columns[:2]) == ["customer_id", "spend_next_30d"]
    assert "risk_level" not in written.columns and "prediction" not in written.columns
    model = MLflowHook().load_sklearn_model("asgard_regression_model", result["model_version"])
    snapshot = _snapshot()
    expected = model.predict(snapshot[list(model.feature_names_in_)].astype("float64"))
    assert written["spend_next_30d"].to_numpy() == pytest.approx(expected)
    monitoring = _table("gold.regression_predictions_monitoring").set_index("name")
    row = monitoring.loc["spend_next_30d"]
    assert row["kind"] == "prediction" and row["mean"] == pytest.approx(expected.mean())
    assert row["psi"] < 0.2 and pd.isna(row["share_high"])


def test_multiclass_champion_scores_a_class_and_its_probabilities(multiclass_champion: dict[str, Any]) -> None:
    result = _score(MULTICLASS, "asgard_multiclass_classification_model", class_column="segment")
    written = _table("gold.multiclass_classification_predictions").sort_values("customer_id")
    assert list(written.columns[:5]) == [
        "customer_id",
        "segment",
        "probability_casual",
        "probability_lapsing",
        "probability_loyal",
    ]
    model = MLflowHook().load_sklearn_model("asgard_multiclass_classification_model", result["model_version"])
    snapshot = _snapshot()
    assert list(written["segment"]) == list(model.predict(snapshot[list(model.feature_names_in_)].astype("float64")))
    monitoring = _table("gold.multiclass_classification_predictions_monitoring")
    predicted = sorted(monitoring[monitoring["kind"] == "prediction"]["name"])
    assert predicted == ["probability_casual", "probability_lapsing", "probability_loyal"]
    assert monitoring[monitoring["kind"] == "prediction"]["psi"].notna().all()
