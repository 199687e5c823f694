"""The dbt stage: a dbt project under include/dbt/ turning Silver tables into Gold, as a Cosmos task group."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from asgard_provider.dbt.cosmos import DUCKDB_MEMORY_LIMIT, DUCKDB_THREADS
from asgard_provider.exceptions import PathEscapeError, TransformError
from asgard_provider.paths import contained
from asgard_provider.stages.base import (
    AS_OF,
    Built,
    Node,
    Read,
    StageKind,
    StageModel,
    StageSpec,
    TableColumns,
    TableName,
    Write,
)
from asgard_provider.stages.checks import TableChecks, build_checks, check_task_id
from asgard_provider.values import TEMPLATED

#: Task group id of the dbt models (tasks ``gold.<model>_...``).
GROUP_ID = "gold"


class DbtStage(StageModel):
    """A dbt project under include/dbt/, rendered as a Cosmos task group."""

    project: str
    select: list[str] = []
    target: str = "duckdb"
    connection: str | None = Field(
        default=None, description="Airflow Trino connection for target 'trino' (mapped to the dbt profile by Cosmos)"
    )
    vars: dict[str, Any] = Field(
        default={},
        description="dbt vars; templated: values may use ds, data_interval_start, data_interval_end, logical_date, "
        "params.<name> (e.g. `{{ data_interval_start | ds }}`)",
        json_schema_extra=TEMPLATED,
    )
    duckdb_memory_limit: str = Field(
        default=DUCKDB_MEMORY_LIMIT,
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="target duckdb: DuckDB memory_limit (e.g. 2GB); beyond it DuckDB spills to $ASGARD_HOME/dbt/spill",
    )
    duckdb_threads: int = Field(default=DUCKDB_THREADS, ge=1, le=64, description="target duckdb: DuckDB threads")
    produces: list[TableName] = Field(default=[], description="Iceberg tables the project writes")
    checks: dict[TableName, TableChecks] = Field(
        default={}, description="checks per produced table (default: at least one row)"
    )


def dbt_sources(project: Path) -> list[str]:
    """Iceberg tables a dbt project declares as sources (``meta.iceberg_table`` or ``<schema>.<name>``)."""
    from asgard_provider.exceptions import PipelineConfigError
    from asgard_provider.pipeline.yaml_loader import load_yaml  # the config's bounded libyaml reader

    tables: list[str] = []
    for path in sorted((project / "models").rglob("*.yml")):
        try:
            doc = load_yaml(path) or {}
        except PipelineConfigError:
            continue
        for source in doc.get("sources") or []:
            schema = source.get("schema") or source.get("name")
            for table in source.get("tables") or []:
                name = (table.get("meta") or {}).get("iceberg_table") or f"{schema}.{table.get('name')}"
                if name not in tables:
                    tables.append(name)
    return tables


def _contract(entry: dict[str, Any]) -> bool:
    """Whether a model entry of a schema YAML (or of the manifest) enforces a contract."""
    contract = entry.get("contract") or (entry.get("config") or {}).get("contract") or {}
    return isinstance(contract, dict) and contract.get("enforced") is True


def _shown(path: Path, base: Path) -> str:
    """``include/dbt/<project>/models/...``: a dbt file as the docs name it."""
    try:
        return f"include/{path.resolve().relative_to(base.resolve())}"
    except ValueError:
        return str(path)


def _yaml_contract(project: Path, base: Path, model: str) -> TableColumns | None:
    """Return the columns of ``model``'s enforced contract in the project's schema YAML, if it has one."""
    from asgard_provider.exceptions import PipelineConfigError
    from asgard_provider.pipeline.yaml_loader import load_yaml

    for path in sorted((project / "models").rglob("*.yml")):
        try:
            doc = load_yaml(path) or {}
        except PipelineConfigError:
            continue
        for entry in doc.get("models") or []:
            if isinstance(entry, dict) and entry.get("name") == model and _contract(entry):
                columns = {str(c["name"]): c.get("data_type") for c in entry.get("columns") or [] if "name" in c}
                return TableColumns(f"{_shown(path, base)}, contract of model {model}", columns)
    return None


def _table_of(node: dict[str, Any], alias: str) -> str:
    """Return the Iceberg table a model node writes: its ``iceberg_table`` config, else ``<schema>.<alias>``."""
    return str((node.get("config") or {}).get("iceberg_table") or f"{node.get('schema')}.{alias}")


@functools.lru_cache(maxsize=32)
def _manifest_models(manifest: Path) -> dict[str, dict[str, Any]]:
    """Model nodes of a built manifest by table: ``iceberg_table`` config, else ``<schema>.<alias>``, and alias."""
    nodes = json.loads(manifest.read_text()).get("nodes", {})
    models = [n for n in nodes.values() if n.get("resource_type") == "model"]
    by_alias = {str(n.get("alias") or n["name"]): n for n in models}
    by_table = {_table_of(n, alias): n for alias, n in by_alias.items()}
    return by_alias | by_table


def model_columns(stage: DbtStage, base: Path, table: str) -> TableColumns | None:
    """Return the columns declared for ``table``: its model's contract, else the compiled manifest's columns.

    ``None`` when that cannot be known without running dbt (no manifest built yet: the DAG build names the command).
    """
    from asgard_provider.dbt.cosmos import manifest_path

    model = table.split(".")[-1]
    try:
        project = project_dir(stage, base)
        contract = _yaml_contract(project, base, model)
        manifest = contract is None and manifest_path(project, target=stage.target)
    except (PathEscapeError, TransformError):
        return None  # reported as the stage's own problem
    if contract is not None or not manifest or not manifest.is_file():
        return contract
    models = _manifest_models(manifest)
    node = models.get(table) or models.get(model)
    if node is None:
        return TableColumns(f"the compiled manifest of {_shown(project, base)} has no model {model}", {})
    model = str(node["name"])
    patch = str(node.get("patch_path") or "").partition("://")[2]
    if not patch:
        return TableColumns(f"model {model} of {_shown(project, base)} has no schema YAML", {})
    source = (
        f"{_shown(project / patch, base)}, {'contract' if _contract(node) else 'documented columns'} of model {model}"
    )
    return TableColumns(source, {name: col.get("data_type") for name, col in (node.get("columns") or {}).items()})


def project_dir(stage: DbtStage, base: Path) -> Path:
    """Return ``include/dbt/<project>``; raise :class:`PathEscapeError` if it leaves ``include/dbt/``."""
    return contained(base / "dbt", stage.project, "include/dbt/")


def _writes(stage: DbtStage, where: str) -> tuple[Write, ...]:
    return tuple(Write(t, f"{where}.produces[{i}]") for i, t in enumerate(stage.produces))


def spec(stage: DbtStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """One task per model, the checks of the produced tables; reads the project's declared sources."""
    try:
        project = project_dir(stage, base)
    except PathEscapeError as exc:
        problem = f"{where}.project: {exc}"
        return StageSpec(label=stage.project, tasks=(), writes=_writes(stage, where), problems=(problem,))
    models = sorted(p.stem for p in (project / "models").rglob("*.sql"))
    exists = (project / "dbt_project.yml").is_file()
    missing = f"{where}.project: {project}/dbt_project.yml does not exist (projects live in include/dbt/)"
    return StageSpec(
        label=stage.project,
        tasks=(*(f"{GROUP_ID}.{m}" for m in models), *([check_task_id(GROUP_ID)] if stage.produces else [])),
        reads=tuple(Read(t) for t in dbt_sources(project)),
        writes=_writes(stage, where),
        problems=() if exists else (missing,),
    )


