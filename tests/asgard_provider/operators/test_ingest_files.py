"""Object-storage and local file sources: s3:// globs on the loopback S3 server, formats, credentials, errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.ingest import FileToIcebergOperator

from ..moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server

CONTEXT = {"run_id": "manual__files"}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The loopback S3 server with three Parquet parts, two CSV parts and an unrelated object."""
    with s3_server("exports") as server:
        client = server.client()
        for part in range(3):
            buf = io.BytesIO()
            pq.write_table(pa.table({"order_id": list(range(part * 10, part * 10 + 10)), "email": ["x@y.z"] * 10}), buf)
            client.put_object(Bucket="exports", Key=f"orders/2025-11/part-{part}.parquet", Body=buf.getvalue())
        for part in range(2):
            client.put_object(Bucket="exports", Key=f"csv/day-{part}.csv", Body=f"id,v\n{part},a\n{part + 10},b\n")
        client.put_object(Bucket="exports", Key="orders/2025-11/_SUCCESS", Body=b"")
        monkeypatch.setenv(
            "AIRFLOW_CONN_TEST_S3",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": ACCESS_KEY,
                    "password": SECRET_KEY,
                    "extra": {"region_name": REGION, "endpoint_url": server.endpoint},
                }
            ),
        )
        yield server


def _rows(table: str) -> pa.Table:
    return IcebergHook().load_table(table).scan().to_arrow()


def test_s3_parquet_glob_lands_in_one_snapshot_without_excluded_columns(asgard_home: Path, s3: S3Server) -> None:
    op = FileToIcebergOperator(
        task_id="i",
        path="s3://exports/orders/*/part-*.parquet",
        file_format="parquet",
        conn_id="test_s3",
        target_table="bronze.orders",
        exclude_columns=["email"],
    )
    assert op.execute(CONTEXT)["rows_written"] == 30
    data = _rows("bronze.orders")
    assert sorted(data.column("order_id").to_pylist()) == list(range(30))
    assert data.column_names == ["order_id"]


def test_s3_csv_glob(asgard_home: Path, s3: S3Server) -> None:
    op = FileToIcebergOperator(
        task_id="i", path="s3://exports/csv/day-*.csv", file_format="csv", conn_id="test_s3", target_table="bronze.c"
    )
    assert op.execute(CONTEXT)["rows_written"] == 4
    assert sorted(_rows("bronze.c").column("id").to_pylist()) == [0, 1, 10, 11]


def test_s3_glob_matching_nothing_names_the_path(asgard_home: Path, s3: S3Server) -> None:
    op = FileToIcebergOperator(
        task_id="i",
        path="s3://exports/nope/*.parquet",
        file_format="parquet",
        conn_id="test_s3",
        target_table="bronze.orders",
    )
    with pytest.raises(SourceError, match=r"no file matches s3://exports/nope/\*\.parquet"):
        op.execute(CONTEXT)
    assert not IcebergHook().table_exists("bronze.orders")


def test_credentials_never_show_in_repr(s3: S3Server) -> None:
    from asgard_provider.hooks.object_store import ObjectStoreHook

    credentials = ObjectStoreHook("test_s3").credentials
    assert credentials.secret_key == SECRET_KEY
    assert SECRET_KEY not in repr(credentials) and ACCESS_KEY not in repr(credentials)


def test_local_jsonl_glob_and_bad_file_names_the_file(asgard_home: Path) -> None:
    folder = asgard_home / "exports"
    folder.mkdir()
    for part in range(2):
        (folder / f"t-{part}.jsonl").write_text("".join(json.dumps({"id": part * 5 + i}) + "\n" for i in range(5)))
    op = FileToIcebergOperator(task_id="i", path="${ASGARD_HOME}/exports/t-*.jsonl", target_table="bronze.t")
    assert op.execute(CONTEXT)["rows_written"] == 10
    (folder / "t-2.jsonl").write_text('{"id": 1}\n{broken\n')
    with pytest.raises(SourceError, match=r"cannot read jsonl file .*t-2\.jsonl"):
        op.execute(CONTEXT)
    assert _rows("bronze.t").num_rows == 10  # the failed run left the previous snapshot
