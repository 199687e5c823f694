"""Every Kubernetes object the production pipeline submits, rendered and validated against Kubernetes schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from asgard_provider.catalog import CatalogSettings
from asgard_provider.engines.feature_batches import ViewSource
from asgard_provider.engines.scoring import ScoringSpec
from asgard_provider.exceptions import CatalogError
from asgard_provider.kubernetes import (
    ICEBERG_VERSION,
    POD_COMMAND,
    RESULT_MARKER,
    catalog_spark_conf,
    decode_spec,
    encode_spec,
    spark_application,
)
from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"
FIXTURE = REPO / "tests" / "fixtures" / "pipelines" / "good" / "customer_churn_production.yaml"
SCHEMA = json.loads((REPO / "tests" / "fixtures" / "kubernetes" / "sparkapplication-v1beta2.schema.json").read_text())

#: The production catalog: Iceberg REST catalog over an S3 warehouse (MinIO-style endpoint).
REST_CATALOG = {
    "conn_type": "asgard_iceberg",
    "host": "http://iceberg-rest.asgard.svc:8181",
    "extra": {
        "catalog_type": "rest",
        "warehouse": "s3://asgard-lake/warehouse",
        "properties": {
            "s3.endpoint": "http://minio.asgard.svc:9000",
            "s3.path-style-access": "true",
            "s3.region": "eu-north-1",
            "s3.secret-access-key": "not-for-the-cluster",
            "credential": "client:also-secret",
        },
    },
}


@pytest.fixture
def production_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Airflow connections of the production stack (defined as environment variables, as in the chart)."""
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT", json.dumps(REST_CATALOG))
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_TRINO",
        json.dumps({"conn_type": "trino", "host": "trino.asgard.svc", "port": 8080, "login": "asgard"}),
    )


def run_context(dag: Any, task_id: str) -> dict[str, Any]:
    """A task context good enough for rendering templates and building pods (no Airflow database)."""
    end = datetime(2025, 11, 11, 6, tzinfo=UTC)
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, run_id="scheduled__2025-11-11", map_index=-1, try_number=1)
    return {
        "dag": dag,
        "ti": ti,
        "task_instance": ti,
        "run_id": "scheduled__2025-11-11",
        "logical_date": end,
        "data_interval_start": datetime(2025, 11, 10, 6, tzinfo=UTC),
        "data_interval_end": end,
        "ds": "2025-11-11",
        "params": {k: dag.params[k] for k in dag.params},
    }


def validate_pod(pod: Any) -> dict[str, Any]:
    """Serialize a V1Pod as the client would send it and parse it back with client-side validation on."""
    from kubernetes.client import ApiClient, Configuration

    config = Configuration()
    config.client_side_validation = True
    client = ApiClient(configuration=config)
    body = client.sanitize_for_serialization(pod)
    parsed = client.deserialize(SimpleNamespace(data=json.dumps(body)), "V1Pod")
    assert client.sanitize_for_serialization(parsed) == body
    return body  # type: ignore[no-any-return]


