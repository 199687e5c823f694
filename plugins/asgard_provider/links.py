"""Extra links on Asgard tasks in the Airflow UI: the MLflow run and model version, the Spark UI.

Without an MLflow UI (the embedded store), the MLflow links open the models section of the pipeline's Asgard page.

Operators push what a link needs to XCom while they run (:data:`MLFLOW_XCOM`, :data:`SPARK_UI_XCOM`). When the
task ends, the worker calls each link's ``get_link`` and stores the URL; the UI shows a button per non-empty URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key of ``{"experiment_id", "run_id", "model_name", "model_version"}`` pushed by MLflowTrainOperator.
MLFLOW_XCOM = "asgard_mlflow"
#: XCom key of the Spark UI URL of the application that ran a transform (when Spark exposes one).
SPARK_UI_XCOM = "asgard_spark_ui"


def _xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def mlflow_ui_url(mlflow_conn_id: str) -> str | None:
    """Return the MLflow UI base URL of a connection: extra ``ui_url``, else an ``http(s)`` host, else ``None``.

    The embedded store (no connection, or a ``sqlite``/``file`` tracking URI) has no UI to link to. Credentials in
    the host are never part of the URL.
    """
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(mlflow_conn_id)
    except Exception:
        return None
    ui = conn.extra_dejson.get("ui_url")
    candidate = str(ui) if ui else (conn.host or "")
    if candidate and "://" not in candidate and not ui:
        candidate = f"http://{candidate}"
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (conn.port if not ui else None)
    netloc = parts.hostname + (f":{port}" if port else "")
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    """MLflow UI page of one run."""
    return f"{base}/#/experiments/{quote(str(experiment_id))}/runs/{quote(str(run_id))}"


def mlflow_model_version_url(base: str, model_name: str, version: str) -> str:
    """MLflow UI page of one registered model version."""
    return f"{base}/#/models/{quote(model_name, safe='')}/versions/{quote(str(version))}"


def asgard_models_url(dag_id: str) -> str:
    """Return the models section of a pipeline's Asgard page, relative to the Airflow UI's base URL."""
    from asgard_provider.api.plugin import page_href

    return page_href(quote(dag_id, safe="")) + "#models"


class _MLflowLink(BaseOperatorLink):
    """A page of the MLflow UI built from what MLflowTrainOperator pushed; ``""`` until ``required`` is known."""

    required: str

    def url(self, base: str, info: dict[str, Any]) -> str:
        """Return the page for ``info`` under the UI ``base`` URL."""
        raise NotImplementedError

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the page (see :meth:`page`), or ``""`` when the task pushed nothing yet."""
        info = _xcom(ti_key, MLFLOW_XCOM)
        if not isinstance(info, dict) or not info.get(self.required):
            return ""
        return self.page(mlflow_ui_url(str(getattr(operator, "mlflow_conn_id", ""))), info, ti_key.dag_id)

    def page(self, base: str | None, info: dict[str, Any], dag_id: str) -> str:
        """Return the MLflow UI page under ``base``; without an MLflow UI, the models of the pipeline's Asgard page."""
        return self.url(base, info) if base else asgard_models_url(dag_id)


class MLflowRunLink(_MLflowLink):
    """The MLflow run a training task logged into."""

    name = "MLflow run"
    required = "run_id"

    def url(self, base: str, info: dict[str, Any]) -> str:
        """Return the run's page."""
        return mlflow_run_url(base, info.get("experiment_id", "0"), info["run_id"])


class MLflowModelVersionLink(_MLflowLink):
    """The registered model version a training task created."""

    name = "MLflow model version"
    required = "model_version"

    def url(self, base: str, info: dict[str, Any]) -> str:
        """Return the version's page."""
        return mlflow_model_version_url(base, info["model_name"], info["model_version"])


class SparkUILink(BaseOperatorLink):
    """The Spark UI of the application that ran a transform (SparkApplication driver UI, or local UI when enabled)."""

    name = "Spark UI"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the URL the operator recorded, or ``""``."""
        url = _xcom(ti_key, SPARK_UI_XCOM)
        return str(url) if url else ""


def push(context: Any, key: str, value: Any) -> None:
    """Push ``value`` to XCom under ``key`` when the context's task instance can (not in plain ``execute`` calls).

    ``None`` is not pushed (an operator without a context task instance, e.g. a test calling ``execute``).
    """
    ti = context.get("ti") or context.get("task_instance")
    xcom_push = getattr(ti, "xcom_push", None)
    if callable(xcom_push) and value is not None:
        xcom_push(key=key, value=value)
