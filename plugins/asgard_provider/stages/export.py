"""Export stages: publish a table's current snapshot as Parquet or CSV files for consumers outside the catalog."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from asgard_provider.catalog import IDENTIFIER
from asgard_provider.engines.export import DEFAULT_ROWS_PER_FILE, LOCAL_PREFIX, S3_PREFIX
from asgard_provider.stages.base import (
    AS_OF,
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
from asgard_provider.values import EXPANDS_ENV


class ExportStage(StageModel):
    """Write a table's current snapshot as Parquet or CSV files, to object storage or under `$ASGARD_HOME`.

    The task waits for the stage that writes `table`. Each run replaces the file set in `to` (with
    `partition_by_date`, only the run's `<column>=<as_of>/` folder), and a `_SUCCESS` manifest lists the files of
    the current set; a failed export leaves the previous set. `s3://` credentials come from `connection` (an
    Airflow `aws` connection), never from the config. Example: `stages: [{export: {name: share_scores, table:
    gold.account_scores, to: "s3://partner-share/scores/", format: csv, connection: partner_s3,
    partition_by_date: as_of_date}}]`.
    """

    name: str = Field(description="the export task's id")
    table: TableName = Field(description="table to export; an earlier stage must write it")
    to: str = Field(
        description="folder the files go to: `s3://bucket/prefix/` or `${ASGARD_HOME}/<path>/` (no other variable)",
        json_schema_extra=EXPANDS_ENV,
    )
    format: Literal["parquet", "csv"] = "parquet"
    connection: str | None = Field(default=None, description="Airflow `aws` connection for an `s3://` destination")
    columns: list[str] | None = Field(default=None, description="columns to export, in this order (default: all)")
    partition_by_date: str | None = Field(
        default=None,
        description="a date or timestamp column: export only the rows of the run's as_of date, to "
        "`<to>/<column>=<as_of>/`",
    )
    rows_per_file: int = Field(default=DEFAULT_ROWS_PER_FILE, gt=0, le=100_000_000)

    @field_validator("to")
    @classmethod
    def _destination(cls, to: str) -> str:
        bucket = to.removeprefix(S3_PREFIX).split("/")[0]
        if not (to.startswith(S3_PREFIX) and bucket) and not to.startswith(LOCAL_PREFIX):
            raise ValueError(f"give {S3_PREFIX}bucket/prefix/ or {LOCAL_PREFIX}<path>/")
        if ".." in to.split("/"):
            raise ValueError("'..' is not allowed in an export destination")
        return to.rstrip("/")

    @field_validator("columns")
    @classmethod
    def _plain_columns(cls, columns: list[str] | None) -> list[str] | None:
        bad = [c for c in columns or () if not IDENTIFIER.fullmatch(c)]
        if bad:
            raise ValueError(f"{bad} are not plain column names (letters, digits, underscores; a letter first)")
        if columns is not None and len(set(columns)) != len(columns):
            raise ValueError("names a column twice")
        return columns

    @model_validator(mode="after")
    def _connection_for_s3(self) -> ExportStage:
        if self.connection is not None and not self.to.startswith(S3_PREFIX):
            raise ValueError(f"'connection' is for {S3_PREFIX} destinations; a local export needs none")
        if self.partition_by_date is not None and not IDENTIFIER.fullmatch(self.partition_by_date):
            raise ValueError(f"partition_by_date {self.partition_by_date!r} is not a plain column name")
        return self


def files_name(to: str) -> str:
    """Name the file set in ``to``: ``files:<to>`` (the graph names the config's ``to``, the Asset the resolved one)."""
    return f"files:{to.rstrip('/')}"


def spec(stage: ExportStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the table (so it waits for its writer) and writes the file set."""
    used = [(c, f"{where}.columns") for c in stage.columns or ()]
    if stage.partition_by_date:
        used.append((stage.partition_by_date, f"{where}.partition_by_date"))
    return StageSpec(
        label=stage.name,
        name=stage.name,
        tasks=(stage.name,),
        reads=(Read(stage.table, f"{where}.table", f"exports {stage.table}, which no earlier stage produces"),),
        writes=(Write(files_name(stage.to), f"{where}.to"),),
        uses=tuple(ColumnUse(stage.table, column, key) for column, key in used),
    )


def build(node: Node, base: Path) -> Built:
    """Build the export task: the table is its inlet, the file set its outlet."""
    from asgard_provider.assets import table_asset
    from asgard_provider.operators.export import ExportOperator, export_asset

    stage: ExportStage = node.config
    task = ExportOperator(
        task_id=stage.name,
        table=stage.table,
        to=stage.to,
        file_format=stage.format,
        conn_id=stage.connection,
        columns=stage.columns,
        date_column=stage.partition_by_date,
        as_of=AS_OF,
        rows_per_file=stage.rows_per_file,
    )
    task.inlets = [table_asset(stage.table)]
    task.outlets = [export_asset(stage.to)]
    return Built(entry=task, exit=task)


KIND = StageKind(key="export", model=ExportStage, spec=spec, build=build, waits_for="reads")
