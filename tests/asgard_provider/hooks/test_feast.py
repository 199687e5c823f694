from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from asgard_provider.engines.stores import BULK_SQLITE_TYPE
from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.hooks.feast import FeastHook, build_feature_store_config, online_store_config, registry_config

from ..conftest import (
    AS_OF,
    FEATURE_REFS,
    PRIOR,
    SERIES_FEATURES,
    SERIES_VIEW,
    register_operator,
    run_context,
    series_register_operator,
    snapshot_time,
)


def test_embedded_default_writes_a_loadable_feature_store_yaml(asgard_home: Path) -> None:
    hook = FeastHook()
    repo = hook.repo_path()
    assert repo == asgard_home / "feast" / "repo"
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    assert config["project"] == "asgard"
    assert config["registry"] == {
        "registry_type": "file",
        "path": str(asgard_home / "feast" / "registry.db"),
        "cache_ttl_seconds": 60,
    }
    assert config["online_store"] == {"type": BULK_SQLITE_TYPE, "path": str(asgard_home / "feast" / "online.db")}
    assert config["offline_store"] == {"type": "duckdb"}
    store = hook.get_store()
    assert store.project == "asgard"
    assert store.list_feature_views() == []
    assert (repo / "feature_store.yaml").stat().st_mode & 0o077 == 0


def test_production_connection_selects_sql_registry_and_redis(
    asgard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_PROD",
        json.dumps(
            {
                "conn_type": "asgard_feast",
                "host": "redis.feast",
                "port": 6380,
                "password": "s3cret",
                "extra": {
                    "project": "churn",
                    "registry": "postgresql+psycopg2://feast:pw@db:5432/feast",
                    "repo_path": str(asgard_home / "prod-repo"),
                },
            }
        ),
    )
    hook = FeastHook("feast_prod")
    assert hook.config["project"] == "churn"
    assert hook.config["registry"]["registry_type"] == "sql"
    assert hook.config["registry"]["path"] == "postgresql+psycopg2://feast:pw@db:5432/feast"
    assert hook.config["online_store"] == {"type": "redis", "connection_string": "redis.feast:6380,password=s3cret"}
    assert hook.repo_path() == asgard_home / "prod-repo"


def test_online_store_and_registry_forms() -> None:
    assert online_store_config("redis://:pw@cache:6381/2") == {
        "type": "redis",
        "connection_string": "cache:6381,db=2,password=pw",
    }
    assert online_store_config("cache:6379,db=1") == {"type": "redis", "connection_string": "cache:6379,db=1"}
    assert online_store_config("sqlite:////data/online.db") == {"type": BULK_SQLITE_TYPE, "path": "/data/online.db"}
    assert registry_config("s3://bucket/registry.pb")["registry_type"] == "file"
    assert registry_config("mysql://u@h/feast")["registry_type"] == "sql"
    assert build_feature_store_config(offline_store={"type": "spark"})["offline_store"] == {"type": "spark"}


def test_undefined_named_connection_is_named_in_the_error(asgard_home: Path) -> None:
    with pytest.raises(FeatureStoreError, match="nope_feast"):
        FeastHook("nope_feast").repo_path()


def test_historical_features_are_point_in_time_correct(gold_metrics: pa.Table) -> None:
    register_operator(materialize=False).execute(run_context())
    rows = gold_metrics.to_pandas().set_index(["customer_id", "feature_timestamp"])
    entity_df = pd.DataFrame(
        {
            "customer_id": [1001, 1002, 1003, 1004],
            "event_timestamp": [
                snapshot_time(PRIOR) - timedelta(days=1),  # before any snapshot: nothing may leak from the future
                snapshot_time(PRIOR) + timedelta(days=30),  # between snapshots: the PRIOR row, not the AS_OF one
                snapshot_time(AS_OF),
                snapshot_time(PRIOR),
            ],
        }
    )
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    out = FeastHook().historical_features(entity_df, FEATURE_REFS).set_index("customer_id")
    assert len(out) == 4
    assert out.loc[1001, "total_purchases"] != out.loc[1001, "total_purchases"]  # NaN
    assert out.loc[1002, "total_purchases"] == rows.loc[(1002, snapshot_time(PRIOR)), "total_purchases"]
    assert out.loc[1003, "customer_lifetime_value"] == pytest.approx(
        rows.loc[(1003, snapshot_time(AS_OF)), "customer_lifetime_value"]
    )
    assert (
        out.loc[1004, "days_since_last_purchase"] == rows.loc[(1004, snapshot_time(PRIOR)), "days_since_last_purchase"]
    )


