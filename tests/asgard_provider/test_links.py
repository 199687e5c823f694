"""Extra links: a real training run through Airflow stores the MLflow run and model version URLs for the UI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asgard_provider.links import MLflowModelVersionLink, MLflowRunLink, SparkUILink, mlflow_ui_url
from asgard_provider.operators.mlflow import MLflowTrainOperator
from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator
from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

from .conftest import train_operator


def _decode(value: object) -> object:
    """XCom values as the metadata database holds them (JSON column; older rows: JSON text)."""
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_operators_declare_their_links() -> None:
    assert [type(link) for link in MLflowTrainOperator.operator_extra_links] == [MLflowRunLink, MLflowModelVersionLink]
    assert [type(link) for link in SparkIcebergTransformOperator.operator_extra_links] == [SparkUILink]
    assert [type(link) for link in SparkIcebergKubernetesOperator.operator_extra_links] == [SparkUILink]


def test_mlflow_ui_url_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "mlflow_http", conn_type="asgard_mlflow", host="http://ml:secret@mlflow.internal", port=5000)
    assert mlflow_ui_url("mlflow_http") == "http://mlflow.internal:5000"  # never the credentials
    _conn(monkeypatch, "mlflow_bare", conn_type="asgard_mlflow", host="mlflow.internal:5000")
    assert mlflow_ui_url("mlflow_bare") == "http://mlflow.internal:5000"
    _conn(monkeypatch, "mlflow_file", conn_type="asgard_mlflow", host="sqlite:////var/lib/mlflow/mlflow.db")
    assert mlflow_ui_url("mlflow_file") is None  # a database file has no UI
    assert mlflow_ui_url("asgard_mlflow_default") is None  # embedded default: no connection, no UI


DAG_FILE = """
import json

from airflow.sdk import DAG

from asgard_provider.operators.mlflow import MLflowTrainOperator

with DAG(dag_id="asgard_links_test", schedule=None, catchup=False):
    MLflowTrainOperator(**json.loads({kwargs!r}))
"""


def test_training_task_stores_links_to_its_run_and_model_version(
    ml_home: Path, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from asgard_provider.hooks.mlflow import MLflowHook

    # The embedded store itself, named by a connection whose extra says where its UI is served.
    store = f"sqlite:///{ml_home / 'mlflow' / 'mlflow.db'}"
    extra = {"ui_url": "https://mlflow.example.com/"}
    _conn(monkeypatch, "asgard_mlflow_ui", conn_type="asgard_mlflow", host=store, extra=extra)
    # dag.test() runs only DAGs of a configured bundle: this test's DAG gets a bundle of its own.
    op = train_operator(mlflow_conn_id="asgard_mlflow_ui")
    kwargs = {k: getattr(op, k) for k in ("script", "experiment_name", "registered_model_name", "features")}
    kwargs.update(
        task_id=op.task_id,
        label_table=op.label_table,
        label_column=op.label_column,
        entity_key=op.entity_key,
        timestamp_field=op.timestamp_field,
        hyperparameters=op.hyperparameters,
        min_metrics=op.min_metrics,
        mlflow_conn_id="asgard_mlflow_ui",
    )
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "asgard_links_test.py").write_text(DAG_FILE.format(kwargs=json.dumps(kwargs)))
    bundles = [
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
        {
            "name": "asgard-links-test",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        },
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(folder), safe_mode=False)
    assert bag.import_errors == {}
    run = bag.dags["asgard_links_test"].test(logical_date=datetime.now(UTC).replace(microsecond=0))
    assert run.state == "success"

    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids="asgard_links_test", task_ids="train_model")
        rows = session.execute(query.with_only_columns(XComModel.key, XComModel.value)).all()
    xcoms = {key: _decode(value) for key, value in rows}
    result = xcoms["return_value"]
    client = MLflowHook("asgard_mlflow_ui").client()
    experiment = client.get_experiment_by_name("customer_churn_prediction")
    assert client.get_run(result["run_id"]).info.status == "FINISHED"
    assert xcoms["asgard_mlflow"] == {
        "experiment_id": experiment.experiment_id,
        "run_id": result["run_id"],
        "model_name": "customer_churn_predictor",
        "model_version": result["model_version"],
    }
    assert xcoms["_link_MLflowRunLink"] == (
        f"https://mlflow.example.com/#/experiments/{experiment.experiment_id}/runs/{result['run_id']}"
    )
    assert xcoms["_link_MLflowModelVersionLink"] == (
        f"https://mlflow.example.com/#/models/customer_churn_predictor/versions/{result['model_version']}"
    )


def test_mlflow_links_fall_back_to_the_asgard_page_without_an_mlflow_ui() -> None:
    from asgard_provider.links import MLflowModelVersionLink, MLflowRunLink

    info = {"experiment_id": "3", "run_id": "abc", "model_name": "m/1", "model_version": "7"}
    assert MLflowRunLink().page(None, info, "fraud_detection") == "asgard/ui/pipelines/fraud_detection#models"
    assert MLflowModelVersionLink().page(None, info, "a b") == "asgard/ui/pipelines/a%20b#models"
    assert (
        MLflowModelVersionLink().page("http://mlflow:5000", info, "p") == "http://mlflow:5000/#/models/m%2F1/versions/7"
    )
