"""The customer value example pipeline (config + SQL + dbt + training script only), end to end through dag.test()."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 11, 11)
HORIZON = 90
SCALE = {"customers": 6_000, "transactions": 72_000, "tickets": 50}


@pytest.fixture
def sources(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The churn demo's customer database and transaction system, as SQLite files."""
    from asgard_demo.data import generate

    out = asgard_home / "sources"
    manifest = generate(out, as_of=AS_OF, seed=11, **SCALE)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_CUSTOMERS_DB", json.dumps({"conn_type": "sqlite", "host": str(out / "customers.db")})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_TRANSACTIONS_DB",
        json.dumps({"conn_type": "sqlite", "host": str(out / "transactions.db")}),
    )
    return manifest


def _run_dag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "customer_value.py"), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags["customer_value"].test(logical_date=datetime(AS_OF.year, AS_OF.month, AS_OF.day, 7, tzinfo=UTC))


def _expected_features(sales, snapshot: date):
    """Features of one snapshot recomputed with pandas from Silver, independently of the dbt model."""
    import pandas as pd

    day = pd.Timestamp(snapshot)
    before = sales[sales["transaction_date"] < day]
    recent = before[before["transaction_date"] >= day - pd.Timedelta(days=90)]
    out = before.groupby("customer_id").agg(
        lifetime_orders=("amount", "size"), last=("transaction_date", "max"), spend=("amount", "sum")
    )
    out["orders_90d"] = recent.groupby("customer_id").size().reindex(out.index, fill_value=0)
    out["spend_90d"] = recent.groupby("customer_id")["amount"].sum().reindex(out.index, fill_value=0.0)
    out["days_since_last_purchase"] = (day - out["last"]).dt.days
    return out


@pytest.mark.e2e
@pytest.mark.spark
def test_customer_value_pipeline_end_to_end(airflow_db: Path, sources: dict, asgard_home: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.hooks.mlflow import MLflowHook

    run = _run_dag()
    assert run.state == "success"
    hook = IcebergHook()

    # Bronze holds every source row; Silver + quarantine reconcile with Bronze.
    assert hook.load_table("bronze.retail_customers").scan().to_arrow().num_rows == sources["customers"]
    bronze = hook.load_table("bronze.retail_transactions").scan().to_arrow().num_rows
    assert bronze == sources["transactions"]
    sales = hook.load_table("silver.retail_sales").scan().to_pandas()
    quarantine = hook.load_table("silver.retail_sales_quarantine").scan().to_pandas()
    assert len(sales) + len(quarantine) == bronze
    assert len(quarantine) == sum(sources["dirty"]["transactions"].values())
    assert sales["transaction_id"].is_unique and sales["registration_date"].notna().all()

    # Gold: the labelled snapshot (as_of - horizon) and the scored one (as_of), features recomputed independently.
    gold = hook.load_table("gold.customer_value_features").scan().to_pandas()
    assert set(gold["snapshot_date"]) == {AS_OF - timedelta(days=HORIZON), AS_OF}
    sales["transaction_date"] = pd.to_datetime(sales["transaction_date"])
    sales["amount"] = sales["amount"].astype("float64")
    for snapshot in (AS_OF - timedelta(days=HORIZON), AS_OF):
        rows = gold[gold["snapshot_date"] == snapshot].set_index("customer_id").sort_index()
        expected = _expected_features(sales, snapshot).sort_index()
        assert list(rows.index) == list(expected.index)
        assert (rows["orders_90d"] == expected["orders_90d"]).all()
        assert (rows["lifetime_orders"] == expected["lifetime_orders"]).all()
        assert (rows["days_since_last_purchase"] == expected["days_since_last_purchase"]).all()
        assert (rows["spend_90d"] - expected["spend_90d"]).abs().max() < 1e-6
    labelled = gold[gold["snapshot_date"] == AS_OF - timedelta(days=HORIZON)]
    assert gold.loc[gold["snapshot_date"] == AS_OF, "high_value"].isna().all()
    assert 0.2 <= labelled["high_value"].mean() <= 0.3, "top quarter by future spend"
    future = sales[
        (sales["transaction_date"] >= pd.Timestamp(AS_OF - timedelta(days=HORIZON)))
        & (sales["transaction_date"] < pd.Timestamp(AS_OF))
    ]
    spend = future.groupby("customer_id")["amount"].sum().reindex(labelled["customer_id"], fill_value=0.0)
    assert (labelled.set_index("customer_id")["future_spend"] - spend).abs().max() < 1e-6

    # The champion beats the naive "last quarter's spend" ranking on held-out customers.
    client = MLflowHook().client()
    champion = client.get_model_version_by_alias("customer_value_classifier", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["roc_auc"] >= 0.8
    assert metrics["roc_auc"] > metrics["baseline_roc_auc_spend_90d"]

    # Every customer of the as_of snapshot is scored exactly once, by the champion.
    latest = gold[gold["snapshot_date"] == AS_OF]
    predictions = hook.load_table("gold.customer_value_predictions").scan().to_pandas()
    assert len(predictions) == len(latest) > 0
    assert set(predictions["customer_id"]) == set(latest["customer_id"])
    assert predictions["customer_id"].is_unique
    assert predictions["high_value_probability"].between(0, 1).all()
    assert set(predictions["model_version"].astype(str)) == {str(champion.version)}
    # Customers predicted high value spent more recently than the others (the model ranks by value, not at random).
    scored = predictions.merge(latest[["customer_id", "spend_90d"]], on="customer_id")
    top = scored["high_value_probability"] >= scored["high_value_probability"].quantile(0.75)
    assert scored.loc[top, "spend_90d"].mean() > 2 * scored.loc[~top, "spend_90d"].mean()

    # The export stage wrote the scored date's predictions as Parquet files, listed in _SUCCESS, for other tools.
    folder = asgard_home / "exports" / "customer_value_predictions" / f"as_of_date={AS_OF}"
    manifest = json.loads((folder / "_SUCCESS").read_text())
    current = hook.load_table("gold.customer_value_predictions").current_snapshot().snapshot_id
    assert (manifest["snapshot_id"], manifest["rows"]) == (current, len(predictions))
    exported = pq.ParquetDataset(folder).read().to_pandas()
    assert list(exported.columns) == [
        "customer_id",
        "high_value_probability",
        "risk_level",
        "model_version",
        "as_of_date",
    ]
    both = exported.merge(predictions, on="customer_id", suffixes=("", "_table"))
    assert len(both) == len(exported) == len(predictions)
    assert (both["high_value_probability"] == both["high_value_probability_table"]).all()
