"""TrainingContext.training_frame: the bounded DuckDB point-in-time join gives Feast's own training set, no Feast.

Two views over two Iceberg tables: a composite-key view (store, SKU) with a five-day TTL and a SKU-only view.
Entity rows fall between feature rows, on one, before any and past the TTL. Feast's ``get_historical_features``
on the same rows (what ``training_frame`` called before) is the expected frame, dtypes and order included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from asgard_provider.engines import feast_repo, wap
from asgard_provider.engines.feast_repo import FeatureViewSpec
from asgard_provider.engines.feature_batches import ViewSource
from asgard_provider.exceptions import TrainingError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.training import EVENT_TIMESTAMP, TrainingContext

DAY = datetime(2025, 11, 1)
LABELS = "gold.frame_labels"
SERIES = "gold.frame_series"
SKUS = "gold.frame_skus"
TTL_DAYS = 5
SERIES_VIEW = FeatureViewSpec(
    "frame_series",
    "frame_series",
    ["store_id", "sku_id"],
    SERIES,
    "feature_timestamp",
    [{"name": "units", "dtype": "float64"}, {"name": "orders", "dtype": "int64"}],
    TTL_DAYS,
)
SKU_VIEW = FeatureViewSpec(
    "frame_skus", "frame_sku", ["sku_id"], SKUS, "valid_from", [{"name": "price", "dtype": "float64"}], 30
)
REFS = [*SERIES_VIEW.feature_refs(), *SKU_VIEW.feature_refs()]


def _series(bump: float = 0.0) -> pa.Table:
    """Rows of three (store, SKU) series; SKU "b" exists in two stores; series (2, "a") has one old row."""
    rows = [(1, "a", 1), (1, "a", 4), (1, "a", 8), (1, "b", 3), (1, "b", 9), (2, "b", 2), (2, "b", 6), (2, "a", 0)]
    return pa.table(
        {
            "store_id": pa.array([r[0] for r in rows], pa.int64()),
            "sku_id": pa.array([r[1] for r in rows], pa.string()),
            "feature_timestamp": pa.array([DAY + timedelta(days=r[2]) for r in rows], pa.timestamp("us")),
            "units": pa.array([r[0] * 100 + r[2] + bump for r in rows], pa.float64()),
            "orders": pa.array([r[0] * 10 + r[2] + int(bump) for r in rows], pa.int64()),
        }
    )


def _skus(bump: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "sku_id": pa.array(["a", "a", "b"], pa.string()),
            "valid_from": pa.array([DAY, DAY + timedelta(days=5), DAY + timedelta(days=2)], pa.timestamp("us")),
            "price": pa.array([1.5 + bump, 2.5 + bump, 9.0 + bump], pa.float64()),
        }
    )


def _labels() -> pa.Table:
    """Labelled rows between feature rows, on one, before any, past the TTL; one unlabelled row."""
    rows = [
        (1, "a", 5.5, 1),
        (1, "a", 8, 0),
        (1, "a", 0.5, 1),  # before any series row; a price exists (SKU "a" from day 0)
        (1, "b", 20, 0),  # series row of day 9 is past the five-day TTL
        (2, "b", 7, 1),
        (2, "a", 6, 0),  # its only row (day 0) is six days old: expired
        (2, "b", 2, None),
        (3, "c", 4, 1),  # unknown everywhere
    ]
    return pa.table(
        {
            "store_id": pa.array([r[0] for r in rows], pa.int64()),
            "sku_id": pa.array([r[1] for r in rows], pa.string()),
            "ts": pa.array([DAY + timedelta(days=r[2]) for r in rows], pa.timestamp("us")),
            "label": pa.array([r[3] for r in rows], pa.int32()),
        }
    )


def _views() -> list[dict[str, Any]]:
    """The views as the pipeline factory describes them (from config, not from the Feast registry)."""
    return [
        ViewSource(
            spec.feature_view,
            spec.source_table,
            tuple(spec.join_keys),
            spec.timestamp_field,
            timedelta(days=spec.ttl_days),
            tuple(f["name"] for f in spec.features),
        ).to_dict()
        for spec in (SERIES_VIEW, SKU_VIEW)
    ]


def _context(**overrides: Any) -> TrainingContext:
    values: dict[str, Any] = {
        "feast_repo_path": str(FeastHook().repo_path()),
        "features": REFS,
        "label_table": LABELS,
        "label_column": "label",
        "entity_key": "store_id",
        "entity_keys": ["store_id", "sku_id"],
        "timestamp_field": "ts",
        "catalog": IcebergHook().settings.as_dict(),
        "views": _views(),
    }
    return TrainingContext(**{**values, **overrides})


def _feast_frame(ctx: TrainingContext) -> pd.DataFrame:
    """What ``training_frame`` returned when it called Feast's historical retrieval."""
    frame = ctx.feature_store().get_historical_features(entity_df=ctx.entity_df(), features=ctx.features).to_df()
    return frame.sort_values([EVENT_TIMESTAMP, *ctx.keys], ignore_index=True)


