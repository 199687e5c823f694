"""The Feast engine: definitions are checked against the Iceberg table before anything is applied."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pyarrow as pa
import pytest

from asgard_provider.engines import feast_repo
from asgard_provider.engines.feast_repo import FeatureViewSpec
from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook

from ..conftest import (
    AS_OF,
    FEATURE_VIEW,
    FEATURES,
    SERIES_FEATURES,
    SERIES_KEYS,
    SERIES_TABLE,
    SERIES_VIEW,
    customer_metrics,
)


def _spec(**overrides: object) -> FeatureViewSpec:
    values: dict[str, object] = {
        "feature_view": FEATURE_VIEW,
        "entity": "customer",
        "join_keys": ["customer_id"],
        "source_table": "gold.customer_metrics",
        "timestamp_field": "feature_timestamp",
        "features": FEATURES,
        "feature_service": "customer_churn_service",
        **overrides,
    }
    return FeatureViewSpec(**values)  # type: ignore[arg-type]


def _register(spec: FeatureViewSpec, until: datetime | None = None) -> feast_repo.Registration:
    iceberg = IcebergHook()
    return feast_repo.register(FeastHook(), iceberg.catalog, iceberg.settings, spec, until)


def test_register_returns_columns_and_the_materialized_window(gold_metrics: pa.Table) -> None:
    until = datetime.combine(AS_OF, time(6), tzinfo=UTC)
    done = _register(_spec(), until)
    assert done.project == FeastHook().project
    assert done.columns["customer_id"] == "long" and done.columns["feature_timestamp"] == "timestamp"
    assert done.materialized is not None and done.materialized.rows == 2000 and done.materialized.end == until
    assert done.view_fields()[:2] == [("customer_id", "long"), ("total_purchases", "int64")]
    assert done.as_dict()["materialized_until"] == until.isoformat()


def test_missing_feature_column_is_named_and_nothing_is_registered(gold_metrics: pa.Table) -> None:
    features = [{"name": "total_purchases", "dtype": "int64"}, {"name": "lifetime_valu", "dtype": "float64"}]
    with pytest.raises(FeatureStoreError, match=r"'lifetime_valu' is missing") as err:
        _register(_spec(features=features))
    assert "gold.customer_metrics" in str(err.value)
    assert FeastHook().get_store().list_feature_views() == []


def test_mistyped_feature_and_missing_timestamp_are_reported_together(asgard_home: object) -> None:
    IcebergHook().write("gold.customer_metrics", [customer_metrics(50).drop(["feature_timestamp"])])
    with pytest.raises(FeatureStoreError) as err:
        _register(_spec(features=[{"name": "country", "dtype": "int64"}]))
    message = str(err.value)
    assert "'feature_timestamp' is missing" in message
    assert "'country' has type string, which cannot hold dtype int64" in message


def test_unknown_dtype_is_rejected(gold_metrics: pa.Table) -> None:
    with pytest.raises(FeatureStoreError, match="unknown feature dtype 'decimal'"):
        _register(_spec(features=[{"name": "total_purchases", "dtype": "decimal"}]))


def test_materialize_needs_a_registered_view(asgard_home: object) -> None:
    with pytest.raises(FeatureStoreError, match=r"customer_churn_features.*not registered.*register_features"):
        feast_repo.check_registered(FeastHook(), FEATURE_VIEW)


def _series_spec(**overrides: object) -> FeatureViewSpec:
    values: dict[str, object] = {
        "feature_view": SERIES_VIEW,
        "entity": "series",
        "join_keys": SERIES_KEYS,
        "source_table": SERIES_TABLE,
        "timestamp_field": "feature_timestamp",
        "features": SERIES_FEATURES,
        **overrides,
    }
    return FeatureViewSpec(**values)  # type: ignore[arg-type]


def test_composite_key_is_one_entity_per_column_and_counts_key_pairs(store_sku: pa.Table) -> None:
    until = datetime.combine(AS_OF, time(6), tzinfo=UTC)
    done = _register(_series_spec(), until)
    store = FeastHook().get_store()
    view = store.get_feature_view(SERIES_VIEW)
    assert [(c.name, str(c.dtype)) for c in view.entity_columns] == [("store_id", "Int64"), ("sku_id", "String")]
    assert sorted(view.entities) == ["series_sku_id", "series_store_id"]
    assert store.get_entity("series_store_id").join_key == "store_id"
    assert store.get_entity("series_sku_id").join_key == "sku_id"
    assert [f.name for f in view.features] == [f["name"] for f in SERIES_FEATURES]
    # 4 stores x 30 SKUs: the count is of (store_id, sku_id) pairs, not of either column alone (4 or 30).
    assert done.materialized is not None and done.materialized.rows == 120
    assert done.view_fields()[:3] == [("store_id", "long"), ("sku_id", "string"), ("units_last_7d", "float64")]


def test_missing_and_untyped_key_columns_are_named(store_sku: pa.Table) -> None:
    with pytest.raises(FeatureStoreError, match=r"join key column 'region_id' is missing") as err:
        _register(_series_spec(join_keys=["store_id", "region_id"]))
    assert "store_sku_metrics" in str(err.value) and "sku_id" in str(err.value)
    with pytest.raises(FeatureStoreError, match=r"join key column 'price' has type double; a key is one of int"):
        _register(_series_spec(join_keys=["store_id", "price"]))
    assert FeastHook().get_store().list_feature_views() == []


def test_a_feature_service_spans_the_registered_views_before_its_own(gold_metrics: pa.Table) -> None:
    _register(_spec(feature_service=None))
    second = [{"name": "purchase_frequency", "dtype": "float64"}]
    _register(_spec(feature_view="customer_value", features=second, service_views=(FEATURE_VIEW,)))
    service = FeastHook().get_store().get_feature_service("customer_churn_service")
    projections = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    assert projections == {FEATURE_VIEW: [f["name"] for f in FEATURES], "customer_value": ["purchase_frequency"]}


def test_a_feature_service_over_an_unregistered_view_names_it(gold_metrics: pa.Table) -> None:
    with pytest.raises(FeatureStoreError, match=r"spans feature view 'not_yet'.*not registered.*register it first"):
        _register(_spec(service_views=("not_yet",)))
