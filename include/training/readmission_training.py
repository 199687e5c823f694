"""Train the readmission model: is a discharged patient readmitted within 30 days.

A random forest on the Feast features of gold.admission_features (de-identified: admission and pseudonymous keys only).
Run by MLflowTrainOperator, which starts the MLflow run, passes the training context and registers the model this
script logs (only if the script succeeds and the promotion gates pass). The contract is in docs/ml.md.
"""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from asgard_provider.training import TrainingContext

DEFAULTS = {
    "n_estimators": 200,
    "max_depth": 8,
    "min_samples_leaf": 10,
    "holdout_fraction": 0.2,
    "random_state": 42,
    # Share of discharged patients the care coordinators can call: precision/recall are measured at this rate.
    "alert_rate": 0.1,
}


def _at_alert_rate(y_true: np.ndarray, proba: np.ndarray, rate: float) -> dict[str, float]:
    """Precision and recall when the top ``rate`` share of discharges by probability are called."""
    cut = np.quantile(proba, 1.0 - rate)
    alerts = (proba >= cut).astype("int64")
    return {
        "precision_at_alert_rate": precision_score(y_true, alerts, zero_division=0),
        "recall_at_alert_rate": recall_score(y_true, alerts, zero_division=0),
    }


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    holdout_fraction = float(params.pop("holdout_fraction"))
    random_state = int(params.pop("random_state"))
    alert_rate = float(params.pop("alert_rate"))

    frame = ctx.training_frame()
    # Admissions are held out by a hash of their id: the same ones on every run, so models compare fairly.
    train, holdout = ctx.split(frame, holdout_fraction=holdout_fraction)
    x_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("int64")
    x_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column].astype("int64")
    if y_train.nunique() < 2 or y_test.nunique() < 2:
        raise SystemExit(f"need readmitted and other admissions in both splits, got {len(frame)} labelled rows")

    with mlflow.start_run():
        mlflow.log_params(
            {
                "model_type": "RandomForestClassifier",
                **params,
                "holdout_fraction": holdout_fraction,
                "random_state": random_state,
                "alert_rate": alert_rate,
                "features": ",".join(ctx.feature_columns),
                "train_rows": len(x_train),
                "readmission_rate": round(float(frame[ctx.label_column].mean()), 4),
            }
        )
        model = RandomForestClassifier(**params, random_state=random_state, n_jobs=-1)
        model.fit(x_train, y_train)

        proba = model.predict_proba(x_test)[:, list(model.classes_).index(1)]
        metrics = {
            "roc_auc": roc_auc_score(y_test, proba),
            "average_precision": average_precision_score(y_test, proba),
            **_at_alert_rate(y_test.to_numpy(), proba, alert_rate),
            # The rule a ward would start with: patients admitted often recently come back.
            "baseline_roc_auc_prior_admissions": roc_auc_score(y_test, x_test["prior_admissions"]),
        }
        mlflow.log_metrics(metrics)
        ctx.log_datasets(train, holdout)
        ctx.log_sklearn_model(model, x_train, proba, trusted_types=["sklearn.tree._tree.Tree"])

    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
