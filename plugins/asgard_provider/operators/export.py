"""Export an Iceberg table as Parquet or CSV files for consumers outside the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from asgard_provider.assets import files_asset
from asgard_provider.engines.export import (
    DEFAULT_ROWS_PER_FILE,
    S3_PREFIX,
    ExportResult,
    ExportSpec,
    export_table,
    resolve_destination,
    uri_of,
)
from asgard_provider.exceptions import ExportError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.lineage import LineageMixin
from asgard_provider.publishing import Dataset, publish_outcome
from asgard_provider.settings import asgard_home
from asgard_provider.stages.export import files_name


def export_asset(to: str) -> Asset:
    """Return the Asset of the file set an export to ``to`` writes, at its URI.

    Named ``files:<destination>`` with ``${ASGARD_HOME}`` resolved: Airflow deactivates an asset whose name
    reappears with another URI, so the name follows the URI (another ``$ASGARD_HOME`` is another asset).
    """
    destination = resolve_destination(to, asgard_home())
    return files_asset(files_name(destination), uri_of(destination))


class ExportOperator(LineageMixin, BaseOperator):
    """Write an Iceberg table's current snapshot as Parquet or CSV files (:mod:`asgard_provider.engines.export`).

    Each run replaces the file set in ``to`` (with ``date_column``, only the ``<date_column>=<as_of>/`` folder):
    the files are staged, moved into place and listed in ``_SUCCESS``, and a failed export leaves the previous
    set. Outlets whose URI is the destination's (``s3://...``, ``file://...``) get the asset event.

    :param table: ``namespace.table`` to export (templated).
    :param to: ``s3://bucket/prefix`` or ``${ASGARD_HOME}/<path>``.
    :param file_format: ``parquet`` or ``csv``.
    :param conn_id: Airflow ``aws`` connection for ``s3://`` (keys, extra ``region_name``, ``endpoint_url``).
    :param columns: columns to export (default: all).
    :param date_column: export only the ``as_of`` day of this date or timestamp column.
    :param as_of: the day (templated, e.g. ``{{ data_interval_end | ds }}``); used with ``date_column``.
    """

    template_fields: Sequence[str] = ("table", "as_of")
    ui_color = "#8fbc8f"

    def __init__(
        self,
        *,
        table: str,
        to: str,
        file_format: str = "parquet",
        conn_id: str | None = None,
        columns: Sequence[str] | None = None,
        date_column: str | None = None,
        as_of: str | None = None,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.to = to
        self.file_format = file_format
        self.conn_id = conn_id
        self.columns = list(columns) if columns else None
        self.date_column = date_column
        self.as_of = as_of
        self.rows_per_file = rows_per_file
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Export the table; return its snapshot id, the destination, the files, rows and bytes."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        destination = resolve_destination(self.to, asgard_home())
        spec = ExportSpec(
            table=self.table,
            to=destination,
            format=self.file_format,
            columns=self.columns,
            date_column=self.date_column,
            as_of=_day(self.as_of) if self.date_column else None,
            rows_per_file=self.rows_per_file,
        )
        result = export_table(iceberg.catalog, self._filesystem(destination), spec, self.log)
        self.log.info("%s -> %s: %d rows in %d file(s), %d bytes", self.table, result.destination, result.rows,
                      len(result.files), result.bytes)  # fmt: skip
        extra = {"table": result.table, "snapshot_id": result.snapshot_id, "rows": result.rows,
                 "files": len(result.files), "bytes": result.bytes, "destination": result.destination}  # fmt: skip
        uri = uri_of(destination)
        publish_outcome(
            self,
            context,
            read=[Dataset(self.table)],
            wrote=[_files_dataset(result)],
            events={asset: extra for asset in self.outlets if getattr(asset, "uri", None) == uri},
            iceberg=iceberg,
        )
        return result.as_dict()

    def _filesystem(self, destination: str) -> Any:
        """Return the ``pyarrow.fs`` filesystem of the destination: S3 with the connection's keys, or local."""
        from pyarrow import fs

        if not destination.startswith(S3_PREFIX):
            return fs.LocalFileSystem()
        from asgard_provider.hooks.object_store import ObjectStoreHook

        return ObjectStoreHook(self.conn_id).credentials.filesystem()


def _day(value: str | None) -> date:
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ExportError(f"as_of {value!r} is not a date (YYYY-MM-DD)") from None


def _files_dataset(result: ExportResult) -> Dataset:
    """Return the file set as a lineage dataset: ``s3://<bucket>`` and the key prefix, or ``file`` and the path."""
    if result.destination.startswith(S3_PREFIX):
        bucket, _, prefix = result.destination.removeprefix(S3_PREFIX).partition("/")
        return Dataset(prefix, namespace=f"{S3_PREFIX}{bucket}", rows=result.rows, fields=result.fields)
    return Dataset(result.destination, namespace="file", rows=result.rows, fields=result.fields)
