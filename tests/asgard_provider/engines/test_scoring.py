"""The scoring engine on real pyiceberg tables and real scikit-learn models: scopes, columns per task type."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from asgard_provider.engines.scoring import (
    ROW_ID,
    BatchScorer,
    ModelStamp,
    PredictionColumns,
    select_entities,
)
from asgard_provider.exceptions import InferenceError
from asgard_provider.training import EVENT_TIMESTAMP

DAY = date(2025, 11, 11)
TABLE = "gold.store_sku_events"


def _events() -> pa.Table:
    """Events of three (store, sku) pairs on two days; pair (1, 'b') has nothing on DAY."""
    rows = [
        (1, "a", datetime(2025, 11, 10, 9), 1.0),
        (1, "a", datetime(2025, 11, 11, 8), 2.0),
        (1, "a", datetime(2025, 11, 11, 17), 3.0),
        (1, "b", datetime(2025, 11, 10, 12), 4.0),
        (2, "a", datetime(2025, 11, 11, 23, 59), 5.0),
        (2, "a", datetime(2025, 11, 12, 0, 0), 6.0),  # the next day: after DAY and its interval
    ]
    store, sku, stamp, x = zip(*rows, strict=True)
    return pa.table(
        {
            "store_id": pa.array(store, pa.int64()),
            "sku_id": pa.array(sku, pa.string()),
            "event_ts": pa.array(stamp, pa.timestamp("us")),
            "x": pa.array(x, pa.float64()),
        }
    )


@pytest.fixture
def events(asgard_home: Path) -> Any:
    from asgard_provider.hooks.iceberg import IcebergHook

    IcebergHook().write(TABLE, [_events()], mode="overwrite")
    return IcebergHook().load_table(TABLE)


KEYS = ["store_id", "sku_id"]


def _selected(entities: Any) -> list[tuple[Any, ...]]:
    frame = entities.frame
    return [(r.store_id, r.sku_id, r.event_timestamp.to_pydatetime().replace(tzinfo=None)) for r in frame.itertuples()]


def test_latest_scope_takes_each_entity_s_latest_row_up_to_the_day(events: Any) -> None:
    entities = select_entities(events, KEYS, "event_ts", "latest", DAY)
    assert _selected(entities) == [
        (1, "a", datetime(2025, 11, 11, 17)),
        (1, "b", datetime(2025, 11, 10, 12)),
        (2, "a", datetime(2025, 11, 11, 23, 59)),
    ]
    assert [name for name, _ in entities.key_types] == KEYS
    assert list(entities.frame[ROW_ID]) == [0, 1, 2]


def test_new_events_scope_takes_the_rows_of_the_data_interval(events: Any) -> None:
    interval = (datetime(2025, 11, 11, tzinfo=UTC), datetime(2025, 11, 12, tzinfo=UTC))
    entities = select_entities(events, KEYS, "event_ts", "new_events", DAY, interval)
    assert _selected(entities) == [
        (1, "a", datetime(2025, 11, 11, 8)),
        (1, "a", datetime(2025, 11, 11, 17)),
        (2, "a", datetime(2025, 11, 11, 23, 59)),
    ]
    with pytest.raises(InferenceError, match="needs the run's data interval"):
        select_entities(events, KEYS, "event_ts", "new_events", DAY)


def test_all_scope_takes_every_row(events: Any) -> None:
    assert len(select_entities(events, KEYS, "event_ts", "all", DAY).frame) == 6


def test_unknown_scope_and_missing_column_are_named(events: Any) -> None:
    with pytest.raises(InferenceError, match=r"predict\.scope 'recent' is not one of latest, new_events, all"):
        select_entities(events, KEYS, "event_ts", "recent", DAY)
    with pytest.raises(InferenceError, match="series_id"):
        select_entities(events, ["series_id"], "event_ts", "all", DAY)


def _fetch_from(table: Any) -> Any:
    """Features of each requested row read from the Iceberg table itself (exact key and timestamp match)."""
    data = table.scan().to_pandas()
    data[EVENT_TIMESTAMP] = pd.to_datetime(data["event_ts"], utc=True)

    def fetch(chunk: pd.DataFrame) -> pd.DataFrame:
        return chunk.merge(data, on=[*KEYS, EVENT_TIMESTAMP], how="left")[[ROW_ID, "x"]]

    return fetch


def _score(events: Any, model: Any, columns: PredictionColumns, scope: str = "all") -> tuple[pa.Table, Any]:
    interval = (datetime(2025, 11, 11, tzinfo=UTC), datetime(2025, 11, 12, tzinfo=UTC))
    entities = select_entities(events, KEYS, "event_ts", scope, DAY, interval)
    stamp = ModelStamp("m", "3", DAY, datetime(2025, 11, 12, 6, tzinfo=UTC))
    scorer = BatchScorer(model, columns, ["x"], _fetch_from(events), stamp, keep_timestamp="event_ts")
    tally = scorer.tally({})
    return pa.concat_tables(scorer.batches(entities, 2, tally)), tally


def test_regression_writes_one_named_value_column(events: Any) -> None:
    x = np.arange(10, dtype="float64").reshape(-1, 1)
    model = LinearRegression().fit(pd.DataFrame(x, columns=["x"]), 3 * x.ravel() + 1)
    table, tally = _score(events, model, PredictionColumns("regression", value_column="units_next_7d"))
    assert table.schema.names == [
        "store_id",
        "sku_id",
        "event_ts",
        "units_next_7d",
        "model_name",
        "model_version",
        "scored_at",
        "as_of_date",
    ]
    data = table.to_pandas()
    np.testing.assert_allclose(data["units_next_7d"], 3 * _events()["x"].to_numpy() + 1)
    assert tally.rows == 6 and tally.stats["units_next_7d"].rows == 6


def test_multiclass_writes_a_class_and_a_probability_per_class(events: Any) -> None:
    x = pd.DataFrame({"x": np.linspace(0, 7, 60)})
    labels = np.where(x["x"] < 2.5, "Low", np.where(x["x"] < 4.5, "mid-range", "high"))
    model = LogisticRegression(max_iter=2000).fit(x, labels)
    table, _ = _score(events, model, PredictionColumns("multiclass_classification", class_column="segment"))
    # One column per class, in the model's class order ("Low" sorts first), names made safe.
    assert table.schema.names[3:7] == ["segment", "probability_low", "probability_high", "probability_mid_range"]
    data = table.to_pandas()
    np.testing.assert_allclose(data[["probability_high", "probability_low", "probability_mid_range"]].sum(axis=1), 1)
    expected = model.predict(pd.DataFrame({"x": _events()["x"].to_numpy()}))
    assert list(data["segment"]) == list(expected)
    assert "risk_level" not in table.schema.names


def test_binary_keeps_probability_decision_and_risk_level(events: Any) -> None:
    x = pd.DataFrame({"x": np.linspace(0, 7, 60)})
    model = LogisticRegression().fit(x, (x["x"] > 3.5).astype(int))
    columns = PredictionColumns(value_column="fraud_probability", class_column="is_fraud", thresholds=(0.8, 0.3))
    table, tally = _score(events, model, columns)
    assert table.schema.names[3:6] == ["fraud_probability", "is_fraud", "risk_level"]
    data = table.to_pandas()
    assert list(data["is_fraud"]) == [int(p >= 0.5) for p in data["fraud_probability"]]
    levels = ["high" if p >= 0.8 else "medium" if p >= 0.3 else "low" for p in data["fraud_probability"]]
    assert list(data["risk_level"]) == levels
    assert tally.levels["positive"] == int(data["is_fraud"].sum())


def test_a_model_that_does_not_fit_the_task_is_refused(events: Any) -> None:
    x = pd.DataFrame({"x": np.arange(5.0)})
    stamp = ModelStamp("m", "1", DAY, datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(InferenceError, match=r"m version 1: LinearRegression has no predict_proba.*train\.task"):
        BatchScorer(LinearRegression().fit(x, x["x"]), PredictionColumns(), ["x"], lambda c: c, stamp)
