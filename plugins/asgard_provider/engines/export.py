"""Export an Iceberg table's current snapshot as Parquet or CSV files for consumers outside the catalog (no Airflow).

The files of one export are a set: ``part-<n>-<token>.<format>`` plus the ``_SUCCESS`` manifest listing them. A run
writes its files under ``_staging-<token>/`` in the destination, moves them into place, then writes the manifest,
and only then deletes the previous set. A failed export deletes what it wrote, so the destination keeps the
previous complete set; a rerun replaces the set, never adds to it. Readers that need one consistent set read the
manifest: a plain glob can see both sets during the moment between the moves and the deletes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from asgard_provider.engines.iceberg_tables import load_table
from asgard_provider.exceptions import ExportError, PathEscapeError
from asgard_provider.paths import contained

#: File formats an export writes.
EXPORT_FORMATS = ("parquet", "csv")
#: The manifest naming the files of the current set; written last, so its presence means the set is complete.
MANIFEST = "_SUCCESS"
#: How a local destination starts: exports stay under ``$ASGARD_HOME``.
LOCAL_PREFIX = "${ASGARD_HOME}/"
#: How an object-storage destination starts.
S3_PREFIX = "s3://"
#: Rows per file unless configured.
DEFAULT_ROWS_PER_FILE = 1_000_000
_STAGING = "_staging-"
_PART = "part-"


def resolve_destination(to: str, asgard_home: Path) -> str:
    """Return ``to`` as the export engine takes it: ``s3://bucket/prefix``, or an absolute path under ``asgard_home``.

    A local ``to`` is ``${ASGARD_HOME}/<relative path>``; one that leaves ``$ASGARD_HOME`` raises ``ExportError``.
    """
    if to.startswith(S3_PREFIX):
        return to.rstrip("/")
    if not to.startswith(LOCAL_PREFIX):
        raise ExportError(f"export destination {to!r} is neither {S3_PREFIX}bucket/prefix nor {LOCAL_PREFIX}<path>")
    try:
        return str(contained(asgard_home, to.removeprefix(LOCAL_PREFIX).rstrip("/"), "$ASGARD_HOME"))
    except PathEscapeError as exc:
        raise ExportError(f"export destination {to!r}: {exc}") from None


def uri_of(destination: str) -> str:
    """Return the URI of a resolved destination: ``s3://...`` as is, a local path as ``file://<path>``."""
    return destination if destination.startswith(S3_PREFIX) else Path(destination).as_uri()


