"""Exports of a real Iceberg table as files: local under ASGARD_HOME and on moto's S3 server, replaced per run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from asgard_provider.engines.export import (
    MANIFEST,
    ExportSpec,
    export_table,
    resolve_destination,
)
from asgard_provider.exceptions import ExportError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.sources.files import S3Credentials

from ..moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server

DAY = date(2025, 11, 11)
TABLE = "gold.scores"
LOG = logging.getLogger("test_export")


def _scores(days: int = 2, per_day: int = 100, offset: float = 0.0) -> pa.Table:
    """``per_day`` scores for each of ``days`` dates ending at DAY, partitioned by as_of_date."""
    dates = [DAY - timedelta(days=d) for d in range(days) for _ in range(per_day)]
    ids = [i for _ in range(days) for i in range(per_day)]
    return pa.table(
        {
            "entity_id": pa.array(ids, pa.int64()),
            "score": pa.array([i / per_day + offset for i in ids], pa.float64()),
            "secret_note": pa.array([f"n{i}" for i in ids]),
            "as_of_date": pa.array(dates, pa.date32()),
        }
    )


@pytest.fixture
def table(asgard_home: Path) -> pa.Table:
    data = _scores()
    IcebergHook().write(TABLE, [data], partition_by=["as_of_date"])
    return data


def _rows(data: pa.Table, day: date, columns: list[str]) -> list[dict[str, Any]]:
    mask = pc.equal(data["as_of_date"], pa.scalar(day, pa.date32()))
    return sorted(data.filter(mask).select(columns).to_pylist(), key=lambda r: r["entity_id"])


def _spec(to: str, **overrides: Any) -> ExportSpec:
    kwargs: dict[str, Any] = {
        "table": TABLE,
        "to": to,
        "columns": ["entity_id", "score"],
        "date_column": "as_of_date",
        "as_of": DAY,
        "rows_per_file": 40,
    }
    return ExportSpec(**(kwargs | overrides))


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_local_export_writes_the_days_rows_and_a_rerun_replaces_the_set(asgard_home: Path, table: pa.Table) -> None:
    to = resolve_destination("${ASGARD_HOME}/exports/scores/", asgard_home)
    assert to == str(asgard_home / "exports" / "scores")
    first = export_table(IcebergHook().catalog, fs.LocalFileSystem(), _spec(to), LOG)

    folder = asgard_home / "exports" / "scores" / f"as_of_date={DAY}"
    assert first.destination == str(folder)
    assert first.snapshot_id == IcebergHook().load_table(TABLE).current_snapshot().snapshot_id
    assert (first.rows, len(first.files)) == (100, 3)  # 40 + 40 + 20 rows
    assert first.bytes == sum(Path(f).stat().st_size for f in first.files)
    assert first.fields == (("entity_id", "int64"), ("score", "double"))
    back = pa.concat_tables(pq.read_table(f) for f in first.files)
    assert sorted(back.to_pylist(), key=lambda r: r["entity_id"]) == _rows(table, DAY, ["entity_id", "score"])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [f["name"] for f in manifest["files"]] == [Path(f).name for f in first.files]
    assert (manifest["snapshot_id"], manifest["rows"]) == (first.snapshot_id, 100)

    # The table changes; the rerun of the same day replaces the file set instead of adding to it.
    IcebergHook().write(TABLE, [_scores(days=1, per_day=30, offset=1.0)], overwrite_filter=f"as_of_date == '{DAY}'")
    again = export_table(IcebergHook().catalog, fs.LocalFileSystem(), _spec(to), LOG)
    assert again.snapshot_id != first.snapshot_id
    assert _listing(folder) == sorted([MANIFEST, *(Path(f).name for f in again.files)])
    rows = pa.concat_tables(pq.read_table(f) for f in again.files).to_pylist()
    assert len(rows) == 30 and min(r["score"] for r in rows) >= 1.0

    # Another day goes to its own folder and leaves this one alone.
    other = export_table(IcebergHook().catalog, fs.LocalFileSystem(), _spec(to, as_of=DAY - timedelta(days=1)), LOG)
    assert other.rows == 100
    assert _listing(folder) == sorted([MANIFEST, *(Path(f).name for f in again.files)])


def test_whole_table_csv_export_keeps_every_column(asgard_home: Path, table: pa.Table) -> None:
    to = resolve_destination("${ASGARD_HOME}/exports/all", asgard_home)
    spec = _spec(to, format="csv", columns=None, date_column=None, as_of=None, rows_per_file=1000)
    result = export_table(IcebergHook().catalog, fs.LocalFileSystem(), spec, LOG)
    assert result.destination == to and len(result.files) == 1
    back = pcsv.read_csv(result.files[0])
    assert back.column_names == table.column_names
    assert back.num_rows == result.rows == table.num_rows


class _FailingFilesystem:
    """The local filesystem, failing the ``fail_at``-th call of ``method``."""

    def __init__(self, method: str, fail_at: int) -> None:
        self._local = fs.LocalFileSystem()
        self._method, self._left = method, fail_at

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._local, name)
        if name != self._method:
            return call

        def failing(*args: Any, **kwargs: Any) -> Any:
            self._left -= 1
            if self._left == 0:
                raise OSError(f"injected failure of {name}")
            return call(*args, **kwargs)

        return failing


@pytest.mark.parametrize(("method", "fail_at"), [("open_output_stream", 2), ("move", 2), ("move", 4)])
def test_a_failed_export_leaves_the_previous_set(asgard_home: Path, table: pa.Table, method: str, fail_at: int) -> None:
    to = resolve_destination("${ASGARD_HOME}/exports/scores", asgard_home)
    first = export_table(IcebergHook().catalog, fs.LocalFileSystem(), _spec(to), LOG)
    folder = Path(first.destination)
    before = {p: p.read_bytes() for p in folder.iterdir()}

    IcebergHook().write(TABLE, [_scores(days=1, per_day=30, offset=1.0)], overwrite_filter=f"as_of_date == '{DAY}'")
    # Fails writing the second file, moving the second file, or moving the manifest (the 4th move).
    with pytest.raises(OSError, match="injected failure"):
        export_table(IcebergHook().catalog, _FailingFilesystem(method, fail_at), _spec(to, rows_per_file=10), LOG)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before, "no new file, no staging folder"


def test_missing_columns_are_named(asgard_home: Path, table: pa.Table) -> None:
    to = resolve_destination("${ASGARD_HOME}/exports/scores", asgard_home)
    local = fs.LocalFileSystem()
    with pytest.raises(ExportError, match=r"columns 'scroe' are not columns of the table \(it has entity_id, score"):
        export_table(IcebergHook().catalog, local, _spec(to, columns=["entity_id", "scroe"]), LOG)
    with pytest.raises(ExportError, match="date column 'day' is not a column of the table"):
        export_table(IcebergHook().catalog, local, _spec(to, date_column="day"), LOG)
    with pytest.raises(ExportError, match="date column 'score' is double, not a date or timestamp"):
        export_table(IcebergHook().catalog, local, _spec(to, date_column="score"), LOG)
    assert not (asgard_home / "exports").exists() or not any((asgard_home / "exports").rglob("*.parquet"))


def test_local_destinations_stay_under_asgard_home(asgard_home: Path, tmp_path: Path) -> None:
    (asgard_home / "out").symlink_to(tmp_path)
    for to in ("${ASGARD_HOME}/../elsewhere", "${ASGARD_HOME}/out/x", "/tmp/exports", "${AIRFLOW_HOME}/x"):
        with pytest.raises(ExportError, match=r"export destination"):
            resolve_destination(to, asgard_home)
    assert resolve_destination("s3://lake/exports/", asgard_home) == "s3://lake/exports"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server("share") as server:
        yield server


def _objects(s3: S3Server, prefix: str) -> list[str]:
    """The objects under ``prefix``, without the empty folder markers pyarrow keeps (keys ending in ``/``)."""
    return sorted(key for key in s3.keys(prefix) if not key.endswith("/"))


def test_s3_export_and_rerun_replace_the_objects(asgard_home: Path, table: pa.Table, s3: S3Server) -> None:
    lake = S3Credentials(ACCESS_KEY, SECRET_KEY, region=REGION, endpoint_url=s3.endpoint).filesystem()
    to = resolve_destination("s3://share/partner/scores/", asgard_home)
    first = export_table(IcebergHook().catalog, lake, _spec(to, format="csv"), LOG)
    prefix = f"partner/scores/as_of_date={DAY}/"
    assert first.destination == f"s3://share/{prefix}".rstrip("/")
    assert _objects(s3, prefix) == sorted([prefix + MANIFEST, *(f.removeprefix("s3://share/") for f in first.files)])
    body = s3.client().get_object(Bucket="share", Key=first.files[0].removeprefix("s3://share/"))["Body"].read()
    assert body.splitlines()[0] == b'"entity_id","score"'
    back = pa.concat_tables(pcsv.read_csv(lake.open_input_stream(f.removeprefix("s3://"))) for f in first.files)
    assert sorted(back.to_pylist(), key=lambda r: r["entity_id"]) == _rows(table, DAY, ["entity_id", "score"])

    again = export_table(IcebergHook().catalog, lake, _spec(to, format="csv", rows_per_file=1000), LOG)
    assert _objects(s3, prefix) == sorted([prefix + MANIFEST, again.files[0].removeprefix("s3://share/")])
    manifest = json.loads(s3.client().get_object(Bucket="share", Key=prefix + MANIFEST)["Body"].read())
    assert (manifest["rows"], len(manifest["files"])) == (100, 1)
