"""Hook for MLflow tracking and the model registry."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from asgard_provider.engines.mlflow_store import MLflowStore
from asgard_provider.engines.stores import MLFLOW_CONN_ID, MLflowSettings, embedded_mlflow_dir, mlflow_settings, urlport
from asgard_provider.exceptions import TrainingError
from asgard_provider.library_logs import quiet_library_logs

__all__ = ["MLflowHook", "embedded_mlflow_dir", "urlport"]


class MLflowHook(BaseHook, MLflowStore):
    """Talk to the MLflow tracking server and model registry named by an ``asgard_mlflow`` connection.

    Connection fields: ``host`` is the tracking server URL (``http://mlflow:5000``); ``login``/``password``
    are its basic-auth credentials; extra ``{"artifact_location": "s3://bucket/mlflow"}`` optionally sets
    where new experiments keep artifacts. When the default connection is not defined, tracking goes to
    ``sqlite:///$ASGARD_HOME/mlflow/mlflow.db`` with artifacts under ``$ASGARD_HOME/mlflow/artifacts``.
    The calls themselves are :class:`~asgard_provider.engines.mlflow_store.MLflowStore`'s.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = MLFLOW_CONN_ID
    conn_type = "asgard_mlflow"
    hook_name = "MLflow (Asgard)"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        BaseHook.__init__(self)
        self.mlflow_conn_id = mlflow_conn_id
        quiet_library_logs()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic connection form for a tracking server."""
        from asgard_provider.connections import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def _settings(self) -> MLflowSettings:
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except Exception as exc:
            if self.mlflow_conn_id == self.default_conn_name:
                return MLflowSettings.embedded()
            raise TrainingError(f"Airflow connection {self.mlflow_conn_id!r} is not defined") from exc
        return mlflow_settings(conn, self.mlflow_conn_id)

    def mlflow_settings(self) -> MLflowSettings:
        """Return the settings of the connection (or the embedded default)."""
        return self._settings

    def get_conn(self) -> Any:
        """Return the ``mlflow.MlflowClient``."""
        return self.client()
