"""The train stage: run a training script under include/training/ in an MLflow run and register its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from asgard_provider.evaluation import BINARY, DEFAULT_COMPARE_METRIC, TaskType, metric_problems
from asgard_provider.exceptions import PathEscapeError
from asgard_provider.paths import contained
from asgard_provider.stages import pods
from asgard_provider.stages.base import (
    NAME_RULE,
    Built,
    ColumnUse,
    Node,
    Read,
    StageKind,
    StageModel,
    StageSpec,
    TableName,
    Write,
    is_name,
)
from asgard_provider.stages.features import FeaturesStage, feature_refs, feature_set, feature_view, key_uses

TASK = "train_model"
#: Time the task has beyond the script's ``timeout_minutes``: reading features, registering, promoting.
TASK_MARGIN_MINUTES = 10
#: What an Iceberg tag name in ``as_of_tag`` may look like (as ``asgard tables tag`` accepts it).
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class HyperparameterBound(StageModel):
    """Bounds of one hyperparameter on the trigger form: a run asking for a value outside them is refused."""

    type: Literal["integer", "number"] = Field(default="number", description="JSON Schema type of the value")
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> HyperparameterBound:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        return self

    def problem(self, value: Any) -> str | None:
        """Say why ``value`` is outside the bounds (``None`` when it is inside)."""
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (self.type == "integer" and not float(value).is_integer()):
            return f"{value!r} is not a{'n integer' if self.type == 'integer' else ' number'}"
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum:g}"
        return None

    def json_schema(self) -> dict[str, Any]:
        """Return the bound as a JSON Schema property, which Airflow validates a run's params against."""
        schema: dict[str, Any] = {"type": self.type}
        schema.update({k: v for k, v in (("minimum", self.minimum), ("maximum", self.maximum)) if v is not None})
        return schema


class Partition(StageModel):
    """One model per value of a column: each trains on the label rows holding its value."""

    column: str = Field(description="column of the label table (and the features' source table) to split on")
    values: list[str] = Field(
        min_length=1,
        description="one model per value, registered as <registered_model>_<value>, trained by task "
        "<task>.<value>; each value is a name (lowercase letters, digits, underscores)",
    )

    @field_validator("values")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        bad = [value for value in values if not is_name(value)]
        if bad:
            raise ValueError(f"{bad[0]!r}: {NAME_RULE}")
        twice = sorted({value for value in values if values.count(value) > 1})
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
        return values

    def row_filter(self, value: str) -> str:
        """Return the Iceberg row filter selecting ``value``'s rows (``category = 'fresh'``)."""
        return f"{self.column} = '{value}'"


@dataclass(frozen=True)
class Model:
    """One model a train stage registers: its task id, registered name and the rows it trains on."""

    task_id: str
    registered_model: str
    #: the partition value (``None``: the stage has no partition)
    value: str | None = None
    row_filter: str | None = None


