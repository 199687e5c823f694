"""Embedded ingestion: source tables and files into Bronze Iceberg tables, streamed in bounded batches.

Each load commits on the run's branch (``run_<run id>``) and publishes it to main once the commit succeeded
(write-audit-publish, :func:`asgard_provider.engines.ingest.load`); only then is the table's asset event emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.catalog import split_table_name
from asgard_provider.engines import ingest
from asgard_provider.engines.iceberg_tables import WriteResult
from asgard_provider.engines.ingest import Load, Window
from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.rest_source import RestSourceHook
from asgard_provider.hooks.sql_source import SqlSourceHook
from asgard_provider.lineage import LineageMixin, sql_source_namespace
from asgard_provider.publishing import Dataset, publish_outcome
from asgard_provider.sources.common import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_STATEMENT_TIMEOUT_S
from asgard_provider.values import expand_env


class SqlToIcebergOperator(LineageMixin, BaseOperator):
    """Copy a source database table into an Iceberg table in one atomic commit.

    Full refresh by default. With ``cursor_column``, only rows with ``interval_start <= cursor < interval_end``
    are read, and exactly that slice of the target is replaced: rerunning an interval never duplicates rows.

    :param source_conn_id: Airflow connection of the source database (sqlite, postgres or mysql).
    :param source_table: table to read.
    :param target_table: ``namespace.table`` in the shared catalog, e.g. ``bronze.orders``.
    :param batch_rows: rows per Arrow batch; bounds the task's memory.
    :param cursor_column: column for interval reads (timestamp or date); ``None`` = full refresh.
    :param interval_start: inclusive lower bound (templated, e.g. ``{{ data_interval_start }}``).
    :param interval_end: exclusive upper bound (templated, e.g. ``{{ data_interval_end }}``).
    :param full_refresh: ignore the cursor and reload the whole table (templated, e.g. ``{{ params.full_refresh }}``).
    :param columns: columns to copy (default: all); ``exclude_columns``: columns never copied.
    :param connect_timeout: seconds to reach the source; ``statement_timeout``: seconds it may take per batch.
    """

    template_fields: Sequence[str] = ("source_table", "target_table", "interval_start", "interval_end", "full_refresh")
    ui_color = "#cd7f32"

    def __init__(
        self,
        *,
        source_conn_id: str,
        source_table: str,
        target_table: str,
        columns: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        partition_by: Sequence[str] = (),
        batch_rows: int = 100_000,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT_S,
        cursor_column: str | None = None,
        interval_start: str | None = None,
        interval_end: str | None = None,
        full_refresh: bool | str = False,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cursor_column = cursor_column
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.full_refresh = full_refresh
        self.source_conn_id = source_conn_id
        self.source_table = source_table
        self.target_table = target_table
        self.columns = columns
        self.exclude_columns = exclude_columns
        self.partition_by = list(partition_by)
        self.batch_rows = batch_rows
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.iceberg_conn_id = iceberg_conn_id
        self._source: SqlSourceHook | None = None

    def on_kill(self) -> None:
        """Stop a running read (Airflow calls this on SIGTERM); the write then never commits."""
        if self._source is not None:
            self._source.cancel()

    def execute(self, context: Context) -> dict[str, Any]:
        """Stream the source table into the target table and return rows written and snapshot id."""
        split_table_name(self.target_table)
        source = self._source = SqlSourceHook(
            self.source_conn_id, connect_timeout=self.connect_timeout, statement_timeout=self.statement_timeout
        )
        iceberg = IcebergHook(self.iceberg_conn_id)
        window = ingest.window(
            self.cursor_column, self.interval_start, self.interval_end, self.full_refresh, self.source_table
        )
        bounds: dict[str, Any] = {}
        if window is not None:
            bounds = {"cursor_column": self.cursor_column, "lower": window.lower, "upper": window.upper}
            self.log.info("incremental read of %s: %s in %s", self.source_table, self.cursor_column, window.label())
        batches = source.stream_table(
            self.source_table,
            columns=self.columns,
            exclude_columns=self.exclude_columns,
            batch_rows=self.batch_rows,
            **bounds,
        )
        spec = _load(self, context, f"{self.source_conn_id}:{self.source_table}", window)
        result = ingest.load(iceberg.catalog, batches, spec, self.log)
        conn = source.get_connection(self.source_conn_id)
        name = f"{conn.schema}.{self.source_table}" if conn.schema else self.source_table
        read = Dataset(name, namespace=sql_source_namespace(conn))
        return _publish(self, context, iceberg, result, read, f"{self.source_conn_id}.{self.source_table}")


def _snapshot_properties(context: Context, source: str) -> dict[str, str]:
    return {
        "asgard.source": source,
        "airflow.dag_id": str(context["dag"].dag_id) if "dag" in context else "",
        "airflow.run_id": str(context.get("run_id", "")),
    }


def _load(op: Any, context: Context, source: str, window: Window | None = None) -> Load:
    """Describe the operator's load for the engine: target, partition spec, snapshot properties, window, run."""
    return Load(
        target_table=op.target_table,
        partition_by=op.partition_by,
        snapshot_properties=_snapshot_properties(context, source),
        cursor=getattr(op, "cursor_column", None) if window is not None else None,
        window=window,
        run_id=str(context.get("run_id") or ""),
    )


