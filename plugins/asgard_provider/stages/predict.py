"""The predict stage: score entities (the scope's rows) with the registered model, with drift monitoring."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from asgard_provider.engines.monitoring import monitoring_table
from asgard_provider.engines.scoring import PredictionColumns, Scope
from asgard_provider.evaluation import BINARY, DEFAULT_RISK_THRESHOLDS, MULTICLASS
from asgard_provider.stages import pods
from asgard_provider.stages.base import AS_OF, Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.stages.features import FeaturesStage, feature_refs, feature_set
from asgard_provider.stages.train import Model, TrainStage, model

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
    whose timestamp falls in the run's data interval (e.g. each new transaction); `all` every row.
    A rerun replaces that date's predictions.

    Columns after the entity key (and, for `new_events`/`all`, the features' timestamp field), by the train
    stage's `task`: binary: `prediction_column` (probability of class 1, default `probability`),
    `class_column` (0/1) and `risk_level` from `thresholds`; multiclass: `class_column` (the predicted class)
    and one `<probability_prefix><class>` column per class; regression: `prediction_column` (default
    `prediction`). `thresholds` are for binary classification only.

    After a train stage with a `partition`, each model scores its own rows (those holding its value) into its
    own table `<output_table>_<value>` (with its own `_monitoring` table), written by task `<task>.<value>`
    of a task group: each table's drift is measured against its own model's training set.
    """

    name: str | None = Field(
        default=None, description="task id (default batch_inference); several predict stages need one each"
    )
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


def scored(stage: PredictStage, train: TrainStage) -> list[tuple[str, str, Model]]:
    """(task id, output table, model) of every model ``train`` registers, one table each with a partition."""
    task = stage.name or TASK
    if train.partition is None:
        return [(task, stage.output_table, train.models()[0])]
    return [(f"{task}.{m.value}", f"{stage.output_table}_{m.value}", m) for m in train.models()]


def _writes(table: str, key: str, model: str | None) -> tuple[Write, Write]:
    return (
        Write(table, key, f"predictions of {model}" if model else ""),
        Write(monitoring_table(table), key, f"monitoring table of {table}"),
    )


def spec(stage: PredictStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the model and the feature source, writes predictions and monitoring."""
    reads: list[Read] = []
    problems: list[str] = []
    outputs: list[tuple[str, str, str | None]] = [(stage.name or TASK, stage.output_table, None)]
    if "train" in inputs and "features" in inputs["train"].inputs:
        train: TrainStage = inputs["train"].config
        entity: FeaturesStage = feature_set(inputs["train"].inputs["features"])[0].config
        models = scored(stage, train)
        reads = [*(Read(f"{model(m.registered_model)}@{stage.model_alias}") for _, _, m in models)]
        reads.append(Read(entity.source_table))
        outputs = [(task, table, m.value and m.registered_model) for task, table, m in models]
        problems = _task_problems(stage, train, where)
    return StageSpec(
        label=stage.output_table,
        tasks=tuple(task for task, _, _ in outputs),
        reads=tuple(reads),
        writes=tuple(w for _, table, model in outputs for w in _writes(table, f"{where}.output_table", model)),
        name=stage.name,
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
    """Build the batch inference task (a task group of one per model); each publishes its predictions table."""
    stage: PredictStage = node.config
    train: TrainStage = node.inputs["train"].config
    views = [view.config for view in feature_set(node.inputs["train"].inputs["features"])]
    models = scored(stage, train)
    if train.partition is None:
        task = _inference_task(stage, train, views, *models[0])
        return Built(entry=task, exit=task)
    from airflow.sdk import TaskGroup

    with TaskGroup(group_id=stage.name or TASK, tooltip=f"one predictions table per {train.partition.column}") as group:
        tasks = {
            model(one.registered_model): _inference_task(stage, train, views, task_id, table, one)
            for task_id, table, one in models
        }
    return Built(entry=group, exit=group, start=tasks)


def _inference_task(
    stage: PredictStage, train: TrainStage, views: list[FeaturesStage], task_id: str, table: str, one: Model
) -> Any:
    """One batch inference task: ``one``'s model scores its rows of the entity table into ``table``."""
    from asgard_provider.assets import feature_view_asset, model_asset, table_asset
    from asgard_provider.operators.inference import BatchInferenceOperator

    entity = views[0]
    kwargs: dict[str, Any] = {"row_filter": one.row_filter} if one.row_filter else {}
    task = pods.run(
        BatchInferenceOperator,
        stage,
        publish_tables=[table],
        task_id=task_id.rsplit(".", 1)[-1],  # inside the stage's task group with a partition
        model_name=one.registered_model,
        model_alias=stage.model_alias,
        feature_refs=feature_refs(views),
        feature_views=[view.view_source().to_dict() for view in views],
        entity_table=entity.source_table,
        entity_key=entity.keys,
        timestamp_field=entity.timestamp_field,
        as_of=AS_OF,
        scope=stage.scope,
        task=train.task,
        prediction_column=stage.prediction_column,
        class_column=stage.class_column,
        probability_prefix=stage.probability_prefix,
        output_table=table,
        thresholds=dict(stage.thresholds or DEFAULT_RISK_THRESHOLDS),
        batch_size=stage.batch_size,
        **kwargs,
    )
    task.inlets = [model_asset(one.registered_model), *(feature_view_asset(view.feature_view) for view in views)]
    task.outlets = [table_asset(table)]
    return task


KIND = StageKind(
    key="predict",
    model=PredictStage,
    spec=spec,
    build=build,
    needs={"train": "needs a 'train' stage (it scores with the model that stage registers)"},
)
