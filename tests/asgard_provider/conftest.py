"""Fixtures for the ML stages: a synthetic gold.customer_metrics table with a learnable churn label."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

AS_OF = date(2025, 11, 11)
PRIOR = AS_OF - timedelta(days=60)
N_CUSTOMERS = 2000
FEATURE_VIEW = "customer_churn_features"
FEATURES = [
    {"name": "total_purchases", "dtype": "int64"},
    {"name": "customer_lifetime_value", "dtype": "float64"},
    {"name": "avg_purchase_value", "dtype": "float64"},
    {"name": "days_since_last_purchase", "dtype": "int64"},
    {"name": "purchase_frequency", "dtype": "float64"},
    {"name": "account_age_days", "dtype": "int64"},
    {"name": "support_tickets", "dtype": "int64"},
    {"name": "avg_support_resolution_hours", "dtype": "float64"},
]
FEATURE_REFS = [f"{FEATURE_VIEW}:{f['name']}" for f in FEATURES]


def snapshot_time(day: date) -> datetime:
    """Naive timestamp of a snapshot, as dbt writes feature_timestamp."""
    return datetime.combine(day, time())


def customer_metrics(n: int = N_CUSTOMERS, seed: int = 7) -> pa.Table:
    """Two snapshots (PRIOR labelled, AS_OF unlabelled) of ``n`` customers; churn depends on recency and frequency."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1001, 1001 + n, dtype=np.int64)
    parts = []
    for day, labelled in ((PRIOR, True), (AS_OF, False)):
        age = rng.integers(30, 1500, n)
        freq = rng.gamma(2.0, 0.6, n)
        recency = np.minimum(rng.exponential(25.0 / (freq + 0.1)), age).astype(np.int64)
        purchases = rng.poisson(freq * age / 30.0).astype(np.int64)
        avg_value = np.round(rng.lognormal(4.2, 0.4, n), 2)
        tickets = rng.poisson(1.5, n).astype(np.int64)
        logit = -1.0 + 0.035 * recency - 1.2 * freq + 0.35 * tickets + rng.normal(0, 0.5, n)
        churned = (logit > 0).astype(np.int32)
        parts.append(
            pa.table(
                {
                    "customer_id": ids,
                    "feature_timestamp": pa.array([snapshot_time(day)] * n, pa.timestamp("us")),
                    "total_purchases": purchases,
                    "customer_lifetime_value": purchases * avg_value,
                    "avg_purchase_value": avg_value,
                    "days_since_last_purchase": recency,
                    "purchase_frequency": np.round(freq, 4),
                    "account_age_days": age.astype(np.int64),
                    "support_tickets": tickets,
                    "avg_support_resolution_hours": np.round(rng.gamma(2.0, 8.0, n), 2),
                    "churned": pa.array(churned if labelled else [None] * n, pa.int32()),
                    "country": pa.array(rng.choice(["NO", "SE", "DK"], n)),
                }
            )
        )
    return pa.concat_tables(parts)


def write_customer_metrics(table: pa.Table | None = None) -> pa.Table:
    """Write gold.customer_metrics into the current ASGARD_HOME's catalog."""
    from asgard_provider.hooks.iceberg import IcebergHook

    data = table if table is not None else customer_metrics()
    IcebergHook().write("gold.customer_metrics", [data], mode="overwrite")
    return data


def run_context(day: date = AS_OF, run_id: str = "scheduled__test") -> dict[str, Any]:
    """The parts of an Airflow task context the ML operators read."""
    from airflow.sdk import DAG

    end = datetime.combine(day, time(6), tzinfo=UTC)
    return {
        "dag": DAG(dag_id="customer_churn", schedule=None),
        "run_id": run_id,
        "logical_date": end,
        "data_interval_start": end - timedelta(days=1),
        "data_interval_end": end,
    }


def register_operator(**overrides: Any) -> Any:
    """A FeastRegisterOperator configured like include/pipelines/customer_churn.yaml."""
    from asgard_provider.operators.feast import FeastRegisterOperator

    kwargs: dict[str, Any] = {
        "task_id": "register_features",
        "feature_view": FEATURE_VIEW,
        "entity": "customer",
        "join_key": "customer_id",
        "source_table": "gold.customer_metrics",
        "timestamp_field": "feature_timestamp",
        "features": FEATURES,
        "ttl_days": 90,
        "tags": {"team": "ml"},
        "feature_service": "customer_churn_service",
    }
    kwargs.update(overrides)
    return FeastRegisterOperator(**kwargs)


def train_operator(**overrides: Any) -> Any:
    """An MLflowTrainOperator configured like include/pipelines/customer_churn.yaml (smaller forest)."""
    from asgard_provider.operators.mlflow import MLflowTrainOperator

    kwargs: dict[str, Any] = {
        "task_id": "train_model",
        "script": "churn_training.py",
        "experiment_name": "customer_churn_prediction",
        "registered_model_name": "customer_churn_predictor",
        "features": FEATURE_REFS,
        "label_table": "gold.customer_metrics",
        "label_column": "churned",
        "entity_key": "customer_id",
        "timestamp_field": "feature_timestamp",
        "hyperparameters": {"n_estimators": 40, "max_depth": 8},
        "min_metrics": {"roc_auc": 0.75},
        "timeout": 600,
    }
    kwargs.update(overrides)
    return MLflowTrainOperator(**kwargs)


@pytest.fixture
def gold_metrics(asgard_home: Path) -> pa.Table:
    """gold.customer_metrics in a fresh ASGARD_HOME."""
    return write_customer_metrics()


