"""Typed pipeline configuration, validated up front with messages naming file, key and fix."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.graph import PipelineGraph
from asgard_provider.pipeline.yaml_loader import load_yaml
from asgard_provider.settings import include_dir
from asgard_provider.stages import StageEntry
from asgard_provider.stages.base import NAME_MAX_LENGTH, NAME_RULE, StageModel, TableName, is_name
from asgard_provider.stages.checks import TableChecks
from asgard_provider.stages.dbt import DbtStage
from asgard_provider.stages.features import Feature, FeaturesStage
from asgard_provider.stages.ingest import AirbyteSource, FileSource, Incremental, IngestStage, SqlSource
from asgard_provider.stages.pods import PodOnKubernetes
from asgard_provider.stages.predict import PredictStage
from asgard_provider.stages.train import TrainStage
from asgard_provider.stages.transform import SparkOnKubernetes, TransformStage
from asgard_provider.values import value_problems

_MAX_PROBLEMS = 50  # one per bad list item would make a 10,000-line DagBag import error
#: Secret-looking keys: these words anywhere, or ``pwd``/``credentials`` as a snake_case (or camelCase) segment,
#: or ``pass``/``auth``/``authorization`` as the last one (``db_pass``, ``http_auth``; not ``passes``, ``author``).
_SECRET_KEYS = re.compile(
    r"password|passwd|passphrase|secret|token|api_?key|access_key|private_key"
    r"|(?:^|[_\W])(?:pwd|credentials?)(?:[_\W]|$)|(?:^|[_\W])(?:pass|auth|authorization)$"
    r"|(?-i:(?<=[a-z0-9])(?:Pwd|Credentials?|Pass|Auth|Authorization)(?![a-z]))",
    re.I,
)
#: A URL with user info (``postgres://u:p@h``, ``https://:tok3n@h``, ``https://tok3n@h``): credentials in config.
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#@]*@")
_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}


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
    retries: int = Field(default=1, ge=0)
    max_active_runs: int = Field(default=1, gt=0, description="at most 1 with '@continuous'")
    retry_delay_minutes: float = Field(default=1.0, ge=0, le=10080, allow_inf_nan=False, description="at most a week")
    tags: list[str] = []
    owner: str = "asgard"
    ingest: list[IngestStage] = []
    transform: list[TransformStage] = []
    dbt: DbtStage | None = None
    features: FeaturesStage | list[FeaturesStage] | None = Field(
        default=None, description="one feature view, or a list of views forming one feature set"
    )
    train: TrainStage | None = None
    predict: PredictStage | None = None
    stages: list[StageEntry] = Field(  # type: ignore[valid-type]
        default=[], description="more stages, in run order after the keys above, each `{<kind>: {...}}`"
    )

    @field_validator("pipeline")
    @classmethod
    def _pipeline_id(cls, v: str) -> str:
        if not is_name(v):
            raise ValueError(NAME_RULE)
        return v

    @field_validator("start_date", mode="before")
    @classmethod
    def _start_date(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return date.fromisoformat(v)
            except ValueError as exc:
                raise ValueError(f"{v!r} is not a calendar date ({exc}); write YYYY-MM-DD") from None
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> PipelineConfig:
        if self.schedule and self.schedule_on:
            raise ValueError(
                f"'schedule' ({self.schedule!r}) and 'schedule_on' ({self.schedule_on}) conflict: pick one"
            )
        return self

    @model_validator(mode="after")
    def _continuous_runs_one_at_a_time(self) -> PipelineConfig:
        if self.schedule == "@continuous" and self.max_active_runs != 1:
            raise ValueError(
                f"'max_active_runs' ({self.max_active_runs}) must be 1 with schedule '@continuous' "
                "(Airflow starts the next run when the last ends)"
            )
        return self

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None or v in _PRESETS:
            return v
        from croniter import croniter  # type: ignore[import-untyped]

        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(
                f"{v!r} is neither a cron expression of 5 fields (minute hour day month weekday, e.g. '0 6 * * *') "
                "nor a preset like @daily"
            )
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


def _is_reference(value: Any) -> bool:
    """Whether ``value`` names where a secret lives (``{variable: ...}``, ``{connection: ..., field: ...}``)."""
    return isinstance(value, dict) and bool(value) and set(value) <= {"variable", "connection", "field"}


def _find_secrets(node: Any, path: str = "") -> list[str]:
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if _SECRET_KEYS.search(str(key)) and value not in (None, "") and not _is_reference(value):
                problems.append(
                    f"{where}: secrets must not be written in pipeline configs; put them in an Airflow "
                    "connection or variable and reference its id"
                )
            problems.extend(_find_secrets(value, where))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems.extend(_find_secrets(value, f"{path}[{i}]"))
    elif isinstance(node, str) and _URL_USERINFO.search(node):
        problems.append(f"{path}: the URL embeds a password; use an Airflow connection instead")
    return problems


def _check_semantics(cfg: PipelineConfig, base: Path) -> list[str]:
    """Return what the pipeline's table graph finds: stage order, one writer per table, missing files."""
    return PipelineGraph(cfg, base).problems


def pipeline_warnings(cfg: PipelineConfig, base_dir: Path | None = None) -> list[str]:
    """Return what validation could not check in a valid pipeline (a Gold model declaring no columns)."""
    return PipelineGraph(cfg, base_dir or include_dir()).warnings


def pipeline_notes(cfg: PipelineConfig, base_dir: Path | None = None) -> list[str]:
    """Return what validation says of a valid pipeline: the tables it reads in place from other pipelines."""
    return PipelineGraph(cfg, base_dir or include_dir()).notes()


def load_pipeline_config(path: Path | str, *, base_dir: Path | None = None) -> PipelineConfig:
    """Load and validate one pipeline YAML; raise :class:`PipelineConfigError` listing every problem."""
    path = Path(path)
    base = base_dir or include_dir()
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise PipelineConfigError(str(path), ["the file must hold a mapping with at least 'pipeline:'"])
    problems = _find_secrets(raw)
    if problems:  # alone: later messages quote values, and a secret must never be echoed
        raise PipelineConfigError(str(path), problems)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for err in errors[:_MAX_PROBLEMS]:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see docs/config.md)"
            problems.append(f"{_loc(err['loc'])}: {msg}")
        if len(errors) > _MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - _MAX_PROBLEMS} more problems of the same kind")
        raise PipelineConfigError(str(path), problems) from None
    problems.extend(value_problems(cfg))
    try:
        problems.extend(_check_semantics(cfg, base))
    except (OSError, ValueError) as exc:  # e.g. a path too long for the file system, an SQL file not UTF-8
        problems.append(f"a referenced file could not be checked: {type(exc).__name__}: {exc}")
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
        except Exception as exc:  # a bug on one file must not hide the others' results
            results[path] = PipelineConfigError(str(path), [f"could not be checked ({type(exc).__name__}: {exc})"])
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
    "pipeline_notes",
    "pipeline_warnings",
    "validate_all",
]
