"""Build one Airflow DAG from one validated pipeline config."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from asgard_provider.assets import table_asset
from asgard_provider.pipeline.config import PipelineConfig, load_pipeline_config
from asgard_provider.pipeline.graph import PipelineGraph
from asgard_provider.settings import include_dir
from asgard_provider.stages.base import Built, Node
from asgard_provider.values import literal_strings


def dag_from_file(dag_file: str | Path) -> DAG:
    """Build the DAG for ``include/pipelines/<stem of dag_file>.yaml`` (called from a stub in dags/)."""
    name = Path(dag_file).stem
    base = include_dir()
    path = base / "pipelines" / f"{name}.yaml"
    if not path.exists() and (base / "pipelines" / f"{name}.yml").exists():
        path = base / "pipelines" / f"{name}.yml"
    return build_dag(load_pipeline_config(path, base_dir=base), base_dir=base, config_path=path)


def build_dag(cfg: PipelineConfig, *, base_dir: Path | None = None, config_path: Path | None = None) -> DAG:
    """Create the DAG: each stage's tasks, wired as the pipeline graph says (stages present in cfg)."""
    base = base_dir or include_dir()
    graph = PipelineGraph(cfg, base)
    for warning in graph.warnings:  # `asgard validate` prints them; --strict fails on them
        logging.getLogger(__name__).warning("%s: %s", config_path or cfg.pipeline, warning)
    doc = f"{cfg.description}\n\nBuilt by Asgard from `{config_path or cfg.pipeline}`."
    with DAG(
        dag_id=cfg.pipeline,
        description=cfg.description or None,
        doc_md=doc,
        schedule=_schedule(cfg),
        params=_params(graph),
        start_date=datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tzinfo=UTC),
        catchup=cfg.catchup,
        max_active_runs=cfg.max_active_runs,
        tags=["asgard", *cfg.tags],
        template_searchpath=[str(base / "sql")],
        default_args={
            "owner": cfg.owner,
            "retries": cfg.retries,
            "retry_delay": timedelta(minutes=cfg.retry_delay_minutes),
        },
    ) as dag:
        built: dict[Node, Built] = {}
        for node in graph.nodes:
            built[node] = node.kind.build(node, base)
            for upstream, table in graph.upstream(node):
                _wire(built[upstream], built[node], table)
    _keep_literal(dag, literal_strings(cfg))
    return dag


def dag_problems(cfg: PipelineConfig, base_dir: Path, config_path: Path) -> list[str]:
    """Build the DAG as the DagBag does (dbt is not run: manifests come from ``asgard dbt compile``); say why not."""
    logging.disable(logging.WARNING)  # Cosmos narrates every parse; the caller reports the graph's warnings
    try:
        build_dag(cfg, base_dir=base_dir, config_path=config_path)
    except Exception as exc:  # whatever the DagBag would show as this file's import error
        return [f"the DAG does not build ({type(exc).__name__}: {exc}); the DagBag would fail to import it"]
    finally:
        logging.disable(logging.NOTSET)
    return []


def _keep_literal(dag: DAG, texts: set[str]) -> None:
    """Keep Airflow from rendering config strings outside templated fields (validation refuses them anyway)."""
    if not texts:
        return
    for task in dag.tasks:
        for name in task.template_fields:
            setattr(task, name, _literal(getattr(task, name, None), texts))


def _literal(value: Any, texts: set[str]) -> Any:
    """Return ``value`` with every string of ``texts`` in it wrapped so that Jinja leaves it as it is."""
    from airflow.sdk.definitions.template import literal

    if isinstance(value, str):
        return literal(value) if value in texts else value
    if isinstance(value, list | tuple):
        return type(value)(_literal(item, texts) for item in value)
    if isinstance(value, dict):
        return {key: _literal(item, texts) for key, item in value.items()}
    return value


def _wire(upstream: Built, built: Built, table: str | None) -> None:
    """Make ``built`` wait for ``upstream``: resource by resource where both name tasks for it, else as a whole."""
    lanes = [name for name in built.start if name in upstream.ready] if table is None else []
    for name in lanes:  # e.g. one model per partition value: each scoring task waits only for its own training
        upstream.ready[name] >> built.start[name]
    if not lanes:
        _ready(upstream, table) >> built.entry


def _ready(built: Built, table: str | None) -> Any:
    """Return the task after which ``table`` (or, for ``None``, the whole stage) is done."""
    return built.ready.get(table, built.exit) if table else built.exit


def _schedule(cfg: PipelineConfig) -> Any:
    """Cron schedules get data intervals (a run covers [previous tick, this tick)); or Assets; or none."""
    if cfg.schedule_on:
        return [table_asset(t) for t in cfg.schedule_on]
    if cfg.schedule is None or cfg.schedule in ("@once", "@continuous"):
        return cfg.schedule
    from airflow.timetables.interval import CronDataIntervalTimetable

    return CronDataIntervalTimetable(cfg.schedule, timezone="UTC")


def _params(graph: PipelineGraph) -> dict[str, Param]:
    """Trigger-form parameters the stages declare, validated by Airflow (JSON schema) before a run starts."""
    return {name: param for node in graph.nodes for name, param in node.kind.params(node.config).items()}
