"""Train one category's demand model: the units a store sells of a SKU over the next 7 days.

A histogram gradient boosting regressor (Poisson loss: units are counts) on the features of the feature service
demand_service: the store x SKU's recent sales and planned promotions (gold.demand_features) and the SKU's profile
(gold.sku_profile of the retail_catalog pipeline). The pipeline's train.partition runs this script once per
category, each time on that category's rows only. Run by MLflowTrainOperator, which starts the MLflow run, passes
the training context and registers the model this script logs. The contract is in docs/ml.md.
"""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error

from asgard_provider.training import TrainingContext

DEFAULTS = {
    "max_iter": 200,
    "learning_rate": 0.08,
    "max_leaf_nodes": 15,
    "loss": "poisson",
    "holdout_fraction": 0.2,
    "random_state": 42,
}


def wape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted absolute percentage error: total absolute error over total units."""
    return float(np.abs(y_true - y_pred).sum() / max(np.abs(y_true).sum(), 1e-9))


def main() -> None:
    ctx = TrainingContext.from_env()
    params = {**DEFAULTS, **ctx.params}
    holdout_fraction = float(params.pop("holdout_fraction"))
    random_state = int(params.pop("random_state"))

    frame = ctx.training_frame()
    # Store x SKU pairs are held out by a hash of both keys: the same ones on every run, so models compare fairly.
    train, holdout = ctx.split(frame, holdout_fraction=holdout_fraction)
    x_train, y_train = train[ctx.feature_columns].astype("float64"), train[ctx.label_column].astype("float64")
    x_test, y_test = holdout[ctx.feature_columns].astype("float64"), holdout[ctx.label_column].astype("float64")
    if len(x_train) < 50 or len(x_test) < 10:
        raise SystemExit(f"too few labelled rows to train on: {len(x_train)} train, {len(x_test)} holdout")

    with mlflow.start_run():
        mlflow.log_params(
            {
                "model_type": "HistGradientBoostingRegressor",
                **params,
                "holdout_fraction": holdout_fraction,
                "random_state": random_state,
                "features": ",".join(ctx.feature_columns),
                "train_rows": len(x_train),
                "mean_units_next_7d": round(float(y_train.mean()), 3),
            }
        )
        model = HistGradientBoostingRegressor(**params, random_state=random_state)
        model.fit(x_train, y_train)

        predicted = model.predict(x_test)
        # The forecast a planner starts with: next week sells what the last week sold.
        naive = x_test["units_last_7d"].to_numpy()
        metrics = {
            "mae": mean_absolute_error(y_test, predicted),
            "wape": wape(y_test.to_numpy(), predicted),
            "baseline_wape_last_7d": wape(y_test.to_numpy(), naive),
        }
        mlflow.log_metrics(metrics)
        ctx.log_datasets(train, holdout)
        # skops (MLflow's safe default format) refuses the fitted trees unless their predictor type is trusted.
        trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
        ctx.log_sklearn_model(model, x_train, predicted, trusted_types=trusted)

    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
