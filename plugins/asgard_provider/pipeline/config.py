"""Typed pipeline configuration, validated up front with messages naming file, key and fix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asgard_provider.catalog import split_table_name, table_refs
from asgard_provider.exceptions import CatalogError, PipelineConfigError
from asgard_provider.settings import include_dir

#: Longest pipeline id or stage name.
NAME_MAX_LENGTH = 63
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|apikey|access_key|private_key)", re.I)
_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
#: libyaml's safe loader parses a pipeline ~10x faster than the pure-Python one (parse time of 100 DAGs).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def is_name(value: str, max_length: int = NAME_MAX_LENGTH) -> bool:
    """Whether ``value`` is a pipeline id or stage name: lowercase letters, digits, underscores, a letter first."""
    return len(value) <= max_length and bool(_NAME.match(value))


def _table(value: str) -> str:
    try:
        namespace, table = split_table_name(value)
    except CatalogError as exc:
        raise ValueError(str(exc)) from None
    return f"{namespace}.{table}"


TableName = Annotated[str, AfterValidator(_table)]
"""An Iceberg table as ``namespace.table`` (``iceberg.`` prefix allowed), identifiers validated."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSource(_Model):
    """A table in a relational database reached through an Airflow connection."""

    connection: str = Field(description="Airflow connection id of the source database")
    table: str = Field(description="source table name")
    columns: list[str] | None = Field(default=None, description="columns to copy (default: all)")


class FileSource(_Model):
    """A file export (e.g. the support API's JSON lines); ``${VAR}`` is expanded at run time."""

    path: str
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"


class AirbyteSource(_Model):
    """An Airbyte connection whose destination writes the Bronze table."""

    connection_id: str = Field(description="Airbyte connection UUID")
    airbyte_conn_id: str = Field(default="airbyte_default", description="Airflow connection to the Airbyte API")
    timeout_minutes: int = Field(default=60, gt=0)


class Incremental(_Model):
    """Read only the run's data interval of a source table, by a cursor column (e.g. ``updated_at``).

    Each run replaces exactly the rows whose cursor falls in ``[data_interval_start, data_interval_end)`` in the
    Bronze table, so reruns and backfills never duplicate or lose rows. Trigger with ``full_refresh: true``
    to reload the whole table.
    """

    cursor: str = Field(description="source column ordering changes (timestamp or date)")


class IngestStage(_Model):
    """Copy one source into one Bronze table."""

    name: str
    engine: Literal["embedded", "airbyte"] = "embedded"
    source: SqlSource | FileSource | None = None
    airbyte: AirbyteSource | None = None
    target: TableName
    partition_by: list[str] = []
    batch_rows: int = Field(default=100_000, gt=0)
    incremental: Incremental | None = Field(default=None, description="interval-keyed reads (SQL sources only)")

    @model_validator(mode="after")
    def _engine_settings(self) -> IngestStage:
        if self.engine == "embedded" and self.source is None:
            raise ValueError("engine 'embedded' needs 'source' (connection + table, or path + format)")
        if self.incremental is not None and not isinstance(self.source, SqlSource):
            raise ValueError("'incremental' needs a database source ('source: {connection, table}')")
        if self.engine == "airbyte" and self.airbyte is None:
            raise ValueError("engine 'airbyte' needs 'airbyte: {connection_id: ...}'")
        return self