def _publish(
    op: Any, context: Context, iceberg: IcebergHook, result: WriteResult, read: Dataset, shown: str
) -> dict[str, Any]:
    """Publish a committed load (asset event, lineage from ``read`` to the table); return the task's XCom."""
    if result.snapshot_id is None:  # an empty interval of a table that does not exist yet: nothing committed
        return result.as_dict()
    op.log.info("%s -> %s: %s rows (snapshot %s)", shown, result.table, result.rows_written, result.snapshot_id)
    publish_outcome(
        op,
        context,
        read=[read],
        wrote=[Dataset(result.table, rows=result.rows_written)],
        events={result.table: {"snapshot_id": result.snapshot_id, "rows_written": result.rows_written}},
        iceberg=iceberg,
    )
    return result.as_dict()


class FileToIcebergOperator(LineageMixin, BaseOperator):
    """Load JSON-lines, CSV or Parquet files, local or on S3, into an Iceberg table in one atomic commit.

    ``path`` is one file or a glob (``s3://lake/exports/2025-*/orders-*.parquet``, ``/data/*.csv``); matching
    files are read in name order. A local path may use ``${ASGARD_HOME}``, ``${ASGARD_INCLUDE_DIR}`` and
    ``${AIRFLOW_HOME}``, expanded at run time; any other variable is refused. ``s3://`` paths take their
    credentials from ``conn_id`` (an ``aws`` connection: login = access key, password = secret key, extra
    ``region_name`` and ``endpoint_url``).
    """

    template_fields: Sequence[str] = ("path", "target_table")
    ui_color = "#cd7f32"

    def __init__(
        self,
        *,
        path: str,
        target_table: str,
        file_format: str = "jsonl",
        conn_id: str | None = None,
        columns: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        partition_by: Sequence[str] = (),
        block_bytes: int = 16 << 20,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.target_table = target_table
        self.file_format = file_format
        self.conn_id = conn_id
        self.columns = columns
        self.exclude_columns = exclude_columns
        self.partition_by = list(partition_by)
        self.block_bytes = block_bytes
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Stream the matching files into the target table and return rows written and snapshot id."""
        from asgard_provider.sources.common import Columns
        from asgard_provider.sources.files import FILE_FORMATS, list_files, read_files

        split_table_name(self.target_table)
        if self.file_format not in FILE_FORMATS:
            raise SourceError(f"file_format {self.file_format!r} is not one of {', '.join(FILE_FORMATS)}")
        filesystem, path = self._filesystem()
        files = list_files(filesystem, path, shown=self.path)
        self.log.info("%s: %d file(s) match", self.path, len(files))
        batches = Columns.of(self.columns, self.exclude_columns).apply(
            read_files(filesystem, files, self.file_format, self.block_bytes), f"source file {self.path}"
        )
        iceberg = IcebergHook(self.iceberg_conn_id)
        result = ingest.load(iceberg.catalog, batches, _load(self, context, self.path), self.log)
        remote = self.path.startswith("s3://")
        read = Dataset(self.path if remote else path, namespace="s3" if remote else "file")
        return _publish(self, context, iceberg, result, read, self.path)

    def _filesystem(self) -> tuple[Any, str]:
        """Return the filesystem and the path in it (``bucket/key`` on S3, an absolute local path)."""
        from pyarrow import fs

        from asgard_provider.sources.files import is_remote

        if is_remote(self.path):
            from asgard_provider.hooks.object_store import ObjectStoreHook

            return ObjectStoreHook(self.conn_id).credentials.filesystem(), self.path[len("s3://") :]
        try:
            local = Path(expand_env(self.path)).absolute()
        except ValueError as exc:
            raise SourceError(f"source file {self.path}: {exc}") from None
        return fs.LocalFileSystem(), str(local)


class RestToIcebergOperator(LineageMixin, BaseOperator):
    """Copy a paginated JSON REST resource into an Iceberg table in one atomic commit.

    Full refresh by default. With ``cursor_column``, the run's interval is sent as ``since_param`` (and
    ``until_param``) query parameters, records whose cursor lies outside ``[interval_start, interval_end)``
    are dropped, the cursor is stored as a timestamp, and exactly that slice of the target is replaced.

    :param rest_conn_id: Airflow connection of the API (base URL and credentials).
    :param resource: path under the base URL, e.g. ``v2/orders``.
    :param params: fixed query parameters (no credentials: those come from the connection).
    :param record_path: dot-separated keys to the list of records in each body (``""``: the body is the list).
    :param pagination: :class:`~asgard_provider.sources.rest.Pagination` fields, e.g. ``{"style": "page_number"}``.
    """

    template_fields: Sequence[str] = ("target_table", "interval_start", "interval_end", "full_refresh")
    ui_color = "#cd7f32"

    def __init__(
        self,
        *,
        rest_conn_id: str,
        resource: str,
        target_table: str,
        params: dict[str, str] | None = None,
        record_path: str = "",
        pagination: dict[str, Any] | None = None,
        columns: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        partition_by: Sequence[str] = (),
        batch_rows: int = 100_000,
        cursor_column: str | None = None,
        since_param: str | None = None,
        until_param: str | None = None,
        interval_start: str | None = None,
        interval_end: str | None = None,
        full_refresh: bool | str = False,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout: int = DEFAULT_STATEMENT_TIMEOUT_S,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rest_conn_id = rest_conn_id
        self.resource = resource
        self.target_table = target_table
        self.params = dict(params or {})
        self.record_path = record_path
        self.pagination = dict(pagination or {})
        self.columns = columns
        self.exclude_columns = exclude_columns
        self.partition_by = list(partition_by)
        self.batch_rows = batch_rows
        self.cursor_column = cursor_column
        self.since_param = since_param
        self.until_param = until_param
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.full_refresh = full_refresh
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.iceberg_conn_id = iceberg_conn_id
        self._source: RestSourceHook | None = None

    def on_kill(self) -> None:
        """Stop a running read (Airflow calls this on SIGTERM); the write then never commits."""
        if self._source is not None:
            self._source.cancel()

    def execute(self, context: Context) -> dict[str, Any]:
        """Read every page into the target table and return rows written and snapshot id."""
        from asgard_provider.sources.common import Columns
        from asgard_provider.sources.rest import Pagination, RestRequest

        split_table_name(self.target_table)
        source = self._source = RestSourceHook(
            self.rest_conn_id, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
        )
        window = ingest.window(
            self.cursor_column, self.interval_start, self.interval_end, self.full_refresh, self.resource
        )
        params = dict(self.params)
        if window is not None and self.since_param:
            params[self.since_param] = window.lower.isoformat() + "Z"
        if window is not None and self.until_param:
            params[self.until_param] = window.upper.isoformat() + "Z"
        request = RestRequest(
            self.resource, params=params, record_path=self.record_path, pagination=Pagination(**self.pagination)
        )
        batches = source.stream(
            request,
            columns=Columns.of(self.columns, self.exclude_columns),
            batch_rows=self.batch_rows,
            cursor=self.cursor_column if window else None,
            window=(window.lower, window.upper) if window else None,
        )
        iceberg = IcebergHook(self.iceberg_conn_id)
        spec = _load(self, context, f"{self.rest_conn_id}:{self.resource}", window)
        result = ingest.load(iceberg.catalog, batches, spec, self.log)
        shown = f"{source.endpoint.base_url}/{self.resource}"
        return _publish(self, context, iceberg, result, Dataset(shown, namespace="http"), shown)
