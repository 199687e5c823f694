"""The demand forecasting example (config + SQL + dbt + training script only), end to end through dag.test().

The retail_catalog DAG publishes gold.sku_profile first; demand_forecasting reads it in place as a feature view
beside its own, trains one model per category and forecasts every store x SKU with its category's model.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 11, 11)
SCALE = 0.3  # 6 stores x 27 SKUs x 120 days, about 19,500 daily sales rows
CATEGORIES = ("fresh", "dry", "household")
HORIZON_DAYS = 7
WARMUP_DAYS = 28
#: The wape ceiling of train.max_metrics.
MAX_WAPE = 0.35


@pytest.fixture
def sources(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The retailer's stores, catalog, daily sales and promotions, as one SQLite file."""
    from asgard_demo.demand import generate

    out = asgard_home / "sources" / "demand"
    manifest = generate(out, as_of=AS_OF, scale=SCALE, seed=42)
    conn = json.dumps({"conn_type": "sqlite", "host": str(out / "retail.db")})
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_RETAIL_DB", conn)
    return manifest


def _run(pipeline: str, hour: int) -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{pipeline}.py"), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags[pipeline].test(logical_date=datetime(AS_OF.year, AS_OF.month, AS_OF.day, hour, tzinfo=UTC))


def _label(silver):
    """units_next_7d recomputed with pandas: the units of the 7 days after each row's day, per store x SKU."""
    frame = silver.sort_values(["store_id", "sku_id", "sale_date"])
    grouped = frame.groupby(["store_id", "sku_id"])["units"]
    following = grouped.transform(
        lambda s: s[::-1].rolling(HORIZON_DAYS, min_periods=HORIZON_DAYS).sum()[::-1].shift(-1)
    )
    return frame.assign(expected=following).set_index(["store_id", "sku_id", "sale_date"])["expected"]


@pytest.mark.e2e
@pytest.mark.spark
def test_demand_forecasting_pipeline_end_to_end(airflow_db: Path, sources: dict) -> None:
    import numpy as np
    import pandas as pd

    from asgard_provider.hooks.feast import FeastHook
    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.hooks.mlflow import MLflowHook

    assert _run("retail_catalog", 2).state == "success"
    run = _run("demand_forecasting", 3)
    assert run.state == "success"
    hook = IcebergHook()

    # Silver + quarantine reconcile with Bronze; each planted defect is quarantined under its own reason.
    bronze = hook.load_table("bronze.daily_sales").scan().to_arrow().num_rows
    assert bronze == sources["daily_sales"]
    silver = hook.load_table("silver.daily_sales").scan().to_pandas()
    quarantine = hook.load_table("silver.daily_sales_quarantine").scan().to_pandas()
    assert len(silver) + len(quarantine) == bronze
    assert len(silver) == sources["clean_sales"]
    assert quarantine["_rejected_reason"].value_counts().to_dict() == sources["dirty"]["daily_sales"]

    # Gold: every day after the warm-up; the label is the next 7 days' units, NULL where they are not all known.
    gold = hook.load_table("gold.demand_features").scan().to_pandas()
    first_day = silver["sale_date"].min()
    assert gold["sale_date"].min() == first_day + timedelta(days=WARMUP_DAYS)
    assert gold["sale_date"].max() == AS_OF - timedelta(days=1)
    expected = _label(silver).loc[gold.set_index(["store_id", "sku_id", "sale_date"]).index]
    labelled = gold["units_next_7d"].notna().to_numpy()
    assert (gold["sale_date"][labelled] <= AS_OF - timedelta(days=HORIZON_DAYS + 1)).all()
    assert (~labelled).sum() == sources["scored_pairs"] * HORIZON_DAYS
    assert np.allclose(gold["units_next_7d"][labelled], expected.to_numpy()[labelled])

    # One feature service spans both views, one of them the other pipeline's table (registered, not copied).
    store = FeastHook().get_store()
    service = store.get_feature_service("demand_service")
    assert [p.name for p in service.feature_view_projections] == ["store_sku_demand", "sku_profile"]
    assert store.get_feature_view("sku_profile").tags["asgard.source_table"] == "gold.sku_profile"

    # One model per category: each trained on its own rows, gated on wape and better than "same as last week".
    client = MLflowHook().client()
    for category in CATEGORIES:
        champion = client.get_model_version_by_alias(f"demand_forecaster_{category}", "champion")
        data = client.get_run(champion.run_id).data
        rows = int(data.params["train_rows"])
        labelled_rows = int((gold.loc[labelled, "category"] == category).sum())
        assert 0.6 * labelled_rows < rows < labelled_rows, (category, rows, labelled_rows)
        assert data.metrics["wape"] <= MAX_WAPE
        assert data.metrics["wape"] < data.metrics["baseline_wape_last_7d"], category
        assert data.tags["asgard.registered_model"] == f"demand_forecaster_{category}"

    # Every store x SKU is forecast once, by its own category's model, into that category's table.
    latest = gold[gold["sale_date"] == AS_OF - timedelta(days=1)]
    forecast = []
    for category in CATEGORIES:
        table = hook.load_table(f"gold.demand_forecasts_{category}").scan().to_pandas()
        mine = latest[latest["category"] == category]
        assert len(table) == len(mine) > 0
        assert set(zip(table["store_id"], table["sku_id"], strict=True)) == set(
            zip(mine["store_id"], mine["sku_id"], strict=True)
        )
        assert set(table["model_name"]) == {f"demand_forecaster_{category}"}
        assert (table["units_next_7d"] >= 0).all()
        forecast.append(table)
    scored = pd.concat(forecast)
    assert len(scored) == sources["scored_pairs"]
    # The forecasts follow the level of each store x SKU: they rank pairs by their recent sales.
    joined = scored.merge(latest, on=["store_id", "sku_id"], suffixes=("", "_gold"))
    assert np.corrcoef(joined["units_next_7d"], joined["units_last_28d"])[0, 1] > 0.8
