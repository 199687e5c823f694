"""ExportOperator: credentials from the Airflow connection, the file set as asset event and lineage output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from asgard_provider.exceptions import CatalogError, ExportError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.export import ExportOperator, export_asset

from ..engines.test_export import DAY, TABLE, _scores
from ..moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto's S3 server with a bucket ``share``, reached through the Airflow connection ``share_s3``."""
    with s3_server("share") as server:
        conn = {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"region_name": REGION, "endpoint_url": server.endpoint},
        }
        monkeypatch.setenv("AIRFLOW_CONN_SHARE_S3", json.dumps(conn))
        yield server


def _run(op: ExportOperator) -> tuple[dict, dict]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    events = OutletEventAccessors()
    result = op.execute({"task": op, "outlet_events": events})  # type: ignore[arg-type]
    return result, dict(events[op.outlets[0]].extra)


def test_s3_export_publishes_the_file_set(asgard_home: Path, s3: S3Server, caplog: pytest.LogCaptureFixture) -> None:
    IcebergHook().write(TABLE, [_scores()], partition_by=["as_of_date"])
    to = "s3://share/scores/"
    op = ExportOperator(
        task_id="export_scores",
        table=TABLE,
        to=to,
        conn_id="share_s3",
        columns=["entity_id", "score"],
        date_column="as_of_date",
        as_of=DAY.isoformat(),
    )
    op.outlets = [export_asset(to)]
    assert (op.outlets[0].name, op.outlets[0].uri) == ("files:s3://share/scores", "s3://share/scores")
    with caplog.at_level(logging.INFO):
        result, extra = _run(op)

    snapshot = IcebergHook().load_table(TABLE).current_snapshot().snapshot_id
    folder = f"s3://share/scores/as_of_date={DAY}"
    assert extra == {
        "table": TABLE,
        "snapshot_id": snapshot,
        "rows": 100,
        "files": 1,
        "bytes": result["bytes"],
        "destination": folder,
    }
    assert result["files"] == [k for k in (f"s3://share/{key}" for key in s3.keys("scores/")) if k.endswith(".parquet")]
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("iceberg://iceberg", TABLE)]
    (out,) = lineage.outputs
    assert (out.namespace, out.name) == ("s3://share", f"scores/as_of_date={DAY}")
    assert [(f.name, f.type) for f in out.facets["schema"].fields] == [("entity_id", "int64"), ("score", "double")]
    assert out.outputFacets["outputStatistics"].rowCount == 100
    assert SECRET_KEY not in caplog.text + json.dumps(result)


def test_local_export_is_a_file_uri_under_asgard_home(asgard_home: Path) -> None:
    IcebergHook().write(TABLE, [_scores()])
    to = "${ASGARD_HOME}/exports/scores"
    op = ExportOperator(task_id="export_scores", table=TABLE, to=to, file_format="csv")
    op.outlets = [export_asset(to)]
    assert op.outlets[0].uri == (asgard_home / "exports" / "scores").as_uri()
    result, extra = _run(op)
    assert extra["rows"] == result["rows"] == 200
    assert result["destination"] == str(asgard_home / "exports" / "scores")
    (lineage,) = op.get_openlineage_facets_on_complete(None).outputs
    assert (lineage.namespace, lineage.name) == ("file", result["destination"])


def test_bad_as_of_and_missing_table_fail_naming_them(asgard_home: Path) -> None:
    op = ExportOperator(task_id="e", table=TABLE, to="${ASGARD_HOME}/x", date_column="as_of_date", as_of="11/11/2025")
    with pytest.raises(ExportError, match=r"as_of '11/11/2025' is not a date"):
        op.execute({})  # type: ignore[arg-type]
    op = ExportOperator(task_id="e", table="gold.nothing", to="${ASGARD_HOME}/x")
    with pytest.raises(CatalogError, match=r"gold\.nothing does not exist"):
        op.execute({})  # type: ignore[arg-type]
    assert not (asgard_home / "x").exists()


def test_parquet_files_read_back_with_pyarrow(asgard_home: Path) -> None:
    data = _scores(days=1)
    IcebergHook().write(TABLE, [data])
    op = ExportOperator(task_id="e", table=TABLE, to="${ASGARD_HOME}/exports/s", rows_per_file=64)
    result = op.execute({})  # type: ignore[arg-type]
    back = pq.ParquetDataset(result["destination"]).read()  # a reader of the folder ignores _SUCCESS
    assert sorted(back.column("entity_id").to_pylist()) == sorted(data.column("entity_id").to_pylist())
    assert len(result["files"]) == 2
