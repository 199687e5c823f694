"""A pipeline that has run, with the real engines: features, a champion, a weaker challenger, batch inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import AS_OF, FEATURE_REFS, run_context, train_operator

PREDICTIONS = "gold.customer_churn_predictions"


def batch_inference() -> dict[str, Any]:
    """Score AS_OF's snapshot with the champion, as the pipeline's batch_inference task does."""
    from asgard_provider.operators.inference import BatchInferenceOperator

    return BatchInferenceOperator(
        task_id="batch_inference",
        model_name="customer_churn_predictor",
        model_alias="champion",
        feature_refs=FEATURE_REFS,
        entity_table="gold.customer_metrics",
        entity_key="customer_id",
        timestamp_field="feature_timestamp",
        as_of=AS_OF.isoformat(),
        output_table=PREDICTIONS,
        thresholds={"high": 0.7, "medium": 0.4},
        batch_size=700,
    ).execute(run_context())


@pytest.fixture(scope="module")
def ran_pipeline(ml_home: Path) -> dict[str, Any]:
    """ml_home after training twice (the second, weaker model stays challenger) and one batch inference."""
    first = train_operator().execute(run_context())
    weak = train_operator(hyperparameters={"n_estimators": 1, "max_depth": 1}, min_metrics={})
    second = weak.execute(run_context(run_id="scheduled__weak"))
    return {"home": ml_home, "versions": [first, second], "inference": batch_inference()}