@pytest.fixture
def registered(asgard_home: Path) -> IcebergHook:
    iceberg = IcebergHook()
    iceberg.write(SERIES, [_series()], mode="overwrite")
    iceberg.write(SKUS, [_skus()], mode="overwrite")
    iceberg.write(LABELS, [_labels()], mode="overwrite")
    for spec in (SERIES_VIEW, SKU_VIEW):
        feast_repo.register(FeastHook(), iceberg.catalog, iceberg.settings, spec)
    return iceberg


def test_the_training_frame_is_feast_s_historical_retrieval(registered: IcebergHook) -> None:
    ctx = _context()
    frame = ctx.training_frame()
    pd.testing.assert_frame_equal(frame, _feast_frame(ctx))
    assert list(frame.columns) == ["store_id", "sku_id", EVENT_TIMESTAMP, "label", "units", "orders", "price"]
    assert str(frame[EVENT_TIMESTAMP].dt.tz) == "UTC"
    by_row = frame.set_index(["store_id", "sku_id", frame[EVENT_TIMESTAMP].dt.day])
    assert by_row.loc[(1, "a", 6), "units"] == 104.0 and by_row.loc[(1, "a", 9), "units"] == 108.0  # on a row
    assert by_row.loc[(1, "a", 1), ["units", "price"]].tolist()[1] == 1.5  # no series row yet; a price
    assert pd.isna(by_row.loc[(1, "a", 1), "units"]) and pd.isna(by_row.loc[(1, "b", 21), "units"])  # TTL
    assert pd.isna(by_row.loc[(2, "a", 7), "units"]) and by_row.loc[(2, "b", 8), "units"] == 206.0
    assert frame[frame["store_id"] == 3][["units", "orders", "price"]].isna().all().all()
    # A context written without the views resolves them in the Feast registry: the same frame.
    pd.testing.assert_frame_equal(_context(views=[]).training_frame(), frame)


def test_a_pinned_training_frame_reads_each_view_at_its_snapshot(registered: IcebergHook) -> None:
    expected = _feast_frame(_context())
    pins = {
        view: wap.tag(registered.load_table(table), table, "release_1")
        for view, table in (("frame_series", SERIES), ("frame_skus", SKUS))
    }
    registered.write(SERIES, [_series(bump=1000.0)], mode="overwrite")
    registered.write(SKUS, [_skus(bump=1000.0)], mode="overwrite")

    pinned = _context(feature_snapshots=pins, as_of_tag="release_1").training_frame()

    pd.testing.assert_frame_equal(pinned, expected)
    current = _context().training_frame()
    assert (current["price"].dropna() > 1000).all() and (pinned["price"].dropna() < 1000).all()
    pd.testing.assert_frame_equal(current, _feast_frame(_context()))
    with pytest.raises(TrainingError, match=r"frame_skus have no pinned snapshot \(as_of_tag release_1\)"):
        _context(feature_snapshots={"frame_series": pins["frame_series"]}, as_of_tag="release_1").training_frame()


def test_errors_name_the_view_and_its_table(registered: IcebergHook) -> None:
    views = _views()
    views[1] = {**views[1], "table": "gold.frame_gone"}
    gone = r"frame_skus \(gold\.frame_gone\) failed: feature view 'frame_skus'.*gold\.frame_gone"
    with pytest.raises(TrainingError, match=gone):
        _context(views=views).training_frame()
    series = registered.load_table(SERIES).current_snapshot().snapshot_id
    with pytest.raises(TrainingError, match=r"view 'frame_skus': .*gold\.frame_skus at snapshot 123: no snapshot"):
        _context(feature_snapshots={"frame_series": series, "frame_skus": 123}).training_frame()
    with pytest.raises(TrainingError, match=r"'frame_skus:colour'.*no feature 'colour'"):
        _context(features=[*REFS, "frame_skus:colour"]).training_frame()
    with pytest.raises(TrainingError, match=r"view 'nope' is not among the described views"):
        _context(features=["nope:x"]).training_frame()


def test_the_training_frame_does_not_import_feast(registered: IcebergHook, tmp_path: Path) -> None:
    """A training script reads its frame without paying for Feast's import (typeguard-instrumented classes)."""
    path = _context().write(tmp_path / "ctx.json")
    code = (
        "import sys\n"
        "from asgard_provider.training import TrainingContext\n"
        f"frame = TrainingContext.from_file({str(path)!r}).training_frame()\n"
        "print(len(frame), sorted(m for m in sys.modules if m == 'feast' or m.startswith('feast.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split(maxsplit=1) == ["7", "[]\n"]
    assert json.loads(path.read_text())["views"] == _views()
