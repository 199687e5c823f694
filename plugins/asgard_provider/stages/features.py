"""The features stage: a Feast entity and feature view over a Gold Iceberg table, and its online copy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from asgard_provider.stages.base import (
    Built,
    ColumnUse,
    Node,
    Read,
    StageKind,
    StageModel,
    StageSpec,
    TableName,
    Write,
)

if TYPE_CHECKING:
    from asgard_provider.engines.feature_batches import ViewSource

REGISTER_TASK = "register_features"
MATERIALIZE_TASK = "materialize_features"


class Feature(StageModel):
    """One feature column of a feature view."""

    name: str
    dtype: Literal["int32", "int64", "float32", "float64", "string", "bool", "unix_timestamp"]


class FeaturesStage(StageModel):
    """A Feast entity + feature view over a Gold Iceberg table.

    Several views (`features: [{...}, {...}]`, or adjacent `features` entries under `stages:`) form one
    feature set: the train and predict stages after it read every view of the set, joined on the first
    view's keys and timestamp (the entity's: its source table holds the rows scored). A later view's keys
    must be among the first view's (e.g. `[sku_id]` beside `[store_id, sku_id]`). The views of a set name
    one `feature_service` (or none); its Feast FeatureService spans them all. A `source_table` that no
    stage of the pipeline writes may be another pipeline's Gold table: it is read in place (no copy), and
    validation names the pipeline that writes it.
    """

    name: str | None = Field(
        default=None,
        description="names the tasks register_<name> and materialize_<name> (default register_features and "
        "materialize_features); several views need one each",
    )
    feature_view: str
    entity: str
    join_key: str | None = Field(default=None, description="the entity's key column (shorthand of join_keys: [col])")
    join_keys: list[str] | None = Field(
        default=None,
        min_length=1,
        description="the entity's key columns, e.g. [store_id, sku_id] (a composite key: one Feast entity per "
        "column; scored by every column, asgard score --key store_id=1 --key sku_id=7)",
    )
    source_table: TableName
    timestamp_field: str
    features: list[Feature] = Field(min_length=1)
    ttl_days: int = Field(default=90, gt=0)
    feature_service: str | None = Field(
        default=None, description="Feast FeatureService over every view of the set (each view names the same one)"
    )
    materialize: bool = True
    tags: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_key_spelling(self) -> FeaturesStage:
        if (self.join_key is None) == (self.join_keys is None):
            raise ValueError("give the entity key as join_key: col or join_keys: [col, ...] (exactly one of them)")
        if self.join_keys is not None and len(set(self.join_keys)) != len(self.join_keys):
            raise ValueError(f"join_keys {self.join_keys} names a column twice")
        return self

    @property
    def keys(self) -> list[str]:
        """The entity's key columns, whichever spelling the config used."""
        return list(self.join_keys) if self.join_keys is not None else [str(self.join_key)]

    def feature_refs(self) -> list[str]:
        """``<feature_view>:<feature>`` of every feature, as training and scoring request them."""
        return [f"{self.feature_view}:{feature.name}" for feature in self.features]

    def view_source(self) -> ViewSource:
        """Describe the view as a point-in-time join reads it (what the Feast registry holds, without opening it)."""
        from asgard_provider.engines.feature_batches import ViewSource

        features = tuple(feature.name for feature in self.features)
        ttl = timedelta(days=self.ttl_days)
        return ViewSource(self.feature_view, self.source_table, tuple(self.keys), self.timestamp_field, ttl, features)

    @property
    def register_task(self) -> str:
        """Id of the task registering the view."""
        return f"register_{self.name}" if self.name else REGISTER_TASK

    @property
    def materialize_task(self) -> str:
        """Id of the task materializing the view."""
        return f"materialize_{self.name}" if self.name else MATERIALIZE_TASK


def feature_set(node: Node) -> list[Node]:
    """Return the views of ``node``'s feature set, in order: the run of features stages ending with ``node``."""
    return [*node.run, node]


def feature_refs(views: list[FeaturesStage]) -> list[str]:
    """``<view>:<feature>`` of every feature of every view of a set, as training and scoring request them."""
    return [ref for view in views for ref in view.feature_refs()]


def feature_view(stage: FeaturesStage) -> str:
    """Name the feature view as a resource of the pipeline graph (``feast:<view>``)."""
    return f"feast:{stage.feature_view}"