class TableChecks(_Model):
    """Data-quality checks on one table; a failure stops the run before later stages read the table."""

    min_rows: int = Field(default=1, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    not_null: list[str] = []
    unique: list[list[str]] = Field(default=[], description="column groups that identify a row")
    accepted_values: dict[str, list[Any]] = {}


class SparkOnKubernetes(_Model):
    """Where a ``runner: kubernetes`` transform runs: a SparkApplication for the Spark operator."""

    image: str = Field(description="Spark image holding Python, pyspark and the asgard provider")
    namespace: str = "asgard"
    service_account: str = Field(default="spark", description="driver service account (may create executor pods)")
    kubernetes_conn_id: str = "kubernetes_default"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    env_from: list[str] = Field(default=[], description="Kubernetes Secrets exposed as env (catalog/S3 credentials)")
    driver_cores: int = Field(default=1, gt=0)
    driver_memory: str = Field(default="2g", pattern=r"^[0-9]+[kmgt]?$")
    executor_cores: int = Field(default=1, gt=0)
    executor_memory: str = Field(default="2g", pattern=r"^[0-9]+[kmgt]?$")
    executor_instances: int = Field(default=2, gt=0)
    spark_version: str = "3.5.8"
    packages: list[str] | None = Field(default=None, description="Maven coordinates (default: Iceberg runtime + AWS)")
    spark_conf: dict[str, str] = {}
    timeout_minutes: int = Field(default=120, gt=0)


class PodOnKubernetes(_Model):
    """Where a ``runner: kubernetes`` train/predict stage runs: one pod from ``image``."""

    image: str = Field(description="image holding Python and the asgard provider (and include/)")
    namespace: str = "asgard"
    service_account: str | None = None
    kubernetes_conn_id: str = "kubernetes_default"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    env_from: list[str] = Field(default=[], description="Kubernetes Secrets exposed as env (AIRFLOW_CONN_* etc.)")
    cpu: str = Field(default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field(default="2Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _needs_kubernetes(stage: Any) -> None:
    if stage.runner == "kubernetes" and stage.kubernetes is None:
        raise ValueError("runner 'kubernetes' needs a 'kubernetes:' block with at least 'image'")


class TransformStage(_Model):
    """A Spark SQL file turning Bronze tables into a Silver table."""

    name: str
    sql: str = Field(description="path under include/sql/")
    output_table: TableName
    mode: Literal["overwrite", "append", "merge"] = "overwrite"
    partition_by: list[str] = []
    merge_keys: list[str] = []
    quarantine_table: TableName | None = None
    checks: TableChecks | None = Field(default=None, description="checks on output_table after the transform")
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: SparkOnKubernetes | None = None

    @model_validator(mode="after")
    def _merge_needs_keys(self) -> TransformStage:
        if self.mode == "merge" and not self.merge_keys:
            raise ValueError("mode 'merge' needs 'merge_keys' (the columns identifying a row)")
        _needs_kubernetes(self)
        return self


class DbtStage(_Model):
    """A dbt project under include/dbt/, rendered as a Cosmos task group."""

    project: str
    select: list[str] = []
    target: str = "duckdb"
    connection: str | None = Field(
        default=None, description="Airflow Trino connection for target 'trino' (mapped to the dbt profile by Cosmos)"
    )
    vars: dict[str, Any] = {}
    produces: list[TableName] = Field(default=[], description="Iceberg tables the project writes")
    checks: dict[TableName, TableChecks] = Field(
        default={}, description="checks per produced table (default: at least one row)"
    )


class Feature(_Model):
    """One feature column of a feature view."""

    name: str
    dtype: Literal["int32", "int64", "float32", "float64", "string", "bool", "unix_timestamp"]


class FeaturesStage(_Model):
    """A Feast entity + feature view over a Gold Iceberg table."""

    feature_view: str
    entity: str
    join_key: str
    source_table: TableName
    timestamp_field: str
    features: list[Feature] = Field(min_length=1)
    ttl_days: int = Field(default=90, gt=0)
    feature_service: str | None = None
    materialize: bool = True
    tags: dict[str, str] = {}


class TrainStage(_Model):
    """Run a training script under include/training/ and register its model."""

    script: str
    experiment: str
    registered_model: str
    label_table: TableName
    label_column: str
    hyperparameters: dict[str, Any] = {}
    min_metrics: dict[str, float] = {}
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: PodOnKubernetes | None = None
    timeout_minutes: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _runner(self) -> TrainStage:
        _needs_kubernetes(self)
        return self


class PredictStage(_Model):
    """Score every entity of the latest feature snapshot with the registered model."""

    output_table: TableName
    model_alias: str = "champion"
    thresholds: dict[Literal["high", "medium"], float] = {"high": 0.7, "medium": 0.4}
    batch_size: int = Field(default=50_000, gt=0)
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: PodOnKubernetes | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PredictStage:
        high, medium = self.thresholds.get("high", 0.7), self.thresholds.get("medium", 0.4)
        if not 0 < medium < high < 1:
            raise ValueError(f"thresholds need 0 < medium < high < 1, got medium={medium}, high={high}")
        _needs_kubernetes(self)
        return self


class PipelineConfig(_Model):
    """One pipeline = one DAG."""

    pipeline: str = Field(description="pipeline id, also the DAG id")
    description: str = ""
    schedule: str | None = None
    schedule_on: list[TableName] = Field(
        default=[], description="run when these Iceberg tables (Assets) are updated, instead of a cron schedule"
    )
    start_date: date = date(2025, 1, 1)
    catchup: bool = False
    max_active_runs: int = Field(default=1, gt=0)
    retries: int = Field(default=1, ge=0)
    retry_delay_minutes: float = Field(default=1.0, ge=0)
    tags: list[str] = []
    owner: str = "asgard"
    ingest: list[IngestStage] = []
    transform: list[TransformStage] = []
    dbt: DbtStage | None = None
    features: FeaturesStage | None = None
    train: TrainStage | None = None
    predict: PredictStage | None = None

    @field_validator("pipeline")
    @classmethod
    def _pipeline_id(cls, v: str) -> str:
        if not is_name(v):
            raise ValueError("use lowercase letters, digits and underscores, starting with a letter")
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> PipelineConfig:
        if self.schedule and self.schedule_on:
            raise ValueError(
                f"'schedule' ({self.schedule!r}) and 'schedule_on' ({self.schedule_on}) conflict: pick one"
            )
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None or v in _PRESETS:
            return v
        from croniter import croniter  # type: ignore[import-untyped]

        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is neither a cron expression ('0 6 * * *') nor a preset like @daily")
        return v

    def stage_names(self) -> list[str]:
        """Names of the ingest and transform stages (task ids)."""
        return [s.name for s in self.ingest] + [s.name for s in self.transform]


_UNION_TAGS = ("SqlSource", "FileSource")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not str(part).startswith(("function-", "tagged-union")) and part not in _UNION_TAGS:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _find_secrets(node: Any, path: str = "") -> list[str]:
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if _SECRET_KEYS.search(str(key)) and value not in (None, ""):
                problems.append(
                    f"{where}: secrets must not be written in pipeline configs; put them in an Airflow "
                    "connection or variable and reference its id"
                )
            problems.extend(_find_secrets(value, where))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems.extend(_find_secrets(value, f"{path}[{i}]"))
    elif isinstance(node, str) and re.search(r"://[^/\s:@]+:[^/\s@]+@", node):
        problems.append(f"{path}: the URL embeds a password; use an Airflow connection instead")
    return problems


def _check_semantics(cfg: PipelineConfig, base: Path) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    named: list[tuple[str, Sequence[IngestStage | TransformStage]]] = [
        ("ingest", cfg.ingest),
        ("transform", cfg.transform),
    ]
    for kind, stages in named:
        for i, stage in enumerate(stages):
            if not is_name(stage.name):
                problems.append(f"{kind}[{i}].name: {stage.name!r} must be lowercase letters, digits, underscores")
            if stage.name in seen:
                problems.append(f"{kind}[{i}].name: {stage.name!r} is already used by {seen[stage.name]}")
            seen.setdefault(stage.name, f"{kind}[{i}]")

    produced: dict[str, str] = {}
    for i, ingest in enumerate(cfg.ingest):
        if ingest.target in produced:
            problems.append(f"ingest[{i}].target: {ingest.target} is also written by {produced[ingest.target]}")
        produced[ingest.target] = f"ingest[{i}]"
    for i, tr in enumerate(cfg.transform):
        sql_path = base / "sql" / tr.sql
        if not sql_path.is_file():
            problems.append(f"transform[{i}].sql: file {sql_path} does not exist (paths are relative to include/sql/)")
        else:
            for ref in table_refs(sql_path.read_text()):
                if ref not in produced:
                    problems.append(
                        f"transform[{i}].sql: {tr.sql} reads iceberg.{ref}, which no earlier stage produces "
                        f"(earlier outputs: {', '.join(sorted(produced)) or 'none'})"
                    )
        if tr.output_table in produced:
            problems.append(
                f"transform[{i}].output_table: {tr.output_table} is also written by {produced[tr.output_table]}"
            )
        produced[tr.output_table] = f"transform[{i}]"
        produced[tr.quarantine_table or f"{tr.output_table}_quarantine"] = f"transform[{i}]"
    if cfg.dbt:
        project = base / "dbt" / cfg.dbt.project
        if not (project / "dbt_project.yml").is_file():
            problems.append(f"dbt.project: {project}/dbt_project.yml does not exist (projects live in include/dbt/)")
        for t in cfg.dbt.produces:
            produced[t] = "dbt"
    if cfg.features and cfg.features.source_table not in produced:
        problems.append(
            f"features.source_table: {cfg.features.source_table} is not produced by an earlier stage "
            "(list it under dbt.produces or a transform's output_table)"
        )
    if cfg.train:
        script = (base / "training" / cfg.train.script).resolve()
        if not script.is_relative_to((base / "training").resolve()):
            problems.append(f"train.script: {cfg.train.script!r} leaves include/training/; scripts must live there")
        elif not script.is_file():
            problems.append(f"train.script: {script} does not exist (paths are relative to include/training/)")
        if cfg.features is None:
            problems.append("train: needs a 'features' stage to read its training set from")
        if cfg.train.label_table not in produced:
            problems.append(f"train.label_table: {cfg.train.label_table} is not produced by an earlier stage")
    if cfg.predict and cfg.train is None:
        problems.append("predict: needs a 'train' stage (it scores with the model that stage registers)")
    return problems


def load_pipeline_config(path: Path | str, *, base_dir: Path | None = None) -> PipelineConfig:
    """Load and validate one pipeline YAML; raise :class:`PipelineConfigError` listing every problem."""
    path = Path(path)
    base = base_dir or include_dir()
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except FileNotFoundError:
        raise PipelineConfigError(str(path), ["file does not exist"]) from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(str(path), ["the file must hold a mapping with at least 'pipeline:'"])
    problems = _find_secrets(raw)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see docs/config.md)"
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise PipelineConfigError(str(path), problems) from None
    problems.extend(_check_semantics(cfg, base))
    if path.stem != cfg.pipeline:
        problems.append(f"pipeline: {cfg.pipeline!r} must match the file name {path.stem!r}")
    if problems:
        raise PipelineConfigError(str(path), problems)
    return cfg


def discover_pipelines(base_dir: Path | None = None) -> list[Path]:
    """Every pipeline YAML under include/pipelines/."""
    folder = (base_dir or include_dir()) / "pipelines"
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def validate_all(base_dir: Path | None = None) -> dict[Path, PipelineConfig | PipelineConfigError]:
    """Validate every pipeline; also reject two files declaring the same pipeline id."""
    results: dict[Path, PipelineConfig | PipelineConfigError] = {}
    owners: dict[str, Path] = {}
    for path in discover_pipelines(base_dir):
        try:
            cfg = load_pipeline_config(path, base_dir=base_dir)
        except PipelineConfigError as exc:
            results[path] = exc
            continue
        if cfg.pipeline in owners:
            results[path] = PipelineConfigError(
                str(path), [f"pipeline: {cfg.pipeline!r} is already declared in {owners[cfg.pipeline]}"]
            )
            continue
        owners[cfg.pipeline] = path
        results[path] = cfg
    return results


__all__ = [
    "PipelineConfig",
    "discover_pipelines",
    "load_pipeline_config",
    "validate_all",
]
