"""The features stage: a Feast entity and feature view over a Gold Iceberg table, and its online copy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

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

REGISTER_TASK = "register_features"
MATERIALIZE_TASK = "materialize_features"


class Feature(StageModel):
    """One feature column of a feature view."""

    name: str
    dtype: Literal["int32", "int64", "float32", "float64", "string", "bool", "unix_timestamp"]


class FeaturesStage(StageModel):
    """A Feast entity + feature view over a Gold Iceberg table."""

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
    feature_service: str | None = None
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


def spec(stage: FeaturesStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the Gold source table and writes the feature view."""
    return StageSpec(
        label=stage.feature_view,
        tasks=(REGISTER_TASK, *([MATERIALIZE_TASK] if stage.materialize else [])),
        reads=(
            Read(
                stage.source_table,
                f"{where}.source_table",
                f"{stage.source_table} is not produced by an earlier stage; "
                "list it under dbt.produces or a transform's output_table",
            ),
        ),
        writes=(Write(feature_view(stage)),),
        uses=column_uses(stage, where),
    )


def build(node: Node, base: Path) -> Built:
    """Register the feature view; materializing the online store runs beside training, not before it."""
    from asgard_provider.assets import feature_view_asset, table_asset
    from asgard_provider.operators.feast import FeastMaterializeOperator, FeastRegisterOperator

    stage: FeaturesStage = node.config
    register = FeastRegisterOperator(
        task_id=REGISTER_TASK,
        feature_view=stage.feature_view,
        entity=stage.entity,
        join_keys=stage.keys,
        source_table=stage.source_table,
        timestamp_field=stage.timestamp_field,
        features=[feature.model_dump() for feature in stage.features],
        ttl_days=stage.ttl_days,
        tags=stage.tags,
        feature_service=stage.feature_service,
        materialize=False,
        inlets=[table_asset(stage.source_table)],
        outlets=[feature_view_asset(stage.feature_view)],
    )
    if stage.materialize:
        # Online serving only: training and batch inference read the offline store.
        register >> FeastMaterializeOperator(
            task_id=MATERIALIZE_TASK,
            feature_view=stage.feature_view,
            source_table=stage.source_table,
            join_keys=stage.keys,
            timestamp_field=stage.timestamp_field,
            ttl_days=stage.ttl_days,
        )
    return Built(entry=register, exit=register)


KIND = StageKind(key="features", model=FeaturesStage, spec=spec, build=build)
