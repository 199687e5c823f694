"""The train stage: run a training script under include/training/ in an MLflow run and register its model."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from asgard_provider.paths import PathEscapeError, contained
from asgard_provider.stages import pods
from asgard_provider.stages.base import Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.stages.features import FeaturesStage, feature_view

TASK = "train_model"
#: Time the task has beyond the script's ``timeout_minutes``: reading features, registering, promoting.
TASK_MARGIN_MINUTES = 10


class TrainStage(StageModel):
    """Run a training script under include/training/ and register its model."""

    script: str
    experiment: str
    registered_model: str
    label_table: TableName
    label_column: str
    hyperparameters: dict[str, Any] = {}
    min_metrics: dict[str, float] = {}
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: pods.PodOnKubernetes | None = None
    timeout_minutes: int = Field(
        default=60, gt=0, le=10080, description="the script is killed after this many minutes (at most a week)"
    )

    @model_validator(mode="after")
    def _runner(self) -> TrainStage:
        pods.needs_kubernetes(self)
        return self


def model(stage: TrainStage) -> str:
    """Name the registered model as a resource of the pipeline graph (``mlflow:<model>``)."""
    return f"mlflow:{stage.registered_model}"


def _script_problems(stage: TrainStage, where: str, base: Path) -> tuple[str, ...]:
    try:
        script = contained(base / "training", stage.script, "include/training/")
    except PathEscapeError as exc:
        return (f"{where}.script: {exc}",)
    if not script.is_file():
        return (f"{where}.script: {script} does not exist (paths are relative to include/training/)",)
    return ()


def spec(stage: TrainStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the feature view and the label table, writes the registered model."""
    label = Read(stage.label_table, f"{where}.label_table", f"{stage.label_table} is not produced by an earlier stage")
    features = [Read(feature_view(inputs["features"].config))] if "features" in inputs else []
    return StageSpec(
        label=stage.script,
        tasks=(TASK,),
        reads=(*features, label),
        writes=(Write(model(stage)),),
        problems=_script_problems(stage, where, base),
    )


def build(node: Node, base: Path) -> Built:
    """Build the training task; it reads its training set from the stage's feature view."""
    from asgard_provider.assets import feature_view_asset, model_asset
    from asgard_provider.operators.mlflow import MLflowTrainOperator

    stage: TrainStage = node.config
    features: FeaturesStage = node.inputs["features"].config
    task = pods.run(
        MLflowTrainOperator,
        stage,
        task_id=TASK,
        script=stage.script,
        experiment_name=stage.experiment,
        registered_model_name=stage.registered_model,
        features=features.feature_refs(),
        feature_sources={features.feature_view: features.source_table},
        label_table=stage.label_table,
        label_column=stage.label_column,
        entity_key=features.join_key,
        timestamp_field=features.timestamp_field,
        hyperparameters="{{ params.hyperparameters | tojson }}",
        min_metrics=stage.min_metrics,
        timeout=stage.timeout_minutes * 60,  # the operator's own limit: its error names the script and the limit
        execution_timeout=timedelta(minutes=stage.timeout_minutes + TASK_MARGIN_MINUTES),
    )
    task.inlets = [feature_view_asset(features.feature_view)]
    task.outlets = [model_asset(stage.registered_model)]
    return Built(entry=task, exit=task)


def params(stage: TrainStage) -> dict[str, Any]:
    """``hyperparameters`` on the trigger form, defaulting to the config's."""
    from airflow.sdk import Param

    return {
        "hyperparameters": Param(
            dict(stage.hyperparameters),
            type="object",
            title="Model hyperparameters",
            description=f"Passed to include/training/{stage.script} as ctx.params.",
        )
    }


KIND = StageKind(
    key="train",
    model=TrainStage,
    spec=spec,
    build=build,
    needs={"features": "needs a 'features' stage to read its training set from"},
    params=params,
)
