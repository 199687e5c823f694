"""Render a dbt project as an Airflow task group with astronomer-cosmos, from a cached manifest.

Parsing a DAG file must stay cheap: manifests are built ahead of parsing (``asgard dbt compile``, run by
``make install`` and the image build: ``dbt parse`` through dbt's Python runner, content-addressed by the
project's files), and Cosmos renders the task group from that ``manifest.json`` (``LoadMode.DBT_MANIFEST``).
A DAG file never runs dbt: a missing or stale manifest is an import error naming the command to run.
Each model runs as ``dbt build`` of that model (``TestBehavior.BUILD``): its tests run in the same
invocation, and a failing test fails the task so nothing downstream consumes the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asgard_provider.engines import wap
from asgard_provider.exceptions import TransformError
from asgard_provider.settings import asgard_home

#: Files whose content changes the manifest.
_PROJECT_GLOBS = ("dbt_project.yml", "profiles.yml", "packages.yml", "selectors.yml", "**/*.sql", "**/*.yml", "**/*.md")
_SKIP_DIRS = {"target", "logs", "dbt_packages"}


def project_fingerprint(project_dir: Path) -> str:
    """Hash of every file dbt reads when parsing ``project_dir`` (paths and contents)."""
    digest = hashlib.sha256()
    files: set[Path] = set()
    for pattern in _PROJECT_GLOBS:
        for path in project_dir.glob(pattern):
            rel = path.relative_to(project_dir)
            if path.is_file() and not (set(rel.parts[:-1]) & _SKIP_DIRS):
                files.add(rel)
    for rel in sorted(files):
        digest.update(str(rel).encode())
        digest.update(b"\0")
        digest.update((project_dir / rel).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


#: Default DuckDB memory limit of the embedded (``duckdb``) dbt target; beyond it DuckDB spills to disk.
DUCKDB_MEMORY_LIMIT = "2GB"
#: Default DuckDB threads of the embedded dbt target.
DUCKDB_THREADS = 2
#: Environment variables the projects' ``profiles.yml`` read for DuckDB's ``memory_limit``, ``threads`` and
#: ``temp_directory`` (the spill folder, default ``$ASGARD_HOME/dbt/spill``).
DUCKDB_MEMORY_ENV = "ASGARD_DBT_DUCKDB_MEMORY_LIMIT"
DUCKDB_THREADS_ENV = "ASGARD_DBT_DUCKDB_THREADS"
DUCKDB_TEMP_ENV = "ASGARD_DBT_DUCKDB_TEMP_DIRECTORY"


def _dbt_env(target: str, memory_limit: str = DUCKDB_MEMORY_LIMIT, threads: int = DUCKDB_THREADS) -> dict[str, str]:
    """Environment every dbt invocation of a project gets (profile target, DuckDB limits, no telemetry)."""
    return {
        "ASGARD_HOME": str(asgard_home()),
        "ASGARD_DBT_TARGET": target,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        DUCKDB_MEMORY_ENV: memory_limit,
        DUCKDB_THREADS_ENV: str(threads),
        DUCKDB_TEMP_ENV: str(asgard_home() / "dbt" / "spill"),
    }


#: Environment of a dbt task under write-audit-publish: the Airflow run id (names the branch), the Iceberg tables
#: whose store step commits on that branch (comma-separated), and the days an unpublished branch is kept.
WAP_RUN_ENV = "ASGARD_WAP_RUN_ID"
WAP_TABLES_ENV = "ASGARD_WAP_TABLES"
WAP_RETENTION_ENV = "ASGARD_WAP_RETENTION_DAYS"


def wap_env(tables: list[str], retention_days: int | None = None) -> dict[str, str]:
    """Task environment making the plugin store ``tables`` on the run's branch (``run_id`` rendered per task)."""
    if not tables:
        return {}
    days = retention_days or wap.BRANCH_RETENTION_DAYS
    return {WAP_RUN_ENV: "{{ run_id }}", WAP_TABLES_ENV: ",".join(tables), WAP_RETENTION_ENV: str(days)}


#: Environment variable naming the folder of built manifests (default ``$ASGARD_HOME/dbt/manifests``).
MANIFESTS_ENV = "ASGARD_DBT_MANIFESTS"

#: The command that builds every manifest a DAG file needs (named in the parse-time error).
COMPILE_COMMAND = "asgard dbt compile"


