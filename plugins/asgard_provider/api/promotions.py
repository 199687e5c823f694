"""A registered model's promotion history: each version, what it was compared with, and why it was (not) promoted.

Read from what the training task records in MLflow: the version's ``asgard.promoted``, ``asgard.promotion_reason``
and ``asgard.gate_failures`` tags, the run's ``asgard.compared_with_version`` tag and its ``holdout_<metric>`` /
``champion_holdout_<metric>`` metrics.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel

from asgard_provider.api.service import _mlflow, model_detail

_HOLDOUT = "holdout_"
_CHAMPION_HOLDOUT = "champion_holdout_"


class HoldoutComparison(BaseModel):
    """The new version and the champion of the time scored on the new run's holdout."""

    metric: str
    new: float
    champion: float | None


class PromotionEvent(BaseModel):
    """One registered version and the promotion decision taken when it was registered."""

    version: str
    created_at: str | None
    aliases: list[str]
    promoted: bool | None
    reason: str | None
    gate_failures: list[str]
    compared_with_version: str | None
    holdout: list[HoldoutComparison]
    metrics: dict[str, float]
    run_id: str | None


class PromotionHistory(BaseModel):
    """Every version oldest first; ``champion`` / ``challenger`` are the versions the aliases point at now."""

    name: str
    aliases: dict[str, str]
    champion: str | None
    challenger: str | None
    history: list[PromotionEvent]


def router(mlflow_conn_id: str | None = None) -> APIRouter:
    """Route ``GET /models/{name}/promotions``."""
    from asgard_provider.api.app import _ERRORS

    api = APIRouter(tags=["models"], responses={404: _ERRORS, 500: _ERRORS})

    @api.get("/models/{name}/promotions", response_model=PromotionHistory, summary="A model's promotion history")
    def promotions(name: str = PathParam(max_length=256)) -> PromotionHistory:
        """Each version oldest first with its metrics, the champion it was compared with, and the decision."""
        return promotion_history(name, mlflow_conn_id)

    return api


def promotion_history(name: str, mlflow_conn_id: str | None = None) -> PromotionHistory:
    """Build the history of ``name`` from the registry (404 through ``ModelNotFoundError`` if absent)."""
    detail = model_detail(name, mlflow_conn_id)
    client = _mlflow(mlflow_conn_id).client()
    history = [_event(client, version) for version in reversed(detail["versions"])]
    aliases = detail["aliases"]
    return PromotionHistory(
        name=name,
        aliases=aliases,
        champion=aliases.get("champion"),
        challenger=aliases.get("challenger"),
        history=history,
    )


def _event(client: Any, version: dict[str, Any]) -> PromotionEvent:
    tags, metrics = version["tags"], version["metrics"]
    run_tags = client.get_run(version["run_id"]).data.tags if version["run_id"] else {}
    promoted = tags.get("asgard.promoted")
    failures = tags.get("asgard.gate_failures") or ""
    holdout = [
        HoldoutComparison(metric=metric, new=value, champion=metrics.get(_CHAMPION_HOLDOUT + metric))
        for key, value in sorted(metrics.items())
        if key.startswith(_HOLDOUT) and (metric := key.removeprefix(_HOLDOUT))
    ]
    return PromotionEvent(
        version=version["version"],
        created_at=version["created_at"],
        aliases=version["aliases"],
        promoted=None if promoted is None else promoted == "true",
        reason=tags.get("asgard.promotion_reason"),
        gate_failures=[f for f in failures.split("; ") if f],
        compared_with_version=run_tags.get("asgard.compared_with_version"),
        holdout=holdout,
        metrics={k: v for k, v in metrics.items() if not k.startswith((_HOLDOUT, _CHAMPION_HOLDOUT))},
        run_id=version["run_id"],
    )