def test_historical_retrieval_of_an_unknown_feature_names_it(gold_metrics: pa.Table) -> None:
    register_operator(materialize=False).execute(run_context())
    entity_df = pd.DataFrame({"customer_id": [1001], "event_timestamp": [datetime.now(UTC)]})
    with pytest.raises(FeatureStoreError, match="no_such_feature"):
        FeastHook().historical_features(entity_df, ["customer_churn_features:no_such_feature"])


@pytest.mark.postgres
def test_sql_registry_in_postgres_and_redis_online_store(
    gold_metrics: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2
    import redis

    db = f"asgard_feast_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    project = f"asgard_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_PROD",
        json.dumps(
            {
                "conn_type": "asgard_feast",
                "host": "127.0.0.1",
                "port": 6379,
                "extra": {"project": project, "registry": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"},
            }
        ),
    )
    try:
        result = register_operator(feast_conn_id="feast_prod").execute(run_context())
        assert result["project"] == project
        assert result["materialized_rows"] == 2000
        hook = FeastHook("feast_prod")
        assert [v.name for v in hook.get_store().list_feature_views()] == ["customer_churn_features"]
        online = hook.online_features(FEATURE_REFS[:1], [{"customer_id": 1001}])
        expected = gold_metrics.filter(pa.compute.equal(gold_metrics["customer_id"], 1001)).to_pylist()[-1]
        assert online["total_purchases"] == [expected["total_purchases"]]
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(f"*{project}*"):
            client.delete(key)
        # the registry's pooled connections must go before the database can be dropped
        admin.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        )
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def _series_rows(data: pa.Table, day: datetime) -> pd.DataFrame:
    frame = data.to_pandas()
    return frame[frame["feature_timestamp"] == day].set_index(["store_id", "sku_id"])


def test_a_composite_key_joins_training_sets_and_online_reads_on_both_columns(store_sku: pa.Table) -> None:
    series_register_operator().execute(run_context())
    hook, refs = FeastHook(), [f"{SERIES_VIEW}:{f['name']}" for f in SERIES_FEATURES]
    pairs = [(1, "sku7"), (2, "sku7"), (1, "sku8")]  # one SKU in two stores, two SKUs in one store
    entity_df = pd.DataFrame(pairs, columns=["store_id", "sku_id"])
    entity_df["event_timestamp"] = pd.Timestamp(snapshot_time(PRIOR) + timedelta(days=1), tz="UTC")
    out = hook.historical_features(entity_df, refs).set_index(["store_id", "sku_id"])
    prior = _series_rows(store_sku, snapshot_time(PRIOR))
    assert len(out) == 3
    for pair in pairs:
        assert out.loc[pair, "units_last_7d"] == pytest.approx(prior.loc[pair, "units_last_7d"])
        assert out.loc[pair, "price"] == pytest.approx(prior.loc[pair, "price"])
    assert prior.loc[(1, "sku7"), "price"] != prior.loc[(2, "sku7"), "price"], "the fixture tells the pairs apart"

    rows = [{"store_id": s, "sku_id": k} for s, k in [*pairs, (9, "sku7")]]
    online = hook.online_features(refs, rows)
    latest = _series_rows(store_sku, snapshot_time(AS_OF))
    assert online["price"][:3] == pytest.approx([latest.loc[pair, "price"] for pair in pairs])
    assert online["price"][3] is None, "store 9 has no sku7"
