"""Train the churn model: a random forest on the Feast features of gold.customer_metrics.

Run by MLflowTrainOperator, which starts the MLflow run, passes the training context and registers the model
this script logs (only if the script succeeds and the promotion gates pass). The contract is in docs/ml.md.
"""

from __future__ import annotations

import mlflow
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from asgard_provider.training import TrainingContext

DEFAULTS = {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 1, "test_size": 0.2, "random_state": 42}


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    test_size = float(params.pop("test_size"))
    random_state = int(params.pop("random_state"))

    frame = ctx.training_frame()
    # Held-out customers are chosen by a hash of their id: the same customers every run (see docs/ml.md).
    train, holdout = ctx.split(frame, holdout_fraction=test_size)
    X_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("int64")
    X_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column].astype("int64")

    with mlflow.start_run():
        mlflow.log_params(
            {
                "model_type": "RandomForestClassifier",
                **params,
                "test_size": test_size,
                "random_state": random_state,
                "features": ",".join(ctx.feature_columns),
                "train_rows": len(X_train),
                "test_rows": len(X_test),
                "positive_rate": round(float(frame[ctx.label_column].mean()), 4),
            }
        )

        model = RandomForestClassifier(**params, random_state=random_state, n_jobs=-1)
        model.fit(X_train, y_train)

        proba = model.predict_proba(X_test)[:, list(model.classes_).index(1)]
        y_pred = (proba >= 0.5).astype("int64")
        majority = int(y_train.mode()[0])
        metrics = {
            "accuracy": accuracy_score(y_test, y_pred),
            "precision": precision_score(y_test, y_pred, zero_division=0),
            "recall": recall_score(y_test, y_pred, zero_division=0),
            "f1_score": f1_score(y_test, y_pred, zero_division=0),
            "roc_auc": roc_auc_score(y_test, proba),
            # What always predicting the majority class would score: the model has to beat it.
            "baseline_accuracy": accuracy_score(y_test, [majority] * len(y_test)),
        }
        mlflow.log_metrics(metrics)
        ctx.log_datasets(train, holdout)

        ctx.log_sklearn_model(
            model, X_train, proba, trusted_types=["sklearn.tree._tree.Tree"], predict_fn="predict_proba"
        )

    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