def manifests_dir() -> Path:
    """Folder of built manifests: ``$ASGARD_DBT_MANIFESTS`` or ``$ASGARD_HOME/dbt/manifests``."""
    configured = os.environ.get(MANIFESTS_ENV)
    return Path(configured).resolve() if configured else asgard_home() / "dbt" / "manifests"


def manifest_path(project_dir: Path, *, target: str = "duckdb", cache_dir: Path | None = None) -> Path:
    """Where the manifest of ``project_dir``'s current content for ``target`` lives (content-addressed)."""
    project_dir = Path(project_dir).resolve()
    if not (project_dir / "dbt_project.yml").is_file():
        raise TransformError(f"{project_dir}/dbt_project.yml does not exist")
    root = cache_dir or manifests_dir()
    return root / f"{project_dir.name}-{target}-{project_fingerprint(project_dir)}" / "manifest.json"


def require_manifest(project_dir: Path, *, target: str = "duckdb") -> Path:
    """Return the built manifest of ``project_dir`` as it is now; never runs dbt (DAG files call this).

    Raises :class:`TransformError` naming the command to run when the manifest is missing or stale.
    """
    manifest = manifest_path(project_dir, target=target)
    if not manifest.is_file():
        raise TransformError(
            f"no dbt manifest for {Path(project_dir).resolve()} (target {target}) as it is now: the project is new "
            f"or changed since the last build. Run `{COMPILE_COMMAND}` (done by `make install` and the image build); "
            f"manifests are read from {manifest.parent.parent} (${MANIFESTS_ENV})"
        )
    return manifest


