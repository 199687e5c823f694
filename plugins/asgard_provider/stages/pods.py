"""``runner: kubernetes`` for the stages that run an operator's engine in its own pod (train, predict)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from asgard_provider.stages.base import StageModel


class PodOnKubernetes(StageModel):
    """Where a ``runner: kubernetes`` train/predict stage runs: one pod from ``image``."""

    image: str = Field(description="image holding Python and the asgard provider (and include/)")
    namespace: str = "asgard"
    service_account: str | None = None
    kubernetes_conn_id: str = "kubernetes_default"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    env_from: list[str] = Field(default=[], description="Kubernetes Secrets exposed as env (AIRFLOW_CONN_* etc.)")
    cpu: str = Field(default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field(default="2Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def needs_kubernetes(stage: Any) -> None:
    """Reject ``runner: kubernetes`` without a ``kubernetes:`` block."""
    if stage.runner == "kubernetes" and stage.kubernetes is None:
        raise ValueError("runner 'kubernetes' needs a 'kubernetes:' block with at least 'image'")


def run(operator: type[Any], stage: Any, publish_tables: list[str] | None = None, **kwargs: Any) -> Any:
    """Return the operator itself (``runner: local``) or a pod running its engine (``runner: kubernetes``)."""
    if stage.runner != "kubernetes":
        return operator(**kwargs)
    from asgard_provider.operators.kubernetes_pod import AsgardPodOperator

    task_id = kwargs.pop("task_id")
    timeout = kwargs.pop("execution_timeout", None)
    if timeout is not None:
        kwargs.setdefault("timeout", timeout.total_seconds())
    return AsgardPodOperator(
        task_id=task_id,
        task_operator=f"{operator.__module__}.{operator.__name__}",
        task_kwargs=kwargs,
        publish_tables=publish_tables or [],
        execution_timeout=timeout,
        **stage.kubernetes.model_dump(),
    )
