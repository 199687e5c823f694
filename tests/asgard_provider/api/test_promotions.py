"""Promotion history from the real MLflow registry: a champion, then a weaker model kept as challenger."""

from __future__ import annotations

from typing import Any

import pytest

MODEL = "customer_churn_predictor"


def test_history_says_who_was_promoted_and_why(ran_pipeline: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from asgard_provider.api import create_app

    first, second = ran_pipeline["versions"]
    assert first["promoted"] and not second["promoted"], second["promotion_reason"]
    with TestClient(create_app(auth=False)) as client:
        response = client.get(f"/models/{MODEL}/promotions")
        missing = client.get("/models/nope/promotions")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["champion"] == first["model_version"] and data["challenger"] == second["model_version"]
    old, new = data["history"]
    assert [old["version"], new["version"]] == [first["model_version"], second["model_version"]]
    assert old["promoted"] is True and old["aliases"] == ["champion"] and old["compared_with_version"] is None
    assert old["reason"] == first["promotion_reason"] and old["gate_failures"] == []
    assert old["metrics"]["roc_auc"] == pytest.approx(first["metrics"]["roc_auc"])
    assert new["promoted"] is False and new["aliases"] == ["challenger"]
    assert new["compared_with_version"] == first["model_version"]
    assert new["reason"] == second["promotion_reason"] and new["gate_failures"] == second["gate_failures"]
    # Every metric of the task is scored on the holdout; the champion only on the compare metric.
    assert {"roc_auc", "accuracy", "log_loss"} <= {h["metric"] for h in new["holdout"]}
    [holdout] = [h for h in new["holdout"] if h["champion"] is not None]
    assert holdout["metric"] == "roc_auc" and holdout["new"] == pytest.approx(second["holdout"]["new"])
    assert holdout["champion"] == pytest.approx(second["holdout"]["champion"]) and holdout["new"] < holdout["champion"]
    assert missing.status_code == 404 and "no registered model 'nope'" in missing.text