def build(node: Node, base: Path) -> Built:
    """Build the Cosmos task group, then the checks of every produced table.

    The produced tables are written on the run's branch (write-audit-publish): the checks audit it after the
    models' dbt tests passed, then publish it; only then are the Gold asset events emitted.
    """
    from asgard_provider.dbt.cosmos import build_dbt_task_group

    stage: DbtStage = node.config
    retention = max([c.branch_retention_days for c in stage.checks.values()], default=None)
    group = build_dbt_task_group(
        group_id=GROUP_ID,
        project_dir=project_dir(stage, base),
        dbt_vars={"as_of": AS_OF, **stage.vars},
        select=stage.select or None,
        target=stage.target,
        trino_conn_id=stage.connection,
        branch_tables=list(stage.produces),
        branch_retention_days=retention or TableChecks().branch_retention_days,
        duckdb_memory_limit=stage.duckdb_memory_limit,
        duckdb_threads=stage.duckdb_threads,
    )
    if not stage.produces:
        return Built(entry=group, exit=group)
    check = build_checks(GROUP_ID, stage.produces, TableChecks(), per_table=stage.checks, write_audit_publish=True)
    group >> check
    return Built(entry=group, exit=check)


KIND = StageKind(key="dbt", model=DbtStage, spec=spec, build=build, columns=model_columns)