def key_uses(stage: FeaturesStage, where: str, table: str) -> tuple[ColumnUse, ...]:
    """Return the entity key columns and the timestamp column, as read from ``table``, with their config keys."""
    keys = (
        [ColumnUse(table, key, f"{where}.join_keys[{i}]") for i, key in enumerate(stage.join_keys)]
        if stage.join_keys is not None
        else [ColumnUse(table, str(stage.join_key), f"{where}.join_key")]
    )
    return (*keys, ColumnUse(table, stage.timestamp_field, f"{where}.timestamp_field"))


def column_uses(stage: FeaturesStage, where: str) -> tuple[ColumnUse, ...]:
    """Every column the stage reads from its source table: keys, timestamp and features (with their dtypes)."""
    table = stage.source_table
    features = (ColumnUse(table, f.name, f"{where}.features[{i}].name", f.dtype) for i, f in enumerate(stage.features))
    return (*key_uses(stage, where, table), *features)


def set_problems(stage: FeaturesStage, where: str, earlier: list[Node]) -> tuple[str, ...]:
    """Problems of a view against the views before it in its set: its keys and its feature service."""
    if not earlier:
        return ()
    first: FeaturesStage = earlier[0].config
    problems = []
    extra = [key for key in stage.keys if key not in first.keys]
    if extra:
        problems.append(
            f"{where}.join_keys: {', '.join(extra)} not among the keys {first.keys} of {earlier[0].where}, "
            "whose rows the feature set joins on"
        )
    if stage.feature_service != first.feature_service:
        problems.append(
            f"{where}.feature_service: {stage.feature_service!r} differs from {earlier[0].where}'s "
            f"{first.feature_service!r}; the views of one feature set name one service (or none)"
        )
    views = [node.config.feature_view for node in earlier]
    if stage.feature_view in views:
        problems.append(f"{where}.feature_view: {stage.feature_view!r} is already a view of this feature set")
    return tuple(problems)


def spec(stage: FeaturesStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the Gold source table and writes the feature view."""
    earlier = feature_set(inputs["features"]) if "features" in inputs else []
    return StageSpec(
        label=stage.feature_view,
        tasks=(stage.register_task, *([stage.materialize_task] if stage.materialize else [])),
        reads=(
            Read(
                stage.source_table,
                f"{where}.source_table",
                f"{stage.source_table} is not produced by an earlier stage nor by another pipeline; "
                "list it under dbt.produces or a transform's output_table",
                external=True,
            ),
        ),
        writes=(Write(feature_view(stage), f"{where}.feature_view", "feature view"),),
        name=stage.name,
        problems=set_problems(stage, where, earlier),
        uses=column_uses(stage, where),
    )


def build(node: Node, base: Path) -> Built:
    """Register the feature view; materializing the online store runs beside training, not before it."""
    from asgard_provider.assets import feature_view_asset, table_asset
    from asgard_provider.operators.feast import FeastMaterializeOperator, FeastRegisterOperator

    stage: FeaturesStage = node.config
    service_views = [view.config.feature_view for view in node.run] if stage.feature_service else []
    register = FeastRegisterOperator(
        task_id=stage.register_task,
        feature_view=stage.feature_view,
        entity=stage.entity,
        join_keys=stage.keys,
        source_table=stage.source_table,
        timestamp_field=stage.timestamp_field,
        features=[feature.model_dump() for feature in stage.features],
        ttl_days=stage.ttl_days,
        tags=stage.tags,
        feature_service=stage.feature_service,
        service_views=service_views,
        materialize=False,
        inlets=[table_asset(stage.source_table)],
        outlets=[feature_view_asset(stage.feature_view)],
    )
    if stage.materialize:
        # Online serving only: training and batch inference read the offline store.
        register >> FeastMaterializeOperator(
            task_id=stage.materialize_task,
            feature_view=stage.feature_view,
            source_table=stage.source_table,
            join_keys=stage.keys,
            timestamp_field=stage.timestamp_field,
            ttl_days=stage.ttl_days,
        )
    return Built(entry=register, exit=register)


#: Views of one set register one after another: a view naming the set's service adds the views before it.
KIND = StageKind(key="features", model=FeaturesStage, spec=spec, build=build, chained=True)
