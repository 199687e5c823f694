"""The DAGs of the shipped pipelines keep their tasks, edges and outlets (recorded before the stage refactor).

Deliberate changes since: a transform with checks writes on the run's branch, so its output and quarantine tables
are outlets of the checks task that publishes them, not of the transform (issue 15, write-audit-publish); and
customer_value exports its predictions as files after scoring (issue 12, the export stage kind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag
from asgard_provider.settings import asgard_home

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"

CHURN: dict[str, Any] = {
    "edges": [
        ("check_clean_customers", "gold.customer_metrics_model_build"),
        ("check_gold", "register_features"),
        ("clean_customers", "check_clean_customers"),
        ("clean_support_tickets", "gold.customer_metrics_model_build"),
        ("clean_transactions", "gold.customer_metrics_model_build"),
        ("gold.customer_metrics_model_build", "check_gold"),
        ("ingest_customers", "clean_customers"),
        ("ingest_support_tickets", "clean_support_tickets"),
        ("ingest_transactions", "clean_transactions"),
        ("register_features", "materialize_features"),
        ("register_features", "train_model"),
        ("train_model", "batch_inference"),
    ],
    "outlets": {
        "batch_inference": ["gold.customer_churn_predictions"],
        "register_features": ["feature_view:customer_churn_features"],
        "train_model": ["model:customer_churn_predictor"],
        "check_clean_customers": ["silver.customers_cleaned", "silver.customers_cleaned_quarantine"],
        "check_gold": ["gold.customer_metrics"],
        "clean_support_tickets": ["silver.support_tickets_cleaned", "silver.support_tickets_cleaned_quarantine"],
        "clean_transactions": ["silver.transactions_cleaned", "silver.transactions_cleaned_quarantine"],
        "ingest_customers": ["bronze.customers"],
        "ingest_support_tickets": ["bronze.support_tickets"],
        "ingest_transactions": ["bronze.transactions"],
    },
}

VALUE: dict[str, Any] = {
    "edges": [
        ("batch_inference", "export_value_predictions"),
        ("check_clean_retail_sales", "gold.customer_value_features_model_build"),
        ("check_gold", "register_features"),
        ("clean_retail_sales", "check_clean_retail_sales"),
        ("gold.customer_value_features_model_build", "check_gold"),
        ("ingest_retail_customers", "clean_retail_sales"),
        ("ingest_retail_transactions", "clean_retail_sales"),
        ("register_features", "materialize_features"),
        ("register_features", "train_model"),
        ("train_model", "batch_inference"),
    ],
    "outlets": {
        "batch_inference": ["gold.customer_value_predictions"],
        "export_value_predictions": ["files:${ASGARD_HOME}/exports/customer_value_predictions"],
        "register_features": ["feature_view:customer_value_features"],
        "train_model": ["model:customer_value_classifier"],
        "check_clean_retail_sales": ["silver.retail_sales", "silver.retail_sales_quarantine"],
        "check_gold": ["gold.customer_value_features"],
        "ingest_retail_customers": ["bronze.retail_customers"],
        "ingest_retail_transactions": ["bronze.retail_transactions"],
    },
}

PRODUCTION: dict[str, Any] = {
    "edges": [
        ("check_gold", "register_features"),
        ("clean_customers", "gold.customer_metrics_model_build"),
        ("clean_support_tickets", "gold.customer_metrics_model_build"),
        ("clean_transactions", "gold.customer_metrics_model_build"),
        ("gold.customer_metrics_model_build", "check_gold"),
        ("ingest_customers_trigger", "ingest_customers_wait"),
        ("ingest_customers_wait", "clean_customers"),
        ("ingest_support_tickets_trigger", "ingest_support_tickets_wait"),
        ("ingest_support_tickets_wait", "clean_support_tickets"),
        ("ingest_transactions_trigger", "ingest_transactions_wait"),
        ("ingest_transactions_wait", "clean_transactions"),
        ("register_features", "materialize_features"),
        ("register_features", "train_model"),
        ("train_model", "batch_inference"),
    ],
    "outlets": {
        "batch_inference": ["gold.customer_churn_predictions"],
        "register_features": ["feature_view:customer_churn_features"],
        "train_model": ["model:customer_churn_predictor"],
        "check_gold": ["gold.customer_metrics"],
        "clean_customers": ["silver.customers_cleaned", "silver.customers_cleaned_quarantine"],
        "clean_support_tickets": ["silver.support_tickets_cleaned", "silver.support_tickets_cleaned_quarantine"],
        "clean_transactions": ["silver.transactions_cleaned", "silver.transactions_cleaned_quarantine"],
        "ingest_customers_wait": ["bronze.customers"],
        "ingest_support_tickets_wait": ["bronze.support_tickets"],
        "ingest_transactions_wait": ["bronze.transactions"],
    },
}

#: One model per category (task groups train_model and batch_inference: each scoring task waits only for its own
#: training task), two feature views registered in turn.
DEMAND: dict[str, Any] = {
    "edges": [
        ("check_clean_daily_sales", "gold.demand_features_model_build"),
        ("check_gold", "register_sku_profile"),
        ("check_gold", "register_store_sku_demand"),
        ("clean_daily_sales", "check_clean_daily_sales"),
        ("clean_promotions", "gold.demand_features_model_build"),
        ("gold.demand_features_model_build", "check_gold"),
        ("ingest_daily_sales", "clean_daily_sales"),
        ("ingest_promotions", "clean_promotions"),
        ("ingest_stores", "clean_daily_sales"),
        ("register_sku_profile", "train_model.dry"),
        ("register_sku_profile", "train_model.fresh"),
        ("register_sku_profile", "train_model.household"),
        ("register_store_sku_demand", "register_sku_profile"),
        ("register_store_sku_demand", "train_model.dry"),
        ("register_store_sku_demand", "train_model.fresh"),
        ("register_store_sku_demand", "train_model.household"),
        ("train_model.dry", "batch_inference.dry"),
        ("train_model.fresh", "batch_inference.fresh"),
        ("train_model.household", "batch_inference.household"),
    ],
    "outlets": {
        "batch_inference.dry": ["gold.demand_forecasts_dry"],
        "batch_inference.fresh": ["gold.demand_forecasts_fresh"],
        "batch_inference.household": ["gold.demand_forecasts_household"],
        "check_clean_daily_sales": ["silver.daily_sales", "silver.daily_sales_quarantine"],
        "check_gold": ["gold.demand_features"],
        "clean_promotions": ["silver.promotions", "silver.promotions_quarantine"],
        "ingest_daily_sales": ["bronze.daily_sales"],
        "ingest_promotions": ["bronze.promotions"],
        "ingest_stores": ["bronze.stores"],
        "register_sku_profile": ["feature_view:sku_profile"],
        "register_store_sku_demand": ["feature_view:store_sku_demand"],
        "train_model.dry": ["model:demand_forecaster_dry"],
        "train_model.fresh": ["model:demand_forecaster_fresh"],
        "train_model.household": ["model:demand_forecaster_household"],
    },
}

CASES = {
    "customer_churn": (INCLUDE / "pipelines" / "customer_churn.yaml", CHURN),
    "customer_value": (INCLUDE / "pipelines" / "customer_value.yaml", VALUE),
    "demand_forecasting": (INCLUDE / "pipelines" / "demand_forecasting.yaml", DEMAND),
    "customer_churn_production": (REPO / "tests/fixtures/pipelines/good/customer_churn_production.yaml", PRODUCTION),
}


def _shape(path: Path) -> dict[str, Any]:
    dag = build_dag(load_pipeline_config(path, base_dir=INCLUDE), base_dir=INCLUDE, config_path=path)
    return {
        "tasks": sorted(dag.task_ids),
        "edges": sorted((t.task_id, down) for t in dag.tasks for down in t.downstream_task_ids),
        "outlets": {
            # An export's asset name holds the resolved $ASGARD_HOME, which differs per test run.
            t.task_id: sorted(a.name.replace(f"files:{asgard_home()}", "files:${ASGARD_HOME}") for a in t.outlets)
            for t in sorted(dag.tasks, key=lambda t: t.task_id)
            if t.outlets
        },
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_dag_keeps_its_tasks_edges_and_outlets(name: str) -> None:
    path, expected = CASES[name]
    tasks = sorted({task for edge in expected["edges"] for task in edge})
    assert _shape(path) == {"tasks": tasks, **expected}
