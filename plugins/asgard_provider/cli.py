"""The ``asgard`` command line: validate, scaffold and inspect pipelines without Airflow running."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asgard_provider.exceptions import AsgardError, CatalogError, PipelineConfigError
from asgard_provider.settings import include_dir


def _include(args: argparse.Namespace) -> Path:
    return Path(args.include_dir).resolve() if getattr(args, "include_dir", None) else include_dir()


def _dags(args: argparse.Namespace, base: Path) -> Path:
    return Path(args.dags_dir).resolve() if getattr(args, "dags_dir", None) else base.parent / "dags"


def _stub_problems(stub: Path) -> list[str]:
    """Check that the DAG file exists and holds the words the DAG processor looks for (else it is skipped)."""
    if not stub.is_file():
        return [f"no DAG file {stub} loads this pipeline (asgard new pipeline)"]
    text = stub.read_bytes().lower()
    missing = [word for word in ("airflow", "dag") if word.encode() not in text]
    if missing:
        return [
            f"DAG file {stub} does not contain the word(s) {', '.join(map(repr, missing))}, so the DAG processor "
            "skips it (safe mode); keep the stub's docstring or regenerate it (asgard new pipeline)"
        ]
    return []


def _validate(args: argparse.Namespace) -> int:
    from asgard_provider.pipeline.config import pipeline_notes, pipeline_warnings, validate_all
    from asgard_provider.pipeline.factory import dag_problems

    base = _include(args)
    results = validate_all(base)
    if not results:
        print(f"no pipeline configs in {base / 'pipelines'}", file=sys.stderr)
        return 1
    failed = 0
    dags_dir = _dags(args, base)
    for path, outcome in results.items():
        if isinstance(outcome, PipelineConfigError):
            failed += 1
            print(f"FAIL {outcome}")
            continue
        problems = dag_problems(outcome, base, path)
        warnings = pipeline_warnings(outcome, base)
        if args.strict:
            problems += _stub_problems(dags_dir / f"{path.stem}.py") + [f"{w} (--strict)" for w in warnings]
        if problems:
            failed += 1
            print(f"FAIL {PipelineConfigError(str(path), problems)}")
        else:
            print(f"ok   {path}  (pipeline {outcome.pipeline})")
            print("".join(f"  note: {n}\n" for n in pipeline_notes(outcome, base)), end="")
            print("".join(f"  warning: {w}\n" for w in warnings), end="")
    return 1 if failed else 0


def _new_pipeline(args: argparse.Namespace) -> int:
    from asgard_provider.scaffold import create_pipeline

    base = _include(args)
    try:
        written = create_pipeline(args.name, base, _dags(args, base), args.source, args.task)
    except PipelineConfigError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"created {path}")
    print(
        f"next: edit include/pipelines/{args.name}.yaml, then `asgard dbt compile`, `asgard validate --strict` "
        f"and `asgard show {args.name}`"
    )
    return 0


def describe_pipeline(cfg: Any, base: Path) -> list[dict[str, Any]]:
    """Stages of a validated pipeline in run order: Airflow task ids and the tables each reads and writes."""
    from asgard_provider.pipeline.graph import PipelineGraph

    return PipelineGraph(cfg, base).describe()


def _show(args: argparse.Namespace) -> int:
    from asgard_provider.pipeline.config import discover_pipelines, load_pipeline_config

    base = _include(args)
    paths = [p for p in discover_pipelines(base) if p.stem == args.name]
    if not paths:
        known = ", ".join(p.stem for p in discover_pipelines(base)) or "none"
        print(f"no pipeline {args.name!r} in {base / 'pipelines'} (pipelines: {known})", file=sys.stderr)
        return 1
    try:
        cfg = load_pipeline_config(paths[0], base_dir=base)
    except PipelineConfigError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    stages = describe_pipeline(cfg, base)
    schedule = cfg.schedule or (f"on updates of {', '.join(cfg.schedule_on)}" if cfg.schedule_on else "manual")
    if args.json:
        print(json.dumps({"pipeline": cfg.pipeline, "file": str(paths[0]), "schedule": schedule, "stages": stages}))
        return 0
    print(f"pipeline {cfg.pipeline}  ({paths[0]})")
    if cfg.description:
        print(f"  {cfg.description}")
    print(f"schedule: {schedule}")
    for stage in stages:
        print(f"\n{stage['stage']}: {stage['name']}")
        print(f"  tasks   {', '.join(stage['tasks'])}")
        print(f"  reads   {', '.join(stage['reads']) or '-'}")
        print(f"  writes  {', '.join(stage['writes'])}")
    return 0


def list_tables(namespace: str | None = None, iceberg_conn_id: str | None = None) -> list[dict[str, Any]]:
    """Every Iceberg table of the catalog with its current snapshot id, row count and last commit time (UTC)."""
    from asgard_provider.hooks.iceberg import IcebergHook

    hook = IcebergHook(iceberg_conn_id) if iceberg_conn_id else IcebergHook()
    try:
        catalog = hook.catalog
        namespaces = [(namespace,)] if namespace else sorted(catalog.list_namespaces())
        rows = []
        for ns in namespaces:
            for ident in sorted(catalog.list_tables(ns)):
                table = catalog.load_table(ident)
                snapshot = table.current_snapshot()
                summary = snapshot.summary if snapshot is not None else None
                records = summary.get("total-records") if summary is not None else None
                rows.append(
                    {
                        "table": ".".join(ident),
                        "snapshot_id": snapshot.snapshot_id if snapshot else None,
                        "rows": int(records) if records is not None else None,
                        "committed_at": (
                            datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
                            if snapshot
                            else None
                        ),
                        "operation": str(summary.operation.value) if summary is not None else None,
                    }
                )
    except AsgardError:
        raise
    except Exception as exc:
        raise CatalogError(f"cannot list the tables of Iceberg catalog ({hook.settings.uri}): {exc}") from exc
    return rows


def _tables(args: argparse.Namespace) -> int:
    try:
        rows = list_tables(args.namespace, args.conn_id)
    except CatalogError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no tables" + (f" in namespace {args.namespace}" if args.namespace else ""))
        return 0
    header = ("table", "snapshot_id", "rows", "committed_at (UTC)")
    cells = [
        (
            r["table"],
            str(r["snapshot_id"] or "-"),
            str(r["rows"] if r["rows"] is not None else "-"),
            r["committed_at"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in (header, *cells):
        print(
            "  ".join(
                c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    return 0


def _dbt_compile(args: argparse.Namespace) -> int:
    from asgard_provider.dbt.cosmos import compile_projects
    from asgard_provider.pipeline.config import validate_all
    from asgard_provider.pipeline.graph import stages_of
    from asgard_provider.stages.dbt import DbtStage

    base = _include(args)
    configs = [o for o in validate_all(base).values() if not isinstance(o, AsgardError)]
    used = {stage.target for cfg in configs for stage in stages_of(cfg, DbtStage)}
    targets = sorted(used | set(args.target or []) or {"duckdb"})
    try:
        manifests = compile_projects(base, targets)
    except AsgardError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    for manifest in manifests:
        print(f"ok   {manifest}")
    return 0


def _docs_config(args: argparse.Namespace) -> int:
    from asgard_provider.config_docs import config_reference

    sys.stdout.write(config_reference())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``asgard`` command."""
    parser = argparse.ArgumentParser(prog="asgard", description="Asgard pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="validate every include/pipelines/*.yaml")
    validate.add_argument(
        "--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or the repo's)"
    )
    validate.add_argument("--dags-dir", help="the bundle's dags/ folder (default: next to include/)")
    validate.add_argument("--strict", action="store_true", help="also require a DAG file per pipeline (for CI)")
    validate.set_defaults(func=_validate)

    new = sub.add_parser("new", help="scaffold something new")
    new_sub = new.add_subparsers(dest="what", required=True)
    pipeline = new_sub.add_parser("pipeline", help="config, SQL, dbt project, training script and DAG stub of NAME")
    pipeline.add_argument("name", help="pipeline id: lowercase letters, digits, underscores")
    pipeline.add_argument(
        "--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or the repo's)"
    )
    pipeline.add_argument("--dags-dir", help="the bundle's dags/ folder (default: next to include/)")
    pipeline.add_argument(
        "--source", default="file", choices=["file", "sql", "rest", "s3"], help="the ingest source to start from"
    )
    pipeline.add_argument(
        "--task",
        default="binary_classification",
        choices=["binary_classification", "multiclass_classification", "regression"],
        help="what the model predicts (train.task): the label, model, gate and prediction columns follow from it",
    )
    pipeline.set_defaults(func=_new_pipeline)

    show = sub.add_parser("show", help="stages, tasks and tables read/written of pipeline NAME")
    show.add_argument("name")
    show.add_argument("--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or the repo's)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)

    tables = sub.add_parser("tables", help="Iceberg tables with current snapshot, row count and last commit")
    tables.add_argument("--namespace", help="only this namespace (bronze, silver, gold...)")
    tables.add_argument("--conn-id", help="Airflow connection of the catalog (default: the embedded catalog)")
    tables.add_argument("--json", action="store_true", help="machine-readable output")
    tables.set_defaults(func=_tables)
    from asgard_provider.table_commands import add_commands as add_table_commands
    from asgard_provider.table_commands import add_query_command

    add_table_commands(tables)  # tables history / rollback / tag (time travel, docs/architecture.md)
    add_query_command(sub)  # query SQL --as-of REF

    from asgard_provider.serving import add_commands

    add_commands(sub)  # score, serve, features: online scoring (docs/ml.md)

    dbt = sub.add_parser("dbt", help="dbt projects of the bundle")
    dbt_sub = dbt.add_subparsers(dest="what", required=True)
    compile_ = dbt_sub.add_parser(
        "compile", help="build the manifest of every include/dbt project (DAG files never run dbt)"
    )
    compile_.add_argument(
        "--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or the repo's)"
    )
    compile_.add_argument(
        "--target", action="append", help="also build for this profile target (repeatable; default: the pipelines')"
    )
    compile_.set_defaults(func=_dbt_compile)

    docs = sub.add_parser("docs", help="generated documentation")
    docs_sub = docs.add_subparsers(dest="what", required=True)
    config = docs_sub.add_parser("config", help="print docs/config.md (the pipeline config reference)")
    config.set_defaults(func=_docs_config)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
