"""The predict stage: score the latest feature snapshot with the registered model, with drift monitoring."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from asgard_provider.monitoring import monitoring_table
from asgard_provider.stages import pods
from asgard_provider.stages.base import AS_OF, Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.stages.features import FeaturesStage
from asgard_provider.stages.train import TrainStage

TASK = "batch_inference"


class PredictStage(StageModel):
    """Score every entity of the latest feature snapshot with the registered model."""

    output_table: TableName
    model_alias: str = "champion"
    thresholds: dict[Literal["high", "medium"], float] = {"high": 0.7, "medium": 0.4}
    batch_size: int = Field(default=50_000, gt=0)
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: pods.PodOnKubernetes | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PredictStage:
        high, medium = self.thresholds.get("high", 0.7), self.thresholds.get("medium", 0.4)
        if not 0 < medium < high < 1:
            raise ValueError(f"thresholds need 0 < medium < high < 1, got medium={medium}, high={high}")
        pods.needs_kubernetes(self)
        return self


def spec(stage: PredictStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the model and the feature source, writes predictions and monitoring."""
    reads = []
    if "train" in inputs:
        train: TrainStage = inputs["train"].config
        features: FeaturesStage = inputs["train"].inputs["features"].config
        reads = [Read(f"mlflow:{train.registered_model}@{stage.model_alias}"), Read(features.source_table)]
    return StageSpec(
        label=stage.output_table,
        tasks=(TASK,),
        reads=tuple(reads),
        writes=(
            Write(stage.output_table, f"{where}.output_table"),
            Write(
                monitoring_table(stage.output_table),
                f"{where}.output_table",
                f"monitoring table of {stage.output_table}",
            ),
        ),
    )


def build(node: Node, base: Path) -> Built:
    """Build the batch inference task; it publishes the predictions table."""
    from asgard_provider.assets import feature_view_asset, model_asset, table_asset
    from asgard_provider.operators.inference import BatchInferenceOperator

    stage: PredictStage = node.config
    train_node = node.inputs["train"]
    features: FeaturesStage = train_node.inputs["features"].config
    task = pods.run(
        BatchInferenceOperator,
        stage,
        publish_tables=[stage.output_table],
        task_id=TASK,
        model_name=train_node.config.registered_model,
        model_alias=stage.model_alias,
        feature_refs=features.feature_refs(),
        entity_table=features.source_table,
        entity_key=features.join_key,
        timestamp_field=features.timestamp_field,
        as_of=AS_OF,
        output_table=stage.output_table,
        thresholds=dict(stage.thresholds),
        batch_size=stage.batch_size,
    )
    task.inlets = [model_asset(train_node.config.registered_model), feature_view_asset(features.feature_view)]
    task.outlets = [table_asset(stage.output_table)]
    return Built(entry=task, exit=task)


KIND = StageKind(
    key="predict",
    model=PredictStage,
    spec=spec,
    build=build,
    needs={"train": "needs a 'train' stage (it scores with the model that stage registers)"},
)
