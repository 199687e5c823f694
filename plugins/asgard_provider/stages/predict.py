"""The predict stage: score entities (the scope's rows) with the registered model, with drift monitoring."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from asgard_provider.engines.scoring import PredictionColumns, Scope
from asgard_provider.evaluation import BINARY, DEFAULT_RISK_THRESHOLDS, MULTICLASS
from asgard_provider.monitoring import monitoring_table
from asgard_provider.stages import pods
from asgard_provider.stages.base import AS_OF, Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.stages.features import FeaturesStage
from asgard_provider.stages.train import TrainStage

TASK = "batch_inference"
_COLUMN = re.compile(r"[a-z_][a-z0-9_]*\Z")


def _column(value: str) -> str:
    if not _COLUMN.match(value):
        raise ValueError(f"{value!r} is not a column name: use lowercase letters, digits and underscores")
    return value


ColumnName = Annotated[str, AfterValidator(_column)]
"""A column of the predictions table: lowercase letters, digits and underscores."""


class PredictStage(StageModel):
    """Score the rows `scope` selects with the registered model into `output_table`, partitioned by `as_of_date`.

    `scope` picks the rows of the features' source table: `latest` each entity's latest row at or before the
    run's date (one prediction per entity, e.g. a risk per account or demand per store and SKU); `new_events` every row
    whose timestamp falls in the run's data interval (e.g. each new transaction for fraud); `all` every row.
    A rerun replaces that date's predictions.

    Columns after the entity key (and, for `new_events`/`all`, the features' timestamp field), by the train
    stage's `task`: binary: `prediction_column` (probability of class 1, default `probability`),
    `class_column` (0/1) and `risk_level` from `thresholds`; multiclass: `class_column` (the predicted class)
    and one `<probability_prefix><class>` column per class; regression: `prediction_column` (default
    `prediction`). `thresholds` are for binary classification only.
    """

    output_table: TableName
    model_alias: str = "champion"
    scope: Scope = Field(
        default="latest",
        description="latest: each entity's latest row; new_events: rows in the run's data interval; all: every row",
    )
    prediction_column: ColumnName | None = Field(
        default=None,
        description="probability column (binary, default probability) or value column (regression, default prediction)",
    )
    class_column: ColumnName = Field(default="prediction", description="predicted class (classification tasks)")
    probability_prefix: ColumnName = Field(
        default="probability_", description="multiclass: one column <prefix><class> per class"
    )
    thresholds: dict[Literal["high", "medium"], float] | None = Field(
        default=None, description="risk-level cut-offs (binary classification only; default high 0.7, medium 0.4)"
    )
    batch_size: int = Field(default=50_000, gt=0)
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: pods.PodOnKubernetes | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PredictStage:
        cuts = self.thresholds or {}
        high, medium = cuts.get("high", 0.7), cuts.get("medium", 0.4)
        if not 0 < medium < high < 1:
            raise ValueError(f"thresholds need 0 < medium < high < 1, got medium={medium}, high={high}")
        pods.needs_kubernetes(self)
        return self


def spec(stage: PredictStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the model and the feature source, writes predictions and monitoring."""
    reads, problems = [], []
    if "train" in inputs:
        train: TrainStage = inputs["train"].config
        features: FeaturesStage = inputs["train"].inputs["features"].config
        reads = [Read(f"mlflow:{train.registered_model}@{stage.model_alias}"), Read(features.source_table)]
        problems = _task_problems(stage, train, where)
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
        problems=tuple(problems),
    )


def _task_problems(stage: PredictStage, train: TrainStage, where: str) -> list[str]:
    """Keys that do not fit the train stage's task type, and prediction columns that collide."""
    problems = [f"{where}: {p} (set other column names)" for p in columns(stage, train).problems()]
    if stage.thresholds is not None and train.task != BINARY:
        problems.append(f"{where}.thresholds: risk levels only exist for train.task {BINARY!r}, not {train.task!r}")
    if stage.prediction_column is not None and train.task == MULTICLASS:
        problems.append(
            f"{where}.prediction_column: train.task {MULTICLASS!r} writes class_column and one "
            "probability_prefix column per class"
        )
    return problems


def columns(stage: PredictStage, train: TrainStage) -> PredictionColumns:
    """How the stage names its prediction columns for the train stage's task type."""
    return PredictionColumns(
        task=train.task,
        value_column=stage.prediction_column,
        class_column=stage.class_column,
        probability_prefix=stage.probability_prefix,
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
        entity_key=features.keys,
        timestamp_field=features.timestamp_field,
        as_of=AS_OF,
        scope=stage.scope,
        task=train_node.config.task,
        prediction_column=stage.prediction_column,
        class_column=stage.class_column,
        probability_prefix=stage.probability_prefix,
        output_table=stage.output_table,
        thresholds=dict(stage.thresholds or DEFAULT_RISK_THRESHOLDS),
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
