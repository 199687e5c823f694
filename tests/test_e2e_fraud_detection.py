"""The fraud detection example pipeline (config + SQL + dbt + training script only), end to end through dag.test()."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 11, 11)
SCALE = 0.15  # 300 cards, about 9,000 transactions
LABEL_DELAY_DAYS = 7
WARMUP_DAYS = 30
#: Column the predict stage writes the probability to.
PROBABILITY = "fraud_probability"


@pytest.fixture
def sources(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The card register and the payment processor, as SQLite files."""
    from asgard_demo.fraud import generate

    out = asgard_home / "sources" / "fraud"
    manifest = generate(out, as_of=AS_OF, scale=SCALE, seed=42)
    for conn_id, name in (("ASGARD_CARDS_DB", "cards.db"), ("ASGARD_PAYMENTS_DB", "payments.db")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", json.dumps({"conn_type": "sqlite", "host": str(out / name)}))
    return manifest


def _run_dag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "fraud_detection.py"), safe_mode=False)
    assert bag.import_errors == {}
    # 23:00 UTC, as scheduled: the run scores the transactions of AS_OF.
    return bag.dags["fraud_detection"].test(logical_date=datetime(AS_OF.year, AS_OF.month, AS_OF.day, 23, tzinfo=UTC))


def _windows(silver):
    """txn_count_1h, txn_count_24h and is_new_merchant recomputed per card with pandas, independently of Spark."""
    import numpy as np
    import pandas as pd

    frame = silver.sort_values(["card_id", "transaction_ts", "transaction_id"])
    out = []
    for _, card in frame.groupby("card_id", sort=False):
        s = ((card["transaction_ts"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_numpy()
        earlier = np.searchsorted(s, s, side="left")  # rows strictly before each one (windows end 1 s before)
        hour = earlier - np.searchsorted(s, s - 3600, side="left")
        day = earlier - np.searchsorted(s, s - 86400, side="left")
        new = ~card["merchant_id"].duplicated()
        out.append(pd.DataFrame({"transaction_id": card["transaction_id"], "h": hour, "d": day, "new": new}))
    return pd.concat(out).set_index("transaction_id")


@pytest.mark.e2e
@pytest.mark.spark
def test_fraud_detection_pipeline_end_to_end(airflow_db: Path, sources: dict) -> None:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.hooks.mlflow import MLflowHook

    run = _run_dag()
    assert run.state == "success"
    hook = IcebergHook()

    # Bronze holds every source row, and only the listed columns of the card register (no cardholder name).
    cards = hook.load_table("bronze.cards").scan().to_arrow()
    assert cards.num_rows == sources["cards"]
    assert "cardholder_name" not in cards.column_names
    assert hook.load_table("bronze.chargebacks").scan().to_arrow().num_rows == sources["chargebacks"]
    bronze = hook.load_table("bronze.card_transactions").scan().to_arrow().num_rows
    assert bronze == sources["card_transactions"]

    # Silver + quarantine reconcile with Bronze; each planted defect is quarantined under its own reason.
    silver = hook.load_table("silver.card_transactions").scan().to_pandas()
    quarantine = hook.load_table("silver.card_transactions_quarantine").scan().to_pandas()
    assert len(silver) + len(quarantine) == bronze
    assert len(silver) == sources["clean_transactions"]
    assert quarantine["_rejected_reason"].value_counts().to_dict() == sources["dirty"]["card_transactions"]
    assert silver["transaction_id"].is_unique

    # The rolling windows over each card's history match a pandas recomputation.
    expected = _windows(silver)
    rows = silver.set_index("transaction_id").loc[expected.index]
    assert (rows["txn_count_1h"] == expected["h"]).all()
    assert (rows["txn_count_24h"] == expected["d"]).all()
    assert (rows["is_new_merchant"] == expected["new"].astype(int)).all()

    # Gold: every transaction after the warm-up up to AS_OF; labels only where chargebacks had time to arrive.
    gold = hook.load_table("gold.transaction_features").scan().to_pandas()
    first_day = silver["transaction_ts"].min().date()
    kept = silver["transaction_ts"].dt.date >= first_day + timedelta(days=WARMUP_DAYS)
    assert set(gold["transaction_id"]) == set(silver.loc[kept, "transaction_id"])
    recent = gold["transaction_date"] >= AS_OF - timedelta(days=LABEL_DELAY_DAYS)
    assert gold.loc[recent, "is_fraud"].isna().all() and gold.loc[~recent, "is_fraud"].notna().all()
    assert 0.005 < gold.loc[~recent, "is_fraud"].mean() < 0.03

    # The champion clears the configured floor and beats the single "amount far above the card's mean" rule.
    client = MLflowHook().client()
    champion = client.get_model_version_by_alias("card_fraud_classifier", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["roc_auc"] >= 0.85
    assert metrics["roc_auc"] > metrics["baseline_roc_auc_amount_ratio"]

    # scope new_events: every transaction of the run's data interval (the 24 h before 23:00 on AS_OF) is scored
    # exactly once, and the day's frauds rank far above the rest.
    predictions = hook.load_table("gold.transaction_fraud_predictions").scan().to_pandas()
    end = pd.Timestamp(datetime(AS_OF.year, AS_OF.month, AS_OF.day, 23))
    today = gold[(gold["feature_timestamp"] >= end - pd.Timedelta(days=1)) & (gold["feature_timestamp"] < end)]
    assert len(predictions) == len(today) > 0
    assert set(predictions["transaction_id"]) == set(today["transaction_id"])
    assert predictions["transaction_id"].is_unique
    assert predictions[PROBABILITY].between(0, 1).all()
    assert set(predictions["model_version"].astype(str)) == {str(champion.version)}
    truth = predictions["transaction_id"].isin(sources["scored_fraud_ids"]).astype(int)
    assert truth.sum() == len(sources["scored_fraud_ids"]) > 0
    assert roc_auc_score(truth, predictions[PROBABILITY]) > 0.85
    high = predictions["risk_level"] == "high"
    assert pd.Series(truth[high]).mean() > 0.5, "most high-risk alerts are real frauds"
