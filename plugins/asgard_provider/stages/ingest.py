"""Ingest stages: copy one source (database table, file export or Airbyte connection) into one Bronze table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from asgard_provider.sources.common import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_STATEMENT_TIMEOUT_S
from asgard_provider.stages.base import Built, Node, Read, StageKind, StageModel, StageSpec, TableName, Write
from asgard_provider.values import EXPANDS_ENV


class _Columns(StageModel):
    """Which source columns land in Bronze: personal data listed in ``exclude_columns`` never does."""

    columns: list[str] | None = Field(default=None, description="columns to copy (default: all)")
    exclude_columns: list[str] = Field(
        default=[], description="columns never copied into Bronze (e.g. personal data); each must exist"
    )

    @model_validator(mode="after")
    def _disjoint(self) -> _Columns:
        both = sorted(set(self.columns or ()) & set(self.exclude_columns))
        if both:
            raise ValueError(f"{', '.join(both)} both in 'columns' and 'exclude_columns'")
        return self


class SqlSource(_Columns):
    """A table in a relational database (PostgreSQL, MySQL/MariaDB, SQLite) reached through an Airflow connection.

    Read through connectorx straight into Arrow. ``connect_timeout_seconds`` bounds reaching the server,
    ``statement_timeout_seconds`` the wait for each batch of rows (PostgreSQL also enforces it on the server).
    Example: `source: {connection: crm_db, table: public.accounts, exclude_columns: [email, phone]}`.
    """

    connection: str = Field(description="Airflow connection id of the source database")
    table: str = Field(description="source table, `table` or schema-qualified `schema.table` (`public.accounts`)")
    connect_timeout_seconds: int = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0, le=3600)
    statement_timeout_seconds: int = Field(default=DEFAULT_STATEMENT_TIMEOUT_S, gt=0, le=86_400)


class FileSource(_Columns):
    """Files, local or in object storage (`s3://`): JSON lines, CSV or Parquet, one path or a glob.

    Matching files are read in name order into one snapshot. `s3://` paths take their credentials from
    `connection` (an Airflow `aws` connection: access key, secret key, extra `region_name`, `endpoint_url`).
    Example: `source: {path: "s3://lake/exports/orders-*.parquet", format: parquet, connection: lake_s3}`.
    """

    path: str = Field(
        description="a file or glob (`s3://lake/exports/*.parquet`, `${ASGARD_HOME}/sources/*.csv`); "
        "`${ASGARD_HOME}`, `${ASGARD_INCLUDE_DIR}` and `${AIRFLOW_HOME}` are expanded at run time, no other variable",
        json_schema_extra=EXPANDS_ENV,
    )
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    connection: str | None = Field(default=None, description="Airflow `aws` connection for `s3://` paths")


class RestPagination(StageModel):
    """How a REST API splits a resource into pages."""

    style: Literal["none", "page_number", "cursor", "next_url", "link_header"] = Field(
        default="page_number",
        description="`page_number` (page/per_page until an empty page), `cursor` (a cursor from the body), "
        '`next_url` (a next-page link from the body), `link_header` (the `Link: <...>; rel="next"` header) '
        "or `none`; links to another origin are refused",
    )
    page_param: str = "page"
    size_param: str = "per_page"
    size: int = Field(default=1000, gt=0, le=100_000, description="records per page (`page_number`)")
    first_page: int = Field(default=1, ge=0)
    cursor_param: str = "cursor"
    cursor_path: str = Field(default="next_cursor", description="dot path of the next cursor in the body")
    next_url_path: str = Field(default="next", description="dot path of the next page's URL in the body")


class RestSource(_Columns):
    """A JSON REST API resource; base URL and credentials come from an Airflow `http` connection, never the config.

    Read with dlt's `RESTClient` and paginators (page number, body cursor, next link in the body or the `Link`
    header) and HTTP basic or bearer auth from the connection; each request is tried up to 3 times on 429, 5xx,
    a timeout or a refused connection. Asgard adds on top: next links to another origin are refused, errors name
    the source and page without a credential, and a failed read commits nothing.

    With `incremental: {cursor: updated_at}` on the stage, the run's data interval is sent as `since_param`
    (and `until_param`) and only records whose cursor falls in the interval are kept; each run replaces that
    slice of Bronze. Example: `source: {connection: helpdesk_api, resource: cases, record_path: data,
    pagination: {style: page_number, size: 1000}}` with `incremental: {cursor: updated_at}` and
    `since_param: updated_since`.
    """

    connection: str = Field(description="Airflow connection id of the API (host = base URL; auth from it)")
    resource: str = Field(description="path under the base URL, e.g. `cases` or `v2/orders`")
    params: dict[str, str] = Field(default={}, description="fixed query parameters (no credentials)")
    record_path: str = Field(default="", description="dot path to the list of records in each body (`data`)")
    pagination: RestPagination = RestPagination()
    since_param: str | None = Field(default=None, description="query parameter receiving the interval start")
    until_param: str | None = Field(default=None, description="query parameter receiving the interval end")
    connect_timeout_seconds: int = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0, le=3600)
    read_timeout_seconds: int = Field(default=300, gt=0, le=86_400, description="longest wait for one page")


class AirbyteSource(StageModel):
    """An Airbyte connection whose destination writes the Bronze table."""

    connection_id: str = Field(description="Airbyte connection UUID")
    airbyte_conn_id: str = Field(default="airbyte_default", description="Airflow connection to the Airbyte API")
    timeout_minutes: int = Field(default=60, gt=0)


class Incremental(StageModel):
    """Read only the run's data interval of a source table, by a cursor column (e.g. ``updated_at``).

    Each run replaces exactly the rows whose cursor falls in ``[data_interval_start, data_interval_end)`` in the
    Bronze table, so reruns and backfills never duplicate or lose rows. Trigger with ``full_refresh: true``
    to reload the whole table.
    """

    cursor: str = Field(description="source column ordering changes (timestamp or date)")


class IngestStage(StageModel):
    """Copy one source into one Bronze table."""

    name: str
    engine: Literal["embedded", "airbyte"] = "embedded"
    source: SqlSource | FileSource | RestSource | None = None
    airbyte: AirbyteSource | None = None
    target: TableName
    partition_by: list[str] = []
    batch_rows: int = Field(default=100_000, gt=0)
    incremental: Incremental | None = Field(default=None, description="interval-keyed reads (SQL and REST sources)")

    @model_validator(mode="after")
    def _engine_settings(self) -> IngestStage:
        if self.engine == "embedded" and self.source is None:
            raise ValueError("engine 'embedded' needs 'source' (connection + table, or path + format)")
        if self.incremental is not None and not isinstance(self.source, SqlSource | RestSource):
            raise ValueError(
                "'incremental' needs a database source ('source: {connection, table}') or a REST source "
                "('source: {connection, resource}')"
            )
        if self.engine == "airbyte" and self.airbyte is None:
            raise ValueError("engine 'airbyte' needs 'airbyte: {connection_id: ...}'")
        return self


def _task_ids(stage: IngestStage) -> tuple[str, ...]:
    """Return the task ids: an Airbyte sync is a trigger and a sensor, every other source one task."""
    return (f"{stage.name}_trigger", f"{stage.name}_wait") if stage.engine == "airbyte" else (stage.name,)


def _source(stage: IngestStage) -> str:
    if stage.engine == "airbyte":
        assert stage.airbyte is not None  # guaranteed by IngestStage validation
        return f"airbyte:{stage.airbyte.connection_id}"
    if isinstance(stage.source, FileSource):
        return f"file:{stage.source.path}"
    if isinstance(stage.source, RestSource):
        return f"rest:{stage.source.connection}/{stage.source.resource}"
    assert stage.source is not None
    return f"sql:{stage.source.connection}/{stage.source.table}"


def spec(stage: IngestStage, where: str, base: Path, inputs: Mapping[str, Node]) -> StageSpec:
    """Describe the stage: it reads the source and writes the Bronze table."""
    return StageSpec(
        label=stage.name,
        name=stage.name,
        tasks=_task_ids(stage),
        reads=(Read(_source(stage)),),
        writes=(Write(stage.target, f"{where}.target"),),
    )


def _airbyte(stage: IngestStage, trigger_id: str, wait_id: str) -> Built:
    from airflow.providers.airbyte.operators.airbyte import AirbyteTriggerSyncOperator
    from airflow.providers.airbyte.sensors.airbyte import AirbyteJobSensor

    assert stage.airbyte is not None  # guaranteed by IngestStage validation
    trigger = AirbyteTriggerSyncOperator(
        task_id=trigger_id,
        connection_id=stage.airbyte.connection_id,
        airbyte_conn_id=stage.airbyte.airbyte_conn_id,
        asynchronous=True,
    )
    wait = AirbyteJobSensor(
        task_id=wait_id,
        airbyte_job_id=trigger.output,  # type: ignore[arg-type]
        airbyte_conn_id=stage.airbyte.airbyte_conn_id,
        deferrable=True,
        timeout=stage.airbyte.timeout_minutes * 60,
    )
    trigger >> wait
    return Built(entry=trigger, exit=wait)


def _incremental(stage: IngestStage) -> dict[str, Any]:
    if stage.incremental is None:
        return {}
    return {
        "cursor_column": stage.incremental.cursor,
        "interval_start": "{{ data_interval_start }}",
        "interval_end": "{{ data_interval_end }}",
        "full_refresh": "{{ params.full_refresh }}",
    }


def _embedded(stage: IngestStage, task_id: str) -> Any:
    from asgard_provider.operators.ingest import FileToIcebergOperator, RestToIcebergOperator, SqlToIcebergOperator

    src = stage.source
    if isinstance(src, FileSource):
        return FileToIcebergOperator(
            task_id=task_id,
            path=src.path,
            file_format=src.format,
            conn_id=src.connection,
            columns=src.columns,
            exclude_columns=src.exclude_columns,
            target_table=stage.target,
            partition_by=stage.partition_by,
        )
    if isinstance(src, RestSource):
        return RestToIcebergOperator(
            task_id=task_id,
            rest_conn_id=src.connection,
            resource=src.resource,
            params=src.params,
            record_path=src.record_path,
            pagination=src.pagination.model_dump(),
            columns=src.columns,
            exclude_columns=src.exclude_columns,
            since_param=src.since_param,
            until_param=src.until_param,
            connect_timeout=src.connect_timeout_seconds,
            read_timeout=src.read_timeout_seconds,
            target_table=stage.target,
            partition_by=stage.partition_by,
            batch_rows=stage.batch_rows,
            **_incremental(stage),
        )
    assert src is not None  # guaranteed by IngestStage validation
    return SqlToIcebergOperator(
        task_id=task_id,
        source_conn_id=src.connection,
        source_table=src.table,
        columns=src.columns,
        exclude_columns=src.exclude_columns,
        connect_timeout=src.connect_timeout_seconds,
        statement_timeout=src.statement_timeout_seconds,
        target_table=stage.target,
        partition_by=stage.partition_by,
        batch_rows=stage.batch_rows,
        **_incremental(stage),
    )


def build(node: Node, base: Path) -> Built:
    """Build the ingest task (or Airbyte trigger + sensor); the last one publishes the Bronze table."""
    from asgard_provider.assets import table_asset

    stage: IngestStage = node.config
    if stage.engine == "airbyte":
        built = _airbyte(stage, *node.spec.tasks)
    else:
        task = _embedded(stage, node.spec.tasks[0])
        built = Built(entry=task, exit=task)
    built.exit.outlets = [table_asset(stage.target)]
    return built


def params(stage: IngestStage) -> dict[str, Any]:
    """``full_refresh`` on the trigger form when the stage reads incrementally."""
    if stage.incremental is None:
        return {}
    from airflow.sdk import Param

    return {
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Reload every source table completely instead of the run's data interval.",
        )
    }


def on_schedule(stage: IngestStage, where: str, schedule: str | None) -> tuple[str, ...]:
    """``@continuous`` runs have no data interval to read, so an incremental read fails every run."""
    if schedule == "@continuous" and stage.incremental is not None:
        return (
            f"{where}.incremental: '@continuous' runs have no data interval to read; "
            "use a cron schedule (e.g. '@hourly') or drop 'incremental'",
        )
    return ()


KIND = StageKind(key="ingest", model=IngestStage, spec=spec, build=build, params=params, on_schedule=on_schedule)
