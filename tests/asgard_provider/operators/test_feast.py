from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.hooks.feast import FeastHook

from ..conftest import (
    AS_OF,
    FEATURE_REFS,
    PRIOR,
    SERIES_VIEW,
    register_operator,
    run_context,
    series_register_operator,
    snapshot_time,
    write_customer_metrics,
)


def _latest(gold: pa.Table, customer_id: int) -> dict:
    rows = gold.filter(
        pc.and_(
            pc.equal(gold["customer_id"], customer_id),
            pc.equal(gold["feature_timestamp"], pa.scalar(snapshot_time(AS_OF), pa.timestamp("us"))),
        )
    )
    return rows.to_pylist()[0]


def test_registers_view_and_materializes_the_latest_snapshot(gold_metrics: pa.Table) -> None:
    result = register_operator().execute(run_context())
    assert result["feature_view"] == "customer_churn_features"
    assert result["feature_service"] == "customer_churn_service"
    assert result["features"] == FEATURE_REFS
    assert result["materialized_rows"] == 2000

    store = FeastHook().get_store()
    view = store.get_feature_view("customer_churn_features")
    assert [f.name for f in view.features] == [r.split(":")[1] for r in FEATURE_REFS]
    assert view.batch_source.iceberg_table == "customer_metrics"  # reads gold in place, no copy
    assert store.get_entity("customer").join_key == "customer_id"
    assert store.get_feature_service("customer_churn_service").name == "customer_churn_service"

    online = FeastHook().online_features(
        FEATURE_REFS, [{"customer_id": 1001}, {"customer_id": 2500}, {"customer_id": 99999}]
    )
    for position, customer in enumerate((1001, 2500)):
        expected = _latest(gold_metrics, customer)
        assert online["total_purchases"][position] == expected["total_purchases"]
        assert online["avg_purchase_value"][position] == pytest.approx(expected["avg_purchase_value"])
    assert online["total_purchases"][2] is None


def test_reapplying_is_idempotent(gold_metrics: pa.Table) -> None:
    register_operator().execute(run_context())
    again = register_operator().execute(run_context())
    assert again["materialized_rows"] == 2000
    store = FeastHook().get_store()
    assert [v.name for v in store.list_feature_views()] == ["customer_churn_features"]
    assert [e.name for e in store.list_entities()] == ["customer"]


def test_materialization_stops_at_the_data_interval_end(gold_metrics: pa.Table) -> None:
    # A run whose interval ends before the AS_OF snapshot must not serve that snapshot online.
    result = register_operator().execute(run_context(day=PRIOR))
    assert result["materialized_rows"] == 2000
    online = FeastHook().online_features(FEATURE_REFS[:1], [{"customer_id": 1001}])
    prior = gold_metrics.filter(pc.equal(gold_metrics["customer_id"], 1001)).to_pylist()[0]
    assert prior["feature_timestamp"] == snapshot_time(PRIOR)
    assert online["total_purchases"] == [prior["total_purchases"]]


def test_missing_table_is_named(asgard_home: Path) -> None:
    with pytest.raises(FeatureStoreError, match=r"gold\.customer_metrics"):
        register_operator().execute(run_context())
    assert FeastHook().get_store().list_feature_views() == []


@pytest.mark.postgres
def test_catalog_password_stays_out_of_the_feast_registry(
    asgard_home: Path, postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import os

    import pandas as pd

    secret = "pw-never-stored-7f3a"
    monkeypatch.setenv("PGPASSWORD", "")  # restored (unset) after the test
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT",
        json.dumps(
            {
                "conn_type": "asgard_iceberg",
                "host": f"postgresql+psycopg2://127.0.0.1:5432/{postgres_db}",
                "login": "postgres",
                "password": secret,
                "extra": {"catalog_type": "sql", "warehouse": (asgard_home / "warehouse").as_uri()},
            }
        ),
    )
    gold = write_customer_metrics()
    register_operator().execute(run_context())

    source = FeastHook().get_store().get_feature_view("customer_churn_features").batch_source
    assert source.catalog_properties["uri"] == f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_db}"
    stored = [p for p in (asgard_home / "feast").rglob("*") if p.is_file()]
    assert stored, "the embedded registry should exist"
    for path in stored:
        assert secret.encode() not in path.read_bytes(), path
    assert os.environ["PGPASSWORD"] == secret  # how this process's readers authenticate instead

    # A reader opening the store from the registry alone still gets point-in-time features.
    entities = pd.DataFrame({"customer_id": [1001], "event_timestamp": [pd.Timestamp(snapshot_time(AS_OF), tz="UTC")]})
    features = FeastHook().historical_features(entities, FEATURE_REFS)
    assert int(features["total_purchases"].iloc[0]) == _latest(gold, 1001)["total_purchases"]


def test_materialize_operator_loads_the_online_store_after_registration(gold_metrics: pa.Table) -> None:
    from asgard_provider.operators.feast import FeastMaterializeOperator

    materialize = FeastMaterializeOperator(
        task_id="materialize_features",
        feature_view="customer_churn_features",
        source_table="gold.customer_metrics",
        join_key="customer_id",
        timestamp_field="feature_timestamp",
        ttl_days=90,
    )
    with pytest.raises(FeatureStoreError, match=r"customer_churn_features.*not registered.*register_features"):
        materialize.execute(run_context())

    assert register_operator(materialize=False).execute(run_context())["materialized_rows"] is None
    assert FeastHook().online_features(FEATURE_REFS, [{"customer_id": 1001}])["total_purchases"] == [None]

    result = materialize.execute(run_context())
    assert result["materialized_rows"] == 2000
    online = FeastHook().online_features(FEATURE_REFS, [{"customer_id": 1001}])
    assert online["total_purchases"] == [_latest(gold_metrics, 1001)["total_purchases"]]
    lineage = materialize.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("iceberg://iceberg", "gold.customer_metrics")]
    (online_view,) = lineage.outputs
    assert (online_view.namespace, online_view.name) == ("feast://asgard", "customer_churn_features.online")
    assert online_view.outputFacets["outputStatistics"].rowCount == 2000


def test_materialize_operator_counts_composite_key_pairs(store_sku: pa.Table) -> None:
    from asgard_provider.operators.feast import FeastMaterializeOperator

    registered = series_register_operator(materialize=False).execute(run_context())
    assert registered["materialized_rows"] is None and registered["entity"] == "series"
    materialize = FeastMaterializeOperator(
        task_id="materialize_features",
        feature_view=SERIES_VIEW,
        source_table="gold.store_sku_metrics",
        join_keys=["store_id", "sku_id"],
        timestamp_field="feature_timestamp",
    )
    assert materialize.execute(run_context())["materialized_rows"] == 120
    (online_view,) = materialize.get_openlineage_facets_on_complete(None).outputs
    assert online_view.outputFacets["outputStatistics"].rowCount == 120


def test_operators_take_one_key_spelling(asgard_home: Path) -> None:
    with pytest.raises(FeatureStoreError, match="register_features: give the entity key as join_key or join_keys"):
        series_register_operator(join_key="store_id")
    with pytest.raises(FeatureStoreError, match=r"join_keys \['store_id', 'store_id'\] must name at least one"):
        series_register_operator(join_keys=["store_id", "store_id"])
    assert series_register_operator(join_keys=None, join_key="store_id").join_keys == ["store_id"]
