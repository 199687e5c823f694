"""Train the churn model with gradient boosting: the same contract as churn_training.py, another estimator.

Select it in the pipeline YAML with ``train: {script: churn_training_gbm.py, ...}``; hyperparameters are
those of scikit-learn's GradientBoostingClassifier plus ``test_size`` (the holdout share) and ``random_state``.
"""

from __future__ import annotations

import mlflow
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, log_loss, roc_auc_score

from asgard_provider.training import TrainingContext

DEFAULTS = {
    "n_estimators": 150,
    "learning_rate": 0.1,
    "max_depth": 3,
    "subsample": 0.8,
    "test_size": 0.2,
    "random_state": 42,
}

#: Types skops (MLflow's safe model format) must be told to trust to reload a fitted GradientBoostingClassifier.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    test_size = float(params.pop("test_size"))
    random_state = int(params.pop("random_state"))

    frame = ctx.training_frame()
    train, holdout = ctx.split(frame, holdout_fraction=test_size)
    X_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("int64")
    X_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column].astype("int64")

    with mlflow.start_run():
        mlflow.log_params(
            {
                "model_type": "GradientBoostingClassifier",
                **params,
                "test_size": test_size,
                "random_state": random_state,
                "features": ",".join(ctx.feature_columns),
                "train_rows": len(X_train),
                "test_rows": len(X_test),
            }
        )
        model = GradientBoostingClassifier(**params, random_state=random_state)
        model.fit(X_train, y_train)
        # Training loss per boosting stage: shows whether more stages would still help.
        for stage, loss in enumerate(model.train_score_):
            mlflow.log_metric("train_deviance", float(loss), step=stage)

        proba = model.predict_proba(X_test)[:, list(model.classes_).index(1)]
        y_pred = (proba >= 0.5).astype("int64")
        metrics = {
            "roc_auc": roc_auc_score(y_test, proba),
            "average_precision": average_precision_score(y_test, proba),
            "log_loss": log_loss(y_test, proba, labels=[0, 1]),
            "accuracy": accuracy_score(y_test, y_pred),
            "f1_score": f1_score(y_test, y_pred, zero_division=0),
        }
        mlflow.log_metrics(metrics)
        ctx.log_datasets(train, holdout)
        ctx.log_sklearn_model(model, X_train, proba, trusted_types=TRUSTED_TYPES, predict_fn="predict_proba")

    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
