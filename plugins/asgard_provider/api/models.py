"""Request and response bodies of the Asgard API (they make up its OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Most rows one inference request or one SQL answer may carry.
MAX_INPUTS = 1000
MAX_ROWS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InferenceRequest(_Strict):
    """Feature values to score with a registered model (the seed's ``/mlops/inference`` body)."""

    model_name: str = Field(min_length=1, max_length=256, examples=["fraud_detector"])
    model_version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="pin a version; else the alias")
    model_alias: str = Field(default="champion", min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.-]+$")
    inputs: list[dict[str, float | None]] = Field(min_length=1, max_length=MAX_INPUTS)


class InputPrediction(BaseModel):
    """The model's answer for one input row, as its task type gives it.

    ``value``: probability of class 1 (binary) or the predicted number (regression); ``prediction``: the 0/1
    decision, the class or the number; ``risk_level`` (binary) and ``probabilities`` per class (classification).
    """

    index: int
    value: float | None
    prediction: int | str | float
    risk_level: str | None = None
    probabilities: dict[str, float] | None = None


class InferenceResponse(BaseModel):
    """One prediction per input, in input order."""

    model_name: str
    model_version: str
    predictions: list[InputPrediction]
    inference_time_ms: float


class EntityScore(BaseModel):
    """One entity scored from its online features.

    ``keys`` holds every join key column's value (``{"store_id": 1, "sku_id": 7}``); ``entity_key`` and
    ``entity_id`` are the key's name and value, for a composite key joined by ``,``. ``prediction_column`` names
    ``value`` as the pipeline's predictions table does (e.g. ``fraud_probability``).
    """

    entity_key: str
    entity_id: int | str
    keys: dict[str, int | str]
    prediction_column: str
    value: float | None
    prediction: int | str | float
    risk_level: str | None = None
    probabilities: dict[str, float] | None = None
    model_name: str
    model_version: str
    feature_timestamp: str | None
    features: dict[str, float | None]
    scored_at: str


class ScoreRequest(_Strict):
    """Entities to score by key from the online store; the model defaults to the server's.

    Each entry of ``entity_ids`` is an id (a single join key) or ``{column: value}`` naming every column of a
    composite key (``{"store_id": 1, "sku_id": 7}``).
    """

    entity_ids: list[int | str | dict[str, int | str]] = Field(
        min_length=1, max_length=MAX_INPUTS, examples=[[1001, 2500], [{"store_id": 1, "sku_id": 7}]]
    )
    model_name: str | None = Field(default=None, min_length=1, max_length=256)
    model_version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    model_alias: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.-]+$")


class ScoreResponse(BaseModel):
    """Scores in request order."""

    scores: list[EntityScore]


class FeatureInfo(BaseModel):
    """One feature of a view."""

    name: str
    dtype: str


class FeatureViewInfo(BaseModel):
    """A Feast feature view and how fresh its online copy and its source table are."""

    name: str
    join_keys: list[str]
    features: list[FeatureInfo]
    ttl_seconds: float | None
    source_table: str | None
    source_snapshot_id: int | None
    source_committed_at: str | None
    materialized_until: str | None
    staleness_seconds: float | None
    tags: dict[str, str]


class FeatureViewsResponse(BaseModel):
    """Every feature view of the Feast project."""

    project: str
    feature_views: list[FeatureViewInfo]


class ModelVersionInfo(BaseModel):
    """One registered version: aliases, promotion decision (``asgard.*`` tags) and its run's metrics."""

    version: str
    aliases: list[str]
    status: str | None
    run_id: str | None
    created_at: str | None
    tags: dict[str, str]
    metrics: dict[str, float]


class ModelSummary(BaseModel):
    """A registered model and its aliases."""

    name: str
    aliases: dict[str, str]
    latest_version: str | None


class ModelsResponse(BaseModel):
    """Every registered model."""

    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    """A registered model with every version, newest first."""

    versions: list[ModelVersionInfo]


class ComponentHealth(BaseModel):
    """Whether one engine answered."""

    ok: bool
    detail: str


class HealthResponse(BaseModel):
    """``ok`` only when the catalog, MLflow and the Feast online store all answer."""

    status: str
    components: dict[str, ComponentHealth]


#: A snapshot id, tag or branch name (or a table name, as a key of a per-table ``as_of``).
_Ref = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class QueryRequest(_Strict):
    """One read-only ``SELECT`` over the Iceberg tables (``namespace.table`` or ``iceberg.namespace.table``)."""

    sql: str = Field(min_length=1, max_length=100_000, examples=["SELECT count(*) FROM gold.events"])
    limit: int = Field(default=1000, ge=1, le=MAX_ROWS)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    as_of: _Ref | dict[_Ref, _Ref] | None = Field(
        default=None,
        description="read every table as of a snapshot id, tag or branch; or per table "
        '(`{"gold.events": "release_1"}`; the others read main)',
        examples=["release_1"],
    )


class QueryResponse(BaseModel):
    """Rows (at most ``limit``) as lists in column order; ``truncated`` when more rows matched."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    tables: list[str]
    elapsed_ms: float
    snapshots: dict[str, int] = Field(default={}, description="snapshot read per table when `as_of` was given")


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    detail: Any