def test_catalog_conf_for_the_cluster_uses_s3fileio_and_withholds_credentials() -> None:
    catalog = CatalogSettings(
        type="rest",
        uri="http://iceberg-rest:8181",
        warehouse="s3://lake/warehouse",
        properties={"s3.endpoint": "http://minio:9000", "s3.secret-access-key": "x", "token": "t"},
    )
    conf, withheld = catalog_spark_conf(catalog)
    assert conf["spark.sql.catalog.iceberg"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf["spark.sql.catalog.iceberg.type"] == "rest"
    assert conf["spark.sql.catalog.iceberg.uri"] == "http://iceberg-rest:8181"
    assert conf["spark.sql.catalog.iceberg.warehouse"] == "s3://lake/warehouse"
    assert conf["spark.sql.catalog.iceberg.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert conf["spark.sql.catalog.iceberg.s3.endpoint"] == "http://minio:9000"
    assert conf["spark.sql.extensions"] == "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
    assert withheld == ["spark.sql.catalog.iceberg.s3.secret-access-key", "spark.sql.catalog.iceberg.token"]
    assert not any(v in ("x", "t") for v in conf.values())


def test_postgres_catalog_password_is_withheld_and_sqlite_is_refused() -> None:
    pg = CatalogSettings(uri="postgresql+psycopg2://iceberg:pw@db:5432/catalog", warehouse="s3://lake/wh")
    conf, withheld = catalog_spark_conf(pg)
    assert conf["spark.sql.catalog.iceberg.uri"] == "jdbc:postgresql://db:5432/catalog"
    assert conf["spark.sql.catalog.iceberg.jdbc.user"] == "iceberg"
    assert withheld == ["spark.sql.catalog.iceberg.jdbc.password"]
    with pytest.raises(CatalogError, match="SQLite file, which pods in the cluster cannot reach"):
        catalog_spark_conf(CatalogSettings(uri="sqlite:////tmp/c.db", warehouse="file:///tmp/wh"))


def test_iceberg_version_in_the_cluster_matches_the_local_runtime_jar() -> None:
    from asgard_provider.hooks.spark import iceberg_runtime_jar

    assert iceberg_runtime_jar().name.endswith(f"-{ICEBERG_VERSION}.jar")


def test_schema_rejects_what_the_spark_operator_would_not_accept() -> None:
    good = spark_application(
        name="clean-customers",
        namespace="asgard",
        image="spark:1",
        job={"sql": "select 1"},
        catalog=CatalogSettings(type="rest", uri="http://r:8181", warehouse="s3://l/w"),
    )
    jsonschema.validate(good, SCHEMA)
    for path, value in [
        (("spec", "driver", "cores"), "1"),
        (("spec", "executor", "instances"), 0),
        (("spec", "type"), "python"),
        (("spec", "executor", "memory"), "2 GB"),
        (("metadata", "name"), "Clean_Customers"),
        (("spec", "sparkConf", "spark.executor.cores"), 2),
        (("spec", "driverr"), {}),
    ]:
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_production_dag_renders_valid_spark_applications_and_pods(production_connections: None) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from asgard_provider.operators.kubernetes_pod import AsgardPodOperator
    from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

    cfg = load_pipeline_config(FIXTURE, base_dir=INCLUDE)
    dag = build_dag(cfg, base_dir=INCLUDE, config_path=FIXTURE)
    spark_tasks = [t for t in dag.tasks if isinstance(t, SparkIcebergKubernetesOperator)]
    pod_tasks = [t for t in dag.tasks if isinstance(t, AsgardPodOperator)]
    assert sorted(t.task_id for t in spark_tasks) == ["clean_customers", "clean_support_tickets", "clean_transactions"]
    assert sorted(t.task_id for t in pod_tasks) == ["batch_inference", "train_model"]
    # Airbyte, dbt, Feast and check tasks are the only other tasks; nothing else talks to Kubernetes.
    assert not [t for t in dag.tasks if isinstance(t, KubernetesPodOperator) and t not in spark_tasks + pod_tasks]

    by_stage = {tr.name: tr for tr in cfg.transform}
    for task in spark_tasks:
        stage = by_stage[task.task_id]
        assert stage.kubernetes is not None
        task.render_template_fields(run_context(dag, task.task_id))
        app = task.build_application()
        jsonschema.validate(app, SCHEMA)
        spec = app["spec"]
        assert app["metadata"]["namespace"] == "asgard"
        assert spec["image"] == "registry.example.com/asgard/spark:0.1.0"
        assert spec["mainApplicationFile"] == "local:///opt/airflow/plugins/asgard_provider/spark_driver.py"
        assert spec["driver"]["cores"] == 1 and spec["driver"]["memory"] == "2g"
        assert spec["driver"]["serviceAccount"] == "spark"
        assert spec["executor"] == {
            **spec["executor"],
            "cores": 2,
            "memory": "4g",
            "instances": stage.kubernetes.executor_instances,
        }
        assert spec["driver"]["envFrom"] == [{"secretRef": {"name": "asgard-s3-credentials"}}]
        assert spec["executor"]["envFrom"] == spec["driver"]["envFrom"]
        assert spec["deps"]["packages"] == [
            f"org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:{ICEBERG_VERSION}",
            f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}",
        ]
        conf = spec["sparkConf"]
        assert conf["spark.sql.catalog.iceberg.uri"] == "http://iceberg-rest.asgard.svc:8181"
        assert conf["spark.sql.catalog.iceberg.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
        assert conf["spark.sql.catalog.iceberg.s3.endpoint"] == "http://minio.asgard.svc:9000"
        assert "not-for-the-cluster" not in json.dumps(app) and "also-secret" not in json.dumps(app)
        assert spec["arguments"][0] == "--job"
        job = decode_spec(spec["arguments"][1])
        assert job == {
            "task_id": task.task_id,
            "sql": (INCLUDE / "sql" / stage.sql).read_text().removesuffix("\n"),  # Jinja drops the final newline
            "sql_source": stage.sql,
            "output_table": stage.output_table,
            "mode": "overwrite",
            "partition_by": stage.partition_by,
            "merge_keys": [],
            "quarantine_table": None,
            "withheld_conf": ["spark.sql.catalog.iceberg.credential", "spark.sql.catalog.iceberg.s3.secret-access-key"],
            # every transform writes on the run's branch; the task (or the stage's checks) publishes it
            "branch": "run_scheduled__2025_11_11",
            "snapshot_properties": {"asgard.run-id": "scheduled__2025-11-11"},
        }
        assert task.publish is (stage.checks is None)
        assert task.execution_timeout is not None and task.execution_timeout.total_seconds() == 120 * 60
        assert task.deferrable is True

    for task in pod_tasks:
        context = run_context(dag, task.task_id)
        task.render_template_fields(context)
        task.arguments = [encode_spec(task.task_spec(context))]
        pod = validate_pod(task.build_pod_request_obj(context, dry_run=True))  # dry run: no kube config needed
        assert pod["metadata"]["namespace"] == "asgard"
        assert pod["spec"]["serviceAccountName"] == "asgard-ml"
        assert pod["spec"]["restartPolicy"] == "Never"
        (base,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
        assert base["image"] == "registry.example.com/asgard/airflow:0.1.0"
        assert base["command"] == POD_COMMAND
        assert base["envFrom"] == [{"secretRef": {"name": "asgard-ml-connections"}}]
        assert base["resources"] == {"limits": {"memory": "4Gi"}, "requests": {"cpu": "2", "memory": "4Gi"}}
        # the provider's XCom sidecar carries the operator's result back
        assert any(c["name"] == "airflow-xcom-sidecar" for c in pod["spec"]["containers"])
        spec = decode_spec(base["args"][0])
        # The pod runs an engine with plain arguments; connection ids only (credentials come from env_from).
        assert spec["connections"] == {
            "iceberg_conn_id": "asgard_iceberg_default",
            "mlflow_conn_id": "asgard_mlflow_default",
            "feast_conn_id": "asgard_feast_default",
        }
        assert "not-for-the-cluster" not in json.dumps(spec) and "also-secret" not in json.dumps(spec)
        args = spec["args"]
        if task.task_id == "train_model":
            assert spec["engine"] == "train"
            assert json.loads(args["hyperparameters"]) == {"n_estimators": 100, "max_depth": 10}
            assert args["timeout"] == 3600
            assert args["script"] == "churn_training.py"
            assert args["where"] == "include/pipelines/customer_churn_production.yaml"
            assert args["run_name"] == "train_model__scheduled__2025-11-11"
            assert args["run_tags"] == {
                "airflow.dag_id": "customer_churn_production",
                "airflow.run_id": "scheduled__2025-11-11",
                "airflow.task_id": "train_model",
                "airflow.logical_date": "2025-11-11T06:00:00+00:00",
                "airflow.try_number": "1",
            }
            assert args["label_table"] == "gold.customer_metrics" and args["entity_keys"] == ["customer_id"]
        else:
            assert spec["engine"] == "score"
            assert args["as_of"] == "2025-11-11"
            assert args["output_table"] == "gold.customer_churn_predictions"
            assert args["interval_start"] == "2025-11-10 06:00:00+00:00"  # {{ data_interval_start }}, rendered
            assert args["interval_end"] == "2025-11-11 06:00:00+00:00"
            assert args["run_id"] == "scheduled__2025-11-11"
            # The pod reads the feature views as described from config, without the Feast registry.
            views = [ViewSource.from_dict(view) for view in args["feature_views"]]
            assert [view.name for view in views] == sorted({ref.split(":")[0] for ref in args["feature_refs"]})
            assert views[0].table == "gold.customer_metrics" and views[0].keys == ("customer_id",)
            assert ScoringSpec(**args).feature_views == args["feature_views"]
            assert task.publish_tables == ["gold.customer_churn_predictions"]


def test_driver_result_line_round_trips() -> None:
    from asgard_provider.spark_driver import main

    with pytest.raises(SystemExit):
        main([])
    assert RESULT_MARKER.endswith(" ") and decode_spec(encode_spec({"a": [1, "ü"]})) == {"a": [1, "ü"]}


def test_pod_entry_refuses_unknown_engines_and_arguments() -> None:
    from asgard_provider.exceptions import AsgardError
    from asgard_provider.pod_entry import main, run

    with pytest.raises(AsgardError, match=r"engine 'shell' may not run in an Asgard pod \(allowed: train, score\)"):
        run({"engine": "shell", "args": {}})
    with pytest.raises(AsgardError, match="the arguments of engine 'train' do not fit it"):
        run({"engine": "train", "args": {"script": "x.py", "command": "rm -rf /"}})
    assert main([]) == 2


def test_pod_reads_json_connections_without_airflow_and_never_quotes_them() -> None:
    from asgard_provider.engines.stores import env_stores
    from asgard_provider.exceptions import AsgardError

    environ = {
        "AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT": json.dumps(REST_CATALOG),
        "AIRFLOW_CONN_ASGARD_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "asgard_mlflow", "host": "mlflow.asgard.svc", "port": 5000, "password": "pw-mlflow"}
        ),
        "AIRFLOW_CONN_BROKEN": "asgard-mlflow://user:pw-in-uri@mlflow:5000",
    }
    stores = env_stores(environ=environ)
    assert stores.catalog.type == "rest" and stores.catalog.uri == "http://iceberg-rest.asgard.svc:8181"
    assert stores.catalog.properties["s3.endpoint"] == "http://minio.asgard.svc:9000"
    assert stores.mlflow.tracking_uri == "http://mlflow.asgard.svc:5000"
    assert stores.mlflow.env()["MLFLOW_TRACKING_PASSWORD"] == "pw-mlflow"
    assert "pw-mlflow" not in repr(stores)
    assert stores.feast.project == "asgard"  # undefined default connection: the embedded store
    with pytest.raises(AsgardError, match=r"\$AIRFLOW_CONN_BROKEN is not a JSON connection object") as err:
        env_stores(mlflow_conn_id="broken", environ=environ)
    assert "pw-in-uri" not in str(err.value)
    with pytest.raises(AsgardError, match=r"connection 'missing' is not defined \(\$AIRFLOW_CONN_MISSING\)"):
        env_stores(feast_conn_id="missing", environ=environ)
