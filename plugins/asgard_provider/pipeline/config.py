"""Typed pipeline configuration, validated up front with messages naming file, key and fix."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.graph import PipelineGraph
from asgard_provider.settings import include_dir
from asgard_provider.stages import StageEntry
from asgard_provider.stages.base import NAME_MAX_LENGTH, StageModel, TableName, is_name
from asgard_provider.stages.checks import TableChecks
from asgard_provider.stages.dbt import DbtStage
from asgard_provider.stages.features import Feature, FeaturesStage
from asgard_provider.stages.ingest import AirbyteSource, FileSource, Incremental, IngestStage, SqlSource
from asgard_provider.stages.pods import PodOnKubernetes
from asgard_provider.stages.predict import PredictStage
from asgard_provider.stages.train import TrainStage
from asgard_provider.stages.transform import SparkOnKubernetes, TransformStage

_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|apikey|access_key|private_key)", re.I)
_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
#: libyaml's safe loader parses a pipeline ~10x faster than the pure-Python one (parse time of 100 DAGs).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PipelineConfig(StageModel):
    """One pipeline = one DAG: a header (id, schedule, retries...) and its stages, by kind or as a list."""

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
    stages: list[StageEntry] = Field(  # type: ignore[valid-type]
        default=[], description="more stages, in run order after the keys above, each `{<kind>: {...}}`"
    )

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
    """Return what the pipeline's table graph finds: stage order, one writer per table, missing files."""
    return PipelineGraph(cfg, base).problems


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
    "NAME_MAX_LENGTH",
    "AirbyteSource",
    "DbtStage",
    "Feature",
    "FeaturesStage",
    "FileSource",
    "Incremental",
    "IngestStage",
    "PipelineConfig",
    "PodOnKubernetes",
    "PredictStage",
    "SparkOnKubernetes",
    "SqlSource",
    "TableChecks",
    "TableName",
    "TrainStage",
    "TransformStage",
    "discover_pipelines",
    "is_name",
    "load_pipeline_config",
    "validate_all",
]
