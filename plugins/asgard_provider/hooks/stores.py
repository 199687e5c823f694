"""The stores of an ML task (catalog, MLflow, Feast) resolved from Airflow connections, as engine arguments."""

from __future__ import annotations

from asgard_provider.engines.stores import Stores
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook


def connection_stores(iceberg_conn_id: str, mlflow_conn_id: str, feast_conn_id: str) -> Stores:
    """Resolve the three connections (a hook's embedded default when its default connection is undefined)."""
    return Stores(
        catalog=IcebergHook(iceberg_conn_id).settings,
        mlflow=MLflowHook(mlflow_conn_id).mlflow_settings(),
        feast=FeastHook(feast_conn_id).settings(),
    )
