"""Transform stages: a Spark SQL file turning Bronze tables into a Silver table (and its quarantine)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from asgard_provider.catalog import IDENTIFIER, table_refs
from asgard_provider.exceptions import PathEscapeError
from asgard_provider.paths import contained
from asgard_provider.stages.base import Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.stages.checks import TableChecks, build_checks, check_task_id
from asgard_provider.stages.pods import needs_kubernetes


class SparkOnKubernetes(StageModel):
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


class SqlParameterSource(StageModel):
    """Where a secret SQL parameter comes from: an Airflow Variable, or a field of an Airflow connection.

    The SQL names it as a parameter marker (``:pseudonym_salt``); Spark binds the value, so it never appears in
    the SQL text, the rendered template or the logs.
    """

    variable: str | None = Field(default=None, description="Airflow Variable holding the value")
    connection: str | None = Field(default=None, description="Airflow connection holding the value")
    field: Literal["password", "login", "host", "schema"] = Field(
        default="password", description="which field of `connection` holds the value"
    )

    @model_validator(mode="after")
    def _one_source(self) -> SqlParameterSource:
        if (self.variable is None) == (self.connection is None):
            raise ValueError("give exactly one of 'variable' or 'connection'")
        return self


class TransformStage(StageModel):
    """A Spark SQL file turning Bronze tables into a Silver table."""

    name: str
    sql: str = Field(description="path under include/sql/")
    output_table: TableName
    mode: Literal["overwrite", "append", "merge"] = "overwrite"
    partition_by: list[str] = []
    merge_keys: list[str] = []
    quarantine_table: TableName | None = None
    parameters_from: dict[str, SqlParameterSource] = Field(
        default={},
        description="secret SQL parameters by name, used in the SQL as `:name` (e.g. a hashing salt), each read "
        "from an Airflow Variable or connection when the task runs; runner local",
    )
    checks: TableChecks | None = Field(default=None, description="checks on output_table after the transform")
    runner: Literal["local", "kubernetes"] = "local"
    kubernetes: SparkOnKubernetes | None = None

    @field_validator("merge_keys")
    @classmethod
    def _plain_columns(cls, keys: list[str]) -> list[str]:
        bad = [key for key in keys if not IDENTIFIER.fullmatch(key)]
        if bad:
            raise ValueError(f"{bad} are not plain column names (letters, digits, underscores; a letter first)")
        return keys

    @field_validator("parameters_from")
    @classmethod
    def _parameter_names(cls, sources: dict[str, SqlParameterSource]) -> dict[str, SqlParameterSource]:
        bad = [name for name in sources if not IDENTIFIER.fullmatch(name)]
        if bad:
            raise ValueError(f"{bad} are not parameter names (letters, digits, underscores; a letter first)")
        return sources

    @model_validator(mode="after")
    def _merge_needs_keys(self) -> TransformStage:
        if self.mode == "merge" and not self.merge_keys:
            raise ValueError("mode 'merge' needs 'merge_keys' (the columns identifying a row)")
        needs_kubernetes(self)
        if self.parameters_from and self.runner != "local":
            raise ValueError("'parameters_from' is bound by the local Spark runner only, not by runner: kubernetes")
        return self


def quarantine_table(stage: TransformStage) -> str:
    """Where the transform's rejected rows go: ``quarantine_table``, by default ``<output_table>_quarantine``."""
    return stage.quarantine_table or f"{stage.output_table}_quarantine"


def _reads(stage: TransformStage, where: str, sql_path: Path) -> tuple[Read, ...]:
    return tuple(
        Read(ref, f"{where}.sql", f"{stage.sql} reads iceberg.{ref}, which no earlier stage produces")
        for ref in sorted(table_refs(sql_path.read_text()))
    )


def spec(stage: TransformStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: the tables its SQL reads, the output table and its quarantine."""
    try:
        sql_path = contained(base / "sql", stage.sql, "include/sql/")
    except PathEscapeError as exc:
        return _spec(stage, where, (), (f"{where}.sql: {exc}",))
    if not sql_path.is_file():
        missing = f"{where}.sql: file {sql_path} does not exist (paths are relative to include/sql/)"
        return _spec(stage, where, (), (missing,))
    return _spec(stage, where, _reads(stage, where, sql_path), ())


def _spec(stage: TransformStage, where: str, reads: tuple[Read, ...], problems: tuple[str, ...]) -> StageSpec:
    quarantine_key = f"{where}.quarantine_table" if stage.quarantine_table else f"{where}.output_table"
    return StageSpec(
        label=stage.name,
        name=stage.name,
        tasks=(stage.name, *([check_task_id(stage.name)] if stage.checks else [])),
        reads=reads,
        writes=(
            Write(stage.output_table, f"{where}.output_table"),
            Write(quarantine_table(stage), quarantine_key, f"quarantine table of {stage.output_table}"),
        ),
        problems=problems,
    )


def _operator(stage: TransformStage) -> Any:
    """Return the Spark transform in the worker (``runner: local``) or as a SparkApplication (``kubernetes``).

    Every transform writes on the run's branch (write-audit-publish); the checks task of a stage with checks
    publishes it, a stage without publishes at the end of its own task.
    """
    common: dict[str, Any] = {
        "task_id": stage.name,
        "sql": stage.sql,
        "output_table": stage.output_table,
        "mode": stage.mode,
        "partition_by": stage.partition_by,
        "merge_keys": stage.merge_keys,
        "quarantine_table": stage.quarantine_table,
        "publish": stage.checks is None,
    }
    if stage.parameters_from:
        common["sql_secrets"] = {n: source.model_dump(exclude_none=True) for n, source in stage.parameters_from.items()}
    if stage.runner == "kubernetes" and stage.kubernetes is not None:
        from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

        spark = stage.kubernetes.model_dump(exclude={"timeout_minutes"})
        timeout = timedelta(minutes=stage.kubernetes.timeout_minutes)
        return SparkIcebergKubernetesOperator(**common, execution_timeout=timeout, **spark)
    from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator

    return SparkIcebergTransformOperator(**common)


def build(node: Node, base: Path) -> Built:
    """Build the transform task, then its checks, which audit the run's branch and publish output and quarantine."""
    from asgard_provider.assets import table_asset

    stage: TransformStage = node.config
    task = _operator(stage)
    if stage.checks is None:
        task.outlets = [table_asset(w.name) for w in node.spec.writes]
        return Built(entry=task, exit=task)
    check = build_checks(stage.name, [stage.output_table], stage.checks, publish_with=[quarantine_table(stage)])
    task >> check
    return Built(entry=task, exit=check)


KIND = StageKind(key="transform", model=TransformStage, spec=spec, build=build, waits_for="reads")
