"""Train the customer value model: which customers spend in the top quarter over the next 90 days.

A random forest on the Feast features of gold.customer_value_features. Run by MLflowTrainOperator, which starts
the MLflow run, passes the training context and registers the model this script logs (only if the script
succeeds and the promotion gates pass). The contract is in docs/ml.md.
"""

from __future__ import annotations

import mlflow
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from asgard_provider.training import TrainingContext

DEFAULTS = {"n_estimators": 150, "max_depth": 8, "min_samples_leaf": 5, "holdout_fraction": 0.2, "random_state": 42}


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    holdout_fraction = float(params.pop("holdout_fraction"))
    random_state = int(params.pop("random_state"))

    frame = ctx.training_frame()
    # The same customers are held out on every run (hash of the id), so models are compared on unseen customers.
    train, holdout = ctx.split(frame, holdout_fraction=holdout_fraction)
    x_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("int64")
    x_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column].astype("int64")

    with mlflow.start_run():
        mlflow.log_params(
            {
                "model_type": "RandomForestClassifier",
                **params,
                "holdout_fraction": holdout_fraction,
                "random_state": random_state,
                "features": ",".join(ctx.feature_columns),
                "train_rows": len(x_train),
                "positive_rate": round(float(frame[ctx.label_column].mean()), 4),
            }
        )
        model = RandomForestClassifier(**params, random_state=random_state, n_jobs=-1)
        model.fit(x_train, y_train)

        proba = model.predict_proba(x_test)[:, list(model.classes_).index(1)]
        predicted = (proba >= 0.5).astype("int64")
        # The naive rule a planner would use without a model: last quarter's spend ranks the next quarter's.
        metrics = {
            "roc_auc": roc_auc_score(y_test, proba),
            "average_precision": average_precision_score(y_test, proba),
            "accuracy": accuracy_score(y_test, predicted),
            "f1_score": f1_score(y_test, predicted, zero_division=0),
            "baseline_roc_auc_spend_90d": roc_auc_score(y_test, x_test["spend_90d"]),
        }
        mlflow.log_metrics(metrics)
        ctx.log_datasets(train, holdout)
        ctx.log_sklearn_model(model, x_train, proba, trusted_types=["sklearn.tree._tree.Tree"])

    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
