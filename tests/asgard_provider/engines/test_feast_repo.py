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

from ..conftest import AS_OF, FEATURE_VIEW, FEATURES, customer_metrics


def _spec(**overrides: object) -> FeatureViewSpec:
    values: dict[str, object] = {
        "feature_view": FEATURE_VIEW,
        "entity": "customer",
        "join_key": "customer_id",
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