class TrainStage(StageModel):
    """Run a training script under include/training/ and register its model.

    `task` says what the model predicts; it decides the holdout metrics, the plots, the prediction columns
    and which models fit (a model that does not fit fails the training task before registration):

    - `binary_classification`: a classifier with `predict_proba` and classes 0 and 1; metrics roc_auc
      (default `compare_metric`), average_precision, accuracy, precision, recall, f1_score, log_loss.
    - `multiclass_classification`: a classifier with `predict_proba`; accuracy, macro_f1 (default), log_loss.
    - `regression`: a regressor (`predict`, not a classifier); mae, rmse (default), wape, r2.

    Lower is better for mae, rmse, wape and log_loss, higher for the others.

    Gates: each `min_metrics` value is a floor, each `max_metrics` value a ceiling (`max_metrics: {mae: 12.5}`);
    keys must be metrics of the task. A metric the script logs itself is gated on its value, otherwise on the
    value the training task computes on the holdout (`ctx.log_datasets`). The new model becomes `champion`
    only if every gate holds and its `compare_metric` on that holdout matches or beats the current
    champion's on the same rows, in the metric's direction; otherwise it is registered as `challenger`.
    """

    name: str | None = Field(
        default=None, description="task id (default train_model); several train stages need one each"
    )
    script: str
    experiment: str
    registered_model: str
    partition: Partition | None = Field(
        default=None,
        description="one model per value of a column (`{column: category, values: [fresh, dry]}`): a task group "
        "<task> with one task per value, each model registered, gated and promoted on its own",
    )
    label_table: TableName
    label_column: str
    task: TaskType = Field(
        default=BINARY,
        description="ML task type: what the model predicts and which metrics, plots and prediction columns apply",
    )
    hyperparameters: dict[str, Any] = {}
    hyperparameter_bounds: dict[str, HyperparameterBound] = Field(
        default={},
        description="bounds per hyperparameter (`{n_estimators: {type: integer, minimum: 10, maximum: 500}}`); a "
        "trigger asking for a value outside them, or for a hyperparameter neither set nor bounded here, is refused "
        "before the run is created",
    )
    min_metrics: dict[str, float] = Field(default={}, description="floors: each metric must be at least its value")
    max_metrics: dict[str, float] = Field(default={}, description="ceilings: each metric must be at most its value")
    compare_metric: str | None = Field(
        default=None,
        description="holdout metric the new model must match or beat the champion on (default per task type)",
    )
    as_of_tag: str | None = Field(
        default=None,
        pattern=TAG_PATTERN,
        description="Iceberg tag (e.g. release_2025_11) to train on: the labels and every feature view's source "
        "table are read at that tag's snapshot (`asgard tables tag TABLE NAME`), not at their current one",
    )
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: pods.PodOnKubernetes | None = None
    timeout_minutes: int = Field(
        default=60, gt=0, le=10080, description="the script is killed after this many minutes (at most a week)"
    )

    @model_validator(mode="after")
    def _runner(self) -> TrainStage:
        pods.needs_kubernetes(self)
        return self

    @model_validator(mode="after")
    def _defaults_in_bounds(self) -> TrainStage:
        problems = [
            f"hyperparameters.{name}: {problem} (hyperparameter_bounds.{name})"
            for name, bound in self.hyperparameter_bounds.items()
            if name in self.hyperparameters and (problem := bound.problem(self.hyperparameters[name]))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("min_metrics", "max_metrics", "compare_metric")
    @classmethod
    def _task_metrics(cls, value: Any, info: ValidationInfo) -> Any:
        task = info.data.get("task")
        names = [] if value is None else [value] if isinstance(value, str) else list(value)
        problems = metric_problems(task, "", names) if task else []
        if problems:
            raise ValueError("; ".join(p.removeprefix(": ") for p in problems))
        return value

    @property
    def comparison_metric(self) -> str:
        """``compare_metric``, or the task type's default."""
        return self.compare_metric or DEFAULT_COMPARE_METRIC[self.task]

    @property
    def task_id(self) -> str:
        """The training task's id, or its task group's with a partition."""
        return self.name or TASK

    def models(self) -> list[Model]:
        """Every model the stage registers: one, or one per partition value (expanded when the DAG is parsed)."""
        if self.partition is None:
            return [Model(self.task_id, self.registered_model)]
        part = self.partition
        return [
            Model(f"{self.task_id}.{value}", f"{self.registered_model}_{value}", value, part.row_filter(value))
            for value in part.values
        ]


def model(name: str) -> str:
    """Name a registered model as a resource of the pipeline graph (``mlflow:<model>``)."""
    return f"mlflow:{name}"


def _model_writes(stage: TrainStage, where: str) -> tuple[Write, ...]:
    if stage.partition is None:
        return (Write(model(stage.registered_model), f"{where}.registered_model", "registered model"),)
    return tuple(
        Write(model(m.registered_model), f"{where}.partition.values[{i}]", "registered model")
        for i, m in enumerate(stage.models())
    )


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
    views = feature_set(inputs["features"]) if "features" in inputs else []
    uses = [ColumnUse(stage.label_table, stage.label_column, f"{where}.label_column")]
    if stage.partition is not None:
        uses.append(ColumnUse(stage.label_table, stage.partition.column, f"{where}.partition.column"))
    if views and views[0].config.source_table != stage.label_table:  # labels join on keys and timestamp
        joined = key_uses(views[0].config, views[0].where, stage.label_table)
        uses += [replace(use, key=f"{use.key} (joined to {where}.label_table)") for use in joined]
    tasks = tuple(m.task_id for m in stage.models())
    return StageSpec(
        label=stage.script,
        tasks=tasks,
        reads=(*(Read(feature_view(view.config)) for view in views), label),
        writes=_model_writes(stage, where),
        name=stage.name,
        problems=_script_problems(stage, where, base),
        uses=tuple(uses),
    )


def build(node: Node, base: Path) -> Built:
    """Build the training task (a task group of one per partition value); it reads the stage's feature set."""
    stage: TrainStage = node.config
    views = [view.config for view in feature_set(node.inputs["features"])]
    if stage.partition is None:
        task = _train_task(stage, views, stage.models()[0])
        return Built(entry=task, exit=task)
    from airflow.sdk import TaskGroup

    with TaskGroup(
        group_id=stage.task_id, tooltip=f"one {stage.registered_model} per {stage.partition.column}"
    ) as group:
        tasks = {model(one.registered_model): _train_task(stage, views, one) for one in stage.models()}
    return Built(entry=group, exit=group, ready=tasks)


def _train_task(stage: TrainStage, views: list[FeaturesStage], one: Model) -> Any:
    """One training task: ``one``'s model, trained on its rows of the label table."""
    from asgard_provider.assets import feature_view_asset, model_asset
    from asgard_provider.operators.mlflow import MLflowTrainOperator

    entity = views[0]
    kwargs: dict[str, Any] = {"row_filter": one.row_filter} if one.row_filter else {}
    if stage.as_of_tag:
        kwargs["as_of_tag"] = stage.as_of_tag
    task = pods.run(
        MLflowTrainOperator,
        stage,
        task_id=one.task_id.rsplit(".", 1)[-1],  # inside the stage's task group with a partition
        script=stage.script,
        experiment_name=stage.experiment,
        registered_model_name=one.registered_model,
        features=feature_refs(views),
        feature_views=[view.view_source().to_dict() for view in views],
        label_table=stage.label_table,
        label_column=stage.label_column,
        entity_key=entity.keys,
        timestamp_field=entity.timestamp_field,
        hyperparameters="{{ params.hyperparameters | tojson }}",
        task=stage.task,
        min_metrics=stage.min_metrics,
        max_metrics=stage.max_metrics,
        compare_metric=stage.comparison_metric,
        timeout=stage.timeout_minutes * 60,  # the operator's own limit: its error names the script and the limit
        execution_timeout=timedelta(minutes=stage.timeout_minutes + TASK_MARGIN_MINUTES),
        **kwargs,
    )
    task.inlets = [feature_view_asset(view.feature_view) for view in views]
    task.outlets = [model_asset(one.registered_model)]
    return task


def params(stage: TrainStage) -> dict[str, Any]:
    """``hyperparameters`` on the trigger form, defaulting to the config's."""
    from airflow.sdk import Param

    # Declared bounds close the form: a hyperparameter the config neither sets nor bounds is refused.
    bounds = {name: bound.json_schema() for name, bound in stage.hyperparameter_bounds.items()}
    known: dict[str, dict[str, Any]] = {name: {} for name in stage.hyperparameters} | bounds
    schema: dict[str, Any] = {"properties": known, "additionalProperties": False} if bounds else {}
    return {
        "hyperparameters": Param(
            dict(stage.hyperparameters),
            type="object",
            title="Model hyperparameters",
            description=f"Passed to include/training/{stage.script} as ctx.params.",
            **schema,
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