@pytest.fixture(scope="module")
def ml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A module-wide ASGARD_HOME with gold.customer_metrics written and the churn features registered."""
    home = tmp_path_factory.mktemp("ml") / "asgard"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASGARD_HOME", str(home))
        write_customer_metrics()
        register_operator().execute(run_context())
        yield home


#: Label table for the regression and multiclass fixtures: the same entities and snapshots, other targets.
TARGETS_TABLE = "gold.customer_targets"
#: Where the regression and multiclass training script fixtures live.
TRAINING_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "training"


def customer_targets(metrics: pa.Table, seed: int = 11) -> pa.Table:
    """A numeric target (``spend_next``) and a three-class target (``segment``) learnable from the features.

    Rows of the unlabelled AS_OF snapshot get NULL targets, as the churn label does.
    """
    rng = np.random.default_rng(seed)
    frame = metrics.to_pandas()
    spend = 40.0 * frame["purchase_frequency"] - 0.3 * frame["days_since_last_purchase"] + rng.normal(0, 2, len(frame))
    spend = spend + 60.0
    score = frame["purchase_frequency"] - 0.02 * frame["days_since_last_purchase"]
    segment = np.where(score > 1.0, "loyal", np.where(score > 0.0, "casual", "lapsing"))
    labelled = frame["churned"].notna().to_numpy()
    return pa.table(
        {
            "customer_id": metrics["customer_id"],
            "feature_timestamp": metrics["feature_timestamp"],
            "spend_next": pa.array(np.where(labelled, spend, np.nan), pa.float64(), mask=~labelled),
            "segment": pa.array(segment.astype(object), pa.string(), mask=~labelled),
        }
    )


def task_train_operator(task: str, script: str, label_column: str, include: Path, **overrides: Any) -> Any:
    """An MLflowTrainOperator for a task-type fixture script, on the churn features and :data:`TARGETS_TABLE`."""
    kwargs: dict[str, Any] = {
        "task_id": f"train_{task}",
        "script": script,
        "experiment_name": f"asgard_{task}",
        "registered_model_name": f"asgard_{task}_model",
        "label_table": TARGETS_TABLE,
        "label_column": label_column,
        "task": task,
        "include_dir": str(include),
        "min_metrics": {},
    }
    kwargs.update(overrides)
    return train_operator(**kwargs)


@pytest.fixture(scope="module")
def task_home(ml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ml_home`` plus :data:`TARGETS_TABLE` and an include dir holding the task-type fixture scripts."""
    import shutil

    from asgard_provider.hooks.iceberg import IcebergHook

    metrics = IcebergHook().load_table("gold.customer_metrics").scan().to_arrow()
    IcebergHook().write(TARGETS_TABLE, [customer_targets(metrics)], mode="overwrite")
    include = tmp_path_factory.mktemp("include")
    shutil.copytree(TRAINING_FIXTURES, include / "training")
    return include


#: A Gold table keyed by two columns (store_id, sku_id), its feature view and features (composite entity keys).
SERIES_TABLE = "gold.store_sku_metrics"
SERIES_VIEW = "store_sku_features"
SERIES_KEYS = ["store_id", "sku_id"]
SERIES_FEATURES = [
    {"name": "units_last_7d", "dtype": "float64"},
    {"name": "price", "dtype": "float64"},
    {"name": "on_promo", "dtype": "int64"},
]


def store_sku_metrics(n_stores: int = 4, n_skus: int = 30, seed: int = 5) -> pa.Table:
    """Two snapshots of every (store_id, sku_id) pair; sku ids repeat in every store, so no column alone is a key.

    ``units_next_7d`` (labelled on PRIOR only) is a linear function of the features plus a little noise.
    """
    rng = np.random.default_rng(seed)
    stores, skus = np.meshgrid(np.arange(1, n_stores + 1), np.arange(1, n_skus + 1), indexing="ij")
    pairs = stores.size
    parts = []
    for day, labelled in ((PRIOR, True), (AS_OF, False)):
        units = np.round(rng.gamma(3.0, 4.0, pairs), 1)
        price = np.round(rng.uniform(1.0, 20.0, pairs), 2)
        promo = rng.integers(0, 2, pairs).astype(np.int64)
        target = 0.9 * units - 0.5 * price + 6.0 * promo + 20.0 + rng.normal(0, 0.5, pairs)
        parts.append(
            pa.table(
                {
                    "store_id": pa.array(stores.ravel(), pa.int64()),
                    "sku_id": pa.array([f"sku{s}" for s in skus.ravel()], pa.string()),
                    "feature_timestamp": pa.array([snapshot_time(day)] * pairs, pa.timestamp("us")),
                    "units_last_7d": units,
                    "price": price,
                    "on_promo": promo,
                    "units_next_7d": pa.array(target if labelled else [None] * pairs, pa.float64()),
                }
            )
        )
    return pa.concat_tables(parts)


def series_register_operator(**overrides: Any) -> Any:
    """A FeastRegisterOperator of :data:`SERIES_VIEW` keyed by ``join_keys: [store_id, sku_id]``."""
    from asgard_provider.operators.feast import FeastRegisterOperator

    kwargs: dict[str, Any] = {
        "task_id": "register_features",
        "feature_view": SERIES_VIEW,
        "entity": "series",
        "join_keys": SERIES_KEYS,
        "source_table": SERIES_TABLE,
        "timestamp_field": "feature_timestamp",
        "features": SERIES_FEATURES,
        "ttl_days": 90,
    }
    kwargs.update(overrides)
    return FeastRegisterOperator(**kwargs)


@pytest.fixture
def store_sku(asgard_home: Path) -> pa.Table:
    """:data:`SERIES_TABLE` in a fresh ASGARD_HOME."""
    from asgard_provider.hooks.iceberg import IcebergHook

    data = store_sku_metrics()
    IcebergHook().write(SERIES_TABLE, [data], mode="overwrite")
    return data
