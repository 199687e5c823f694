"""Bounded feature reads: streamed materialization and the DuckDB point-in-time join agree with Feast's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from asgard_provider.engines import feast_repo
from asgard_provider.engines.feast_repo import FeatureViewSpec
from asgard_provider.engines.feature_batches import PointInTimeJoin, latest_rows, view_sources
from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook

TABLE = "gold.tiny_metrics"
VIEW = "tiny_features"
FEATURES = [{"name": "spend", "dtype": "float64"}, {"name": "visits", "dtype": "int64"}]
REFS = [f"{VIEW}:spend", f"{VIEW}:visits"]
DAY = datetime(2025, 11, 1)
END = datetime(2025, 11, 11, 6, tzinfo=UTC)
TTL_DAYS = 5


def _rows() -> pa.Table:
    """Ten rows of four customers over ten days; customer 4's only row is older than the TTL window."""
    keys = [1, 1, 1, 2, 2, 3, 3, 3, 3, 4]
    days = [9, 3, 7, 8, 9, 6, 10, 2, 8, 1]
    return pa.table(
        {
            "customer_id": pa.array(keys, pa.int64()),
            "feature_timestamp": pa.array([DAY + timedelta(days=d) for d in days], pa.timestamp("us")),
            "spend": pa.array([float(k * 100 + d) for k, d in zip(keys, days, strict=True)], pa.float64()),
            "visits": pa.array([k * 10 + d for k, d in zip(keys, days, strict=True)], pa.int64()),
        }
    )


def _spec() -> FeatureViewSpec:
    return FeatureViewSpec(VIEW, "tiny_customer", ["customer_id"], TABLE, "feature_timestamp", FEATURES, TTL_DAYS)


@pytest.fixture
def registered(asgard_home: Path) -> IcebergHook:
    iceberg = IcebergHook()
    iceberg.write(TABLE, [_rows()], mode="overwrite")
    feast_repo.register(FeastHook(), iceberg.catalog, iceberg.settings, _spec())
    return iceberg


def _online() -> dict[str, list[Any]]:
    store = FeastHook().get_store()
    rows = [{"customer_id": k} for k in (1, 2, 3, 4)]
    return dict(store.get_online_features(features=REFS, entity_rows=rows).to_dict())


def test_latest_rows_gives_each_key_s_latest_row_in_the_window_in_key_order(registered: IcebergHook) -> None:
    window = (END - timedelta(days=TTL_DAYS), END)
    batches = list(latest_rows(registered.catalog, TABLE, ["customer_id"], "feature_timestamp", ["spend"], window, 2))
    assert [b.num_rows for b in batches] == [2, 1]  # customers 1, 2 and 3; customer 4's row is before the window
    rows = pa.Table.from_batches(batches).to_pylist()  # in key order
    assert [(r["customer_id"], r["feature_timestamp"].day, r["spend"]) for r in rows] == [
        (1, 10, 109.0),
        (2, 10, 209.0),
        (3, 11, 310.0),
    ]
    with pytest.raises(FeatureStoreError, match="batch size must be positive"):
        next(latest_rows(registered.catalog, TABLE, ["customer_id"], "feature_timestamp", [], window, 0))


def test_materialize_in_batches_of_two_gives_feast_s_own_online_rows(registered: IcebergHook) -> None:
    done = feast_repo.materialize(FeastHook(), registered.catalog, _spec(), END, batch_rows=2)
    assert done.rows == 3
    batched = _online()
    assert batched["spend"] == [109.0, 209.0, 310.0, None] and batched["visits"] == [19, 29, 40, None]
    feast_repo.materialize(FeastHook(), registered.catalog, _spec(), END, batch_rows=1000)
    assert _online() == batched
    FeastHook().materialize(END - timedelta(days=TTL_DAYS), END, [VIEW])  # Feast's own materialization
    assert _online() == batched
    view = FeastHook().get_store().get_feature_view(VIEW)
    assert view.materialization_intervals[-1][1] == END


def _entities() -> pd.DataFrame:
    """Entity rows at several times: between feature rows, on one, before any, and past the TTL."""
    keys = [1, 1, 2, 3, 3, 4, 2, 1, 3, 5]
    days = [8, 9.5, 12, 6, 2.5, 7, 20, 2, 10, 9]
    return pd.DataFrame(
        {
            "customer_id": pd.array(keys, dtype="int64"),
            "event_timestamp": pd.to_datetime([DAY + timedelta(days=d) for d in days], utc=True),
            "__row": range(10),
        }
    )


def _join(batch: int) -> pd.DataFrame:
    iceberg = IcebergHook()
    views = view_sources(FeastHook().get_store(), REFS)
    entities = _entities()
    with PointInTimeJoin(iceberg.catalog, views, "__row", "event_timestamp") as join:
        parts = [join.fetch(entities.iloc[i : i + batch]) for i in range(0, len(entities), batch)]
    return pd.concat(parts).sort_values("__row").reset_index(drop=True)[["__row", "spend", "visits"]]


def test_point_in_time_join_in_batches_of_three_matches_feast_s_historical_retrieval(registered: IcebergHook) -> None:
    batched, whole = _join(3), _join(10)
    pd.testing.assert_frame_equal(batched, whole)
    feast = FeastHook().historical_features(_entities(), REFS)
    expected = feast.sort_values("__row").reset_index(drop=True)[["__row", "spend", "visits"]]
    pd.testing.assert_frame_equal(batched.astype("float64"), expected.astype("float64"))
    assert batched["spend"].tolist()[:4] == [107.0, 109.0, 209.0, 306.0]
    assert batched["spend"].isna().tolist()[4:8] == [False, True, True, True]  # 3@2.5 ok; 4: TTL; 2@20: TTL; 1@2


def test_unknown_view_or_feature_is_named(registered: IcebergHook) -> None:
    with pytest.raises(FeatureStoreError, match="'nope' is not registered"):
        view_sources(FeastHook().get_store(), ["nope:spend"])
    with pytest.raises(FeatureStoreError, match=r"tiny_features' has no feature.*colour"):
        view_sources(FeastHook().get_store(), [f"{VIEW}:colour"])
