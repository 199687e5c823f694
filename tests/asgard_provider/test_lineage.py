"""OpenLineage: operators report the datasets they read and wrote, with schema and row counts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from asgard_provider.operators.checks import IcebergTableCheckOperator
from asgard_provider.operators.ingest import SqlToIcebergOperator

from .operators.test_spark_kubernetes import NAMESPACE, FakeCluster, cluster, context, operator, pg_catalog, submit

__all__ = ["cluster", "pg_catalog"]  # fixtures of the SparkApplication tests, reused here


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"u{i}@x.io") for i in range(25)])
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


def test_ingest_and_check_report_lineage(asgard_home: Path, source: Path) -> None:
    ingest = SqlToIcebergOperator(
        task_id="ingest", source_conn_id="crm", source_table="customers", target_table="bronze.customers"
    )
    ingest.execute({"run_id": "manual__ol"})
    lineage = ingest.get_openlineage_facets_on_complete(None)
    (inp,) = lineage.inputs
    assert (inp.namespace, inp.name) == (f"sqlite://{source}", "customers")
    (out,) = lineage.outputs
    assert (out.namespace, out.name) == ("iceberg://iceberg", "bronze.customers")
    assert [(f.name, f.type) for f in out.facets["schema"].fields] == [("customer_id", "long"), ("email", "string")]
    assert out.outputFacets["outputStatistics"].rowCount == 25

    check = IcebergTableCheckOperator(task_id="check", tables=["bronze.customers"], min_rows=1)
    check.execute({})
    (checked,) = check.get_openlineage_facets_on_complete(None).inputs
    assert (checked.namespace, checked.name) == ("iceberg://iceberg", "bronze.customers")


def test_openlineage_provider_uses_the_operators_own_lineage() -> None:
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    op = SqlToIcebergOperator(task_id="ingest", source_conn_id="crm", source_table="t", target_table="bronze.t")
    assert ExtractorManager().get_extractor_class(op) is DefaultExtractor


@pytest.mark.spark
def test_spark_transform_reports_the_tables_its_sql_reads_and_writes(asgard_home: Path) -> None:
    import pyarrow as pa

    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator

    hook = IcebergHook()
    hook.write(
        "bronze.orders",
        [pa.table({"order_id": [1, 2, 3, 4], "customer_id": [1, 1, 2, 9], "amount": [10.0, -1.0, 5.0, 3.0]})],
    )
    hook.write("bronze.customers", [pa.table({"customer_id": [1, 2], "country": ["NO", "SE"]})])
    hook.write("bronze.blocked", [pa.table({"customer_id": [9]})])
    # One table only in a join, one only in a subquery of an expression: both are inputs.
    sql = """
        SELECT o.order_id, o.amount, c.country,
               CASE WHEN o.amount <= 0 THEN 'non_positive_amount'
                    WHEN o.customer_id IN (SELECT customer_id FROM iceberg.bronze.blocked) THEN 'blocked'
               END AS _rejected_reason
        FROM iceberg.bronze.orders o LEFT JOIN iceberg.bronze.customers c ON o.customer_id = c.customer_id
    """
    op = SparkIcebergTransformOperator(task_id="clean_orders", sql=sql, output_table="silver.orders")
    result = op.execute({})  # type: ignore[arg-type]
    assert (result["rows_written"], result["rows_quarantined"]) == (2, 2)

    lineage = op.get_openlineage_facets_on_complete(None)
    inputs = {d.name: d for d in lineage.inputs}
    assert {d.namespace for d in lineage.inputs} == {"iceberg://iceberg"}
    assert sorted(inputs) == ["bronze.blocked", "bronze.customers", "bronze.orders"]
    assert [(f.name, f.type) for f in inputs["bronze.orders"].facets["schema"].fields] == [
        ("order_id", "long"),
        ("customer_id", "long"),
        ("amount", "double"),
    ]
    out, quarantine = lineage.outputs
    assert (out.namespace, out.name, out.outputFacets["outputStatistics"].rowCount) == (
        "iceberg://iceberg",
        "silver.orders",
        2,
    )
    assert [f.name for f in out.facets["schema"].fields] == ["order_id", "amount", "country"]
    assert (quarantine.name, quarantine.outputFacets["outputStatistics"].rowCount) == ("silver.orders_quarantine", 2)
    assert [f.name for f in quarantine.facets["schema"].fields][-1] == "_rejected_reason"


def test_ml_stages_chain_gold_to_features_to_model_to_predictions(ml_home: Path) -> None:
    from asgard_provider.lineage import mlflow_namespace
    from asgard_provider.operators.inference import BatchInferenceOperator

    from .conftest import AS_OF, FEATURE_REFS, FEATURES, register_operator, run_context, train_operator

    register = register_operator()
    register.execute(run_context())
    features = register.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in features.inputs] == [("iceberg://iceberg", "gold.customer_metrics")]
    assert "churned" in [f.name for f in features.inputs[0].facets["schema"].fields]
    (view,) = features.outputs
    assert (view.namespace, view.name) == ("feast://asgard", "customer_churn_features")
    assert [(f.name, f.type) for f in view.facets["schema"].fields] == [("customer_id", "long")] + [
        (f["name"], f["dtype"]) for f in FEATURES
    ]
    assert view.outputFacets["outputStatistics"].rowCount == 2000  # customers with a snapshot in the TTL window

    train = train_operator()
    trained = train.execute(run_context())
    model = train.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in model.inputs] == [
        (view.namespace, view.name),
        ("iceberg://iceberg", "gold.customer_metrics"),
    ]
    registry = mlflow_namespace(f"sqlite:///{ml_home / 'mlflow' / 'mlflow.db'}")
    assert registry == f"mlflow://{ml_home / 'mlflow' / 'mlflow.db'}"
    (version,) = model.outputs
    assert (version.namespace, version.name) == (
        registry,
        f"models/customer_churn_predictor/{trained['model_version']}",
    )

    score = BatchInferenceOperator(
        task_id="batch_inference",
        model_name="customer_churn_predictor",
        feature_refs=FEATURE_REFS,
        entity_table="gold.customer_metrics",
        entity_key="customer_id",
        timestamp_field="feature_timestamp",
        as_of=AS_OF.isoformat(),
        output_table="gold.customer_churn_predictions",
        prediction_column="churn_probability",
    )
    scored = score.execute(run_context())
    predictions = score.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in predictions.inputs] == [
        (version.namespace, version.name),
        ("iceberg://iceberg", "gold.customer_metrics"),
        (view.namespace, view.name),
    ]
    out, monitoring = predictions.outputs
    assert (out.name, out.outputFacets["outputStatistics"].rowCount) == (
        "gold.customer_churn_predictions",
        scored["rows"],
    )
    assert scored["rows"] == 2000
    assert "churn_probability" in [f.name for f in out.facets["schema"].fields]
    # one monitoring row per model feature plus one for the predicted probability
    assert (monitoring.name, monitoring.outputFacets["outputStatistics"].rowCount) == (
        "gold.customer_churn_predictions_monitoring",
        len(FEATURES) + 1,
    )


@pytest.mark.postgres
def test_spark_application_reports_the_driver_lineage_and_its_spark_ui(pg_catalog: str, cluster: FakeCluster) -> None:
    import pyarrow as pa

    from asgard_provider.engines import wap
    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.kubernetes import RESULT_MARKER
    from asgard_provider.links import SPARK_UI_XCOM

    hook = IcebergHook()
    hook.write("bronze.events", [pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})])
    op = operator()
    submit(op, context(op))
    # what the driver writes: output and quarantine on the run's branch, which the task publishes
    branch = wap.run_branch("manual__1")
    hook.write("silver.events", [pa.table({"id": [1, 2], "name": ["A", "B"]})], branch=branch)
    hook.write("silver.events_quarantine", [pa.table({"id": [3], "name": ["c"]})], branch=branch)
    tables = ("silver.events", "silver.events_quarantine")
    staged = [wap.branch_snapshot(hook.load_table(name), branch) for name in tables]
    assert all(hook.load_table(name).current_snapshot().snapshot_id not in staged for name in tables)
    cluster.pod_phase, cluster.app_state = "Succeeded", "COMPLETED"

    def application(**kw: object) -> dict:
        body = cluster._status(str(kw["name"]))
        body["status"]["driverInfo"] = {"webUIIngressAddress": "spark.example.com/asgard-jobs/clean-events"}
        return body

    cluster.custom.get_namespaced_custom_object.side_effect = application
    line = {
        "output_table": "silver.events",
        "rows_written": 2,
        "rows_quarantined": 1,
        "quarantine_table": "silver.events_quarantine",
        "input_tables": ["bronze.events"],
    }
    cluster.driver_log = f"{RESULT_MARKER}{json.dumps(line)}\n"

    resumed = operator()
    ctx = context(resumed)
    resumed.render_template_fields(ctx)
    resumed.trigger_reentry(ctx, {"status": "success", "name": f"{op.name}-driver", "namespace": NAMESPACE})

    lineage = resumed.get_openlineage_facets_on_complete(None)
    (read,) = lineage.inputs
    assert (read.namespace, read.name) == ("iceberg://iceberg", "bronze.events")
    assert [(f.name, f.type) for f in read.facets["schema"].fields] == [("id", "long"), ("name", "string")]
    written = [(d.name, d.outputFacets["outputStatistics"].rowCount) for d in lineage.outputs]
    assert written == [("silver.events", 2), ("silver.events_quarantine", 1)]
    # main of both moved to what the driver staged when the task published
    assert [hook.load_table(name).current_snapshot().snapshot_id for name in tables] == staged
    ctx["ti"].xcom_push.assert_any_call(key=SPARK_UI_XCOM, value="http://spark.example.com/asgard-jobs/clean-events")