@dataclass(frozen=True)
class ExportSpec:
    """What to export: ``table``'s current snapshot (``columns`` of it) to ``to`` (a resolved destination) as files.

    With ``date_column``, only the rows of the ``as_of`` day are exported, to ``<to>/<date_column>=<as_of>/``.
    """

    table: str
    to: str
    format: str = "parquet"
    columns: Sequence[str] | None = None
    date_column: str | None = None
    as_of: date | None = None
    rows_per_file: int = DEFAULT_ROWS_PER_FILE

    def destination(self) -> str:
        """Where this export's file set goes: ``to``, or its ``<date_column>=<as_of>`` folder."""
        if self.date_column is None:
            return self.to
        if self.as_of is None:
            raise ExportError(f"export of {self.table} by {self.date_column!r} needs the run's as_of date")
        return f"{self.to}/{self.date_column}={self.as_of.isoformat()}"


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote: the snapshot read, the destination, its files (URIs or paths), rows, bytes, schema."""

    table: str
    snapshot_id: int
    destination: str
    files: tuple[str, ...]
    rows: int
    bytes: int
    fields: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the result as the plain mapping tasks return (XCom)."""
        return {
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "destination": self.destination,
            "files": list(self.files),
            "rows": self.rows,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class _File:
    name: str
    rows: int
    bytes: int


def export_table(catalog: Any, filesystem: Any, spec: ExportSpec, log: logging.Logger) -> ExportResult:
    """Export ``spec.table``'s current snapshot to ``spec.destination()`` on ``filesystem`` (a ``pyarrow.fs``)."""
    if spec.format not in EXPORT_FORMATS:
        raise ExportError(f"export format {spec.format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    table = load_table(catalog, spec.table)
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise ExportError(f"Iceberg table {spec.table} has no snapshot yet: nothing to export")
    scan = table.scan(
        row_filter=_row_filter(table, spec), selected_fields=_fields(table, spec), snapshot_id=snapshot.snapshot_id
    )
    reader = scan.to_arrow_batch_reader()
    destination = spec.destination()
    log.info("exporting %s (snapshot %s) to %s", spec.table, snapshot.snapshot_id, destination)
    folder = destination.removeprefix(S3_PREFIX)
    written = _write_set(filesystem, folder, reader, spec, snapshot.snapshot_id)
    prefix = S3_PREFIX if destination.startswith(S3_PREFIX) else ""
    return ExportResult(
        table=spec.table,
        snapshot_id=snapshot.snapshot_id,
        destination=destination,
        files=tuple(f"{prefix}{folder}/{f.name}" for f in written),
        rows=sum(f.rows for f in written),
        bytes=sum(f.bytes for f in written),
        fields=tuple((f.name, str(f.type)) for f in reader.schema),
    )


def _write_set(filesystem: Any, folder: str, reader: Any, spec: ExportSpec, snapshot_id: int) -> list[_File]:
    """Stage the files, put them and the manifest in place, then delete the previous set; return the files."""
    token = uuid.uuid4().hex[:12]
    staging = f"{folder}/{_STAGING}{token}"
    try:
        written = _write_files(filesystem, staging, reader, spec, token)
        _put_in_place(filesystem, folder, staging, written, _manifest(spec, snapshot_id, reader.schema, written))
    finally:
        _delete_dir(filesystem, staging)
    _drop_previous(filesystem, folder, {f.name for f in written})
    return written


def _fields(table: Any, spec: ExportSpec) -> tuple[str, ...]:
    """Return the columns to read: ``spec.columns`` (each must exist), else all."""
    names = [f.name for f in table.schema().fields]
    if not spec.columns:
        return ("*",)
    missing = [c for c in spec.columns if c not in names]
    if missing:
        raise ExportError(
            f"export of {spec.table}: columns {', '.join(repr(c) for c in missing)} are not columns of the table "
            f"(it has {', '.join(names)})"
        )
    return tuple(spec.columns)


def _row_filter(table: Any, spec: ExportSpec) -> str:
    """Iceberg filter for the ``as_of`` day of ``date_column`` (a date or timestamp column), or every row."""
    if spec.date_column is None:
        return "True"
    column = spec.date_column
    try:
        kind = str(table.schema().find_field(column, case_sensitive=True).field_type)
    except ValueError:
        raise ExportError(f"export of {spec.table}: date column {column!r} is not a column of the table") from None
    day = spec.as_of
    assert day is not None  # destination() requires it first
    lo, hi = day.isoformat(), (day + timedelta(days=1)).isoformat()
    if kind == "timestamptz":
        lo, hi = f"{lo}T00:00:00+00:00", f"{hi}T00:00:00+00:00"
    elif kind == "timestamp":
        lo, hi = f"{lo}T00:00:00", f"{hi}T00:00:00"
    elif kind != "date":
        raise ExportError(f"export of {spec.table}: date column {column!r} is {kind}, not a date or timestamp")
    return f"{column} >= '{lo}' AND {column} < '{hi}'"


def _write_files(filesystem: Any, staging: str, reader: Any, spec: ExportSpec, token: str) -> list[_File]:
    """Write the reader's batches to files of at most ``rows_per_file`` rows in ``staging`` (at least one file)."""
    filesystem.create_dir(staging, recursive=True)
    written: list[_File] = []
    batches = _bounded(reader, spec.rows_per_file)
    chunk = next(batches, None)
    while True:
        name = f"{_PART}{len(written):05d}-{token}.{spec.format}"
        path = f"{staging}/{name}"
        rows = 0
        with filesystem.open_output_stream(path) as sink, _writer(sink, reader.schema, spec.format) as writer:
            while chunk is not None and rows + chunk.num_rows <= spec.rows_per_file:
                writer.write_batch(chunk)
                rows += chunk.num_rows
                chunk = next(batches, None)
        written.append(_File(name, rows, filesystem.get_file_info(path).size))
        if chunk is None:
            return written


def _bounded(reader: Any, rows_per_file: int) -> Iterator[pa.RecordBatch]:
    """Yield the reader's batches, none longer than ``rows_per_file`` rows."""
    for batch in reader:
        for start in range(0, batch.num_rows, rows_per_file):
            yield batch.slice(start, rows_per_file)


def _writer(sink: Any, schema: pa.Schema, file_format: str) -> Any:
    if file_format == "csv":
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(sink, schema)
    import pyarrow.parquet as pq

    return pq.ParquetWriter(sink, schema)


def _manifest(spec: ExportSpec, snapshot_id: int, schema: pa.Schema, files: list[_File]) -> dict[str, Any]:
    return {
        "table": spec.table,
        "snapshot_id": snapshot_id,
        "format": spec.format,
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "files": [{"name": f.name, "rows": f.rows, "bytes": f.bytes} for f in files],
    }


def _put_in_place(filesystem: Any, folder: str, staging: str, files: list[_File], manifest: dict[str, Any]) -> None:
    """Move the staged files into ``folder``, then replace the manifest; on failure delete the moved files."""
    moved: list[str] = []
    try:
        for f in files:
            filesystem.move(f"{staging}/{f.name}", f"{folder}/{f.name}")
            moved.append(f"{folder}/{f.name}")
        with filesystem.open_output_stream(f"{staging}/{MANIFEST}") as out:
            out.write(json.dumps(manifest, indent=2).encode())
        filesystem.move(f"{staging}/{MANIFEST}", f"{folder}/{MANIFEST}")
    except BaseException:
        for path in moved:
            filesystem.delete_file(path)
        raise


def _drop_previous(filesystem: Any, folder: str, keep: set[str]) -> None:
    """Delete the files of earlier sets (and staging folders of failed attempts) from ``folder``."""
    from pyarrow import fs

    for info in filesystem.get_file_info(fs.FileSelector(folder)):
        if info.type == fs.FileType.File and info.base_name.startswith(_PART) and info.base_name not in keep:
            filesystem.delete_file(info.path)
        elif info.type == fs.FileType.Directory and info.base_name.startswith(_STAGING):
            filesystem.delete_dir(info.path)


def _delete_dir(filesystem: Any, path: str) -> None:
    from pyarrow import fs

    if filesystem.get_file_info(path).type == fs.FileType.Directory:
        filesystem.delete_dir(path)