def ensure_manifest(project_dir: Path, *, target: str = "duckdb", cache_dir: Path | None = None) -> Path:
    """Return the path of an up-to-date ``manifest.json`` for ``project_dir``, running ``dbt parse`` if needed.

    Used by ``asgard dbt compile`` and tests, never while a DAG file parses. Raises :class:`TransformError`
    with dbt's own message when the project does not parse.
    """
    manifest = manifest_path(project_dir, target=target, cache_dir=cache_dir)
    if manifest.is_file():
        return manifest
    out, root = manifest.parent, manifest.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{out.name.rsplit('-', 1)[0]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest.is_file():  # another process parsed it while we waited
            return manifest
        staging = out.with_name(out.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        _parse(Path(project_dir).resolve(), staging, target)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    return manifest


def compile_projects(include: Path, targets: list[str]) -> list[Path]:
    """Build the manifest of every project under ``include/dbt/`` for each target; return the manifests."""
    projects = sorted(p.parent for p in (include / "dbt").glob("*/dbt_project.yml"))
    return [ensure_manifest(project, target=target) for project in projects for target in targets]


def _parse(project_dir: Path, target_path: Path, target: str) -> None:
    from dbt.cli.main import dbtRunner

    args = [
        "parse",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target",
        target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--no-partial-parse",
        "--quiet",
    ]
    _forget_duckdb_environment()
    with _environ(_dbt_env(target)):
        result = dbtRunner().invoke(args)
    if not result.success or not (target_path / "manifest.json").is_file():
        reason = result.exception or _last_errors(target_path / "logs" / "dbt.log")
        raise TransformError(f"dbt project {project_dir} does not parse (target {target}): {reason}")


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (dbt reads its profile variables from there)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reset_dbt_duckdb(context: Any) -> None:
    """Task callback: drop dbt-duckdb's process-wide environment before a dbt task runs in-process."""
    _forget_duckdb_environment()


def _forget_duckdb_environment() -> None:
    """Drop dbt-duckdb's process-wide environment left by an earlier invocation in this process.

    dbt-duckdb loads plugin sources whenever that environment exists, so a parse after a run would read every
    Iceberg source; parsing must not touch data.
    """
    import sys

    module = sys.modules.get("dbt.adapters.duckdb.connections")
    if module is not None:
        module.DuckDBConnectionManager.close_all_connections()


def _last_errors(log: Path) -> str:
    if not log.is_file():
        return "no dbt log written"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "rror" in ln]
    return "\n".join(lines[-5:]) or "see " + str(log)


def build_dbt_task_group(
    *,
    group_id: str,
    project_dir: Path,
    dbt_vars: dict[str, Any],
    select: list[str] | None = None,
    target: str = "duckdb",
    trino_conn_id: str | None = None,
    branch_tables: list[str] | None = None,
    branch_retention_days: int | None = None,
    duckdb_memory_limit: str = DUCKDB_MEMORY_LIMIT,
    duckdb_threads: int = DUCKDB_THREADS,
) -> Any:
    """Build a Cosmos ``DbtTaskGroup`` for ``project_dir`` inside the current ``with DAG`` block.

    ``dbt_vars`` values may be Jinja templates (e.g. ``{{ data_interval_end | ds }}``): they are rendered per
    task instance, so every run and backfill builds its own snapshot. With ``trino_conn_id`` the ``trino`` target's
    profile is mapped from that Airflow Trino connection (see :func:`trino_profile_config`) instead of read from
    ``profiles.yml``. The Asgard plugin stores ``branch_tables`` on the run's branch (write-audit-publish, see
    :func:`wap_env`); dbt-trino writes main directly. On the ``duckdb`` target DuckDB keeps within
    ``duckdb_memory_limit`` with ``duckdb_threads`` threads and spills to ``$ASGARD_HOME/dbt/spill``.
    """
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    project_dir = Path(project_dir).resolve()
    manifest = require_manifest(project_dir, target=target)
    project_name = _project_name(manifest) or project_dir.name
    args: dict[str, Any] = {
        # dag.test() and tests run several pipelines' dbt tasks in one process: start each from a fresh
        # dbt-duckdb environment, so its plugin reads this run's catalog.
        "on_execute_callback": _reset_dbt_duckdb,
        "vars": dict(dbt_vars),
        "append_env": True,
    }
    project_config = ProjectConfig(
        dbt_project_path=project_dir,
        manifest_path=manifest,
        project_name=project_name,
        install_dbt_deps=False,
        partial_parse=False,
        env_vars={
            **_dbt_env(target, duckdb_memory_limit, duckdb_threads),
            **wap_env(list(branch_tables or []), branch_retention_days),
        },
    )
    # Cosmos wraps the path in an ObjectStoragePath, whose first open() loads every Airflow plugin in the DAG
    # processor's child; the manifest is a local file, so read it as one.
    project_config.manifest_path = manifest
    return DbtTaskGroup(
        group_id=group_id,
        project_config=project_config,
        profile_config=(
            trino_profile_config(trino_conn_id, target)
            if trino_conn_id
            else ProfileConfig(
                profile_name="asgard",
                target_name=target,
                profiles_yml_filepath=project_dir / "profiles.yml",
            )
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.DBT_RUNNER,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=list(select or []),
            test_behavior=TestBehavior.BUILD,
            emit_datasets=False,
        ),
        operator_args=args,
    )


def trino_profile_config(conn_id: str, target: str = "trino", schema: str = "gold") -> Any:
    """Cosmos profile for dbt-trino mapped from Airflow Trino connection ``conn_id``, on the ``iceberg`` catalog.

    A password (LDAP/basic auth), JWT or certificate in the connection selects the dbt-trino method as Cosmos maps
    it; a connection with none of them uses ``method: none`` (in-cluster Trino without authentication). Models
    write the shared catalog's Iceberg tables: ``database`` is the Trino catalog ``iceberg``.
    """
    from cosmos import ProfileConfig
    from cosmos.profiles import get_automatic_profile_mapping
    from cosmos.profiles.trino.base import TrinoBaseProfileMapping

    from asgard_provider.catalog import CATALOG_NAME

    class TrinoNoAuthProfileMapping(TrinoBaseProfileMapping):  # type: ignore[misc]
        """Trino connection without credentials: dbt-trino ``method: none``; ``extra.protocol`` is the scheme."""

        dbt_profile_method: str = "none"

        @property
        def profile(self) -> dict[str, Any]:
            scheme = self.conn.extra_dejson.get("protocol") or "http"
            return {**super().profile, "method": "none", "http_scheme": scheme}

    args = {"database": CATALOG_NAME, "schema": schema, "threads": 4}
    try:
        mapping = get_automatic_profile_mapping(conn_id, profile_args=args)
    except Exception:  # no credential-based mapping applies: Cosmos names none for a bare connection
        mapping = TrinoNoAuthProfileMapping(conn_id, profile_args=args)
    return ProfileConfig(profile_name="asgard", target_name=target, profile_mapping=mapping)


@functools.lru_cache(maxsize=64)
def _project_name(manifest: Path) -> str | None:
    """Return the project name of a cached manifest (paths are content-addressed, so caching is safe)."""
    name = json.loads(manifest.read_text())["metadata"].get("project_name")
    return str(name) if name else None
