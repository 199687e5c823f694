"""The production catalog path for real: a PostgreSQL SQL catalog over an ``s3://`` warehouse on moto's S3 server.

S3 settings reach pyiceberg through the ``asgard_iceberg`` connection (extra ``properties``) and credentials come
from the connection or the standard AWS environment variables, never from a pipeline YAML.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from asgard_provider.exceptions import DataQualityError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.checks import IcebergTableCheckOperator

from ..conftest import AS_OF, FEATURE_REFS, PRIOR, customer_metrics, register_operator, run_context, snapshot_time
from ..moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server

pytestmark = pytest.mark.postgres

WAREHOUSE_PREFIX = "warehouse"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    """moto's S3 server on loopback with an empty bucket ``lake``."""
    with s3_server("lake") as server:
        yield server


def _connect(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, database: str, *, keys_in_connection: bool
) -> dict[str, str]:
    """Define the default asgard_iceberg connection: Postgres catalog, S3 warehouse; return its S3 properties."""
    properties = {"s3.endpoint": s3.endpoint, "s3.region": REGION, "s3.path-style-access": "true"}
    if keys_in_connection:
        properties |= {"s3.access-key-id": ACCESS_KEY, "s3.secret-access-key": SECRET_KEY}
    else:  # the Kubernetes way: a Secret exposed as AWS_* variables (env_from)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT",
        json.dumps(
            {
                "conn_type": "asgard_iceberg",
                "host": f"postgresql+psycopg2://127.0.0.1:5432/{database}",
                "login": "postgres",
                "extra": {
                    "catalog_type": "sql",
                    "warehouse": f"s3://{s3.bucket}/{WAREHOUSE_PREFIX}",
                    "properties": properties,
                },
            }
        ),
    )
    return properties


def _catalog_rows(database: str) -> list[tuple[str, str, str, str]]:
    """(catalog, namespace, table, metadata location) rows pyiceberg keeps in Postgres."""
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT catalog_name, table_namespace, table_name, metadata_location FROM iceberg_tables ORDER BY 2, 3"
        )
        return [tuple(row) for row in cur.fetchall()]


def test_hook_writes_and_reads_a_partitioned_table_on_s3(
    asgard_home: Path, postgres_db: str, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(monkeypatch, s3, postgres_db, keys_in_connection=True)
    data = customer_metrics(n=200)
    hook = IcebergHook()
    first = hook.write("gold.customer_metrics", [data], partition_by=["country"])
    assert first["rows_written"] == 400

    # A second commit replaces one partition only; the read goes back through S3.
    se = data.filter(pc.equal(data["country"], "SE"))
    replaced = hook.write(
        "gold.customer_metrics", [se.slice(0, 5)], mode="overwrite", overwrite_filter="country == 'SE'"
    )
    assert replaced["snapshot_id"] != first["snapshot_id"]
    back = IcebergHook().load_table("gold.customer_metrics").scan().to_arrow()
    assert back.num_rows == 400 - se.num_rows + 5
    assert pc.sum(pc.equal(back["country"], "SE")).as_py() == 5
    expected = sorted(
        data.filter(pc.equal(data["country"], "NO")).to_pylist(),
        key=lambda r: (r["customer_id"], r["feature_timestamp"]),
    )
    got = sorted(
        back.filter(pc.equal(back["country"], "NO")).to_pylist(),
        key=lambda r: (r["customer_id"], r["feature_timestamp"]),
    )
    assert got == expected

    # The catalog is in Postgres, the files are in the bucket, nothing is in the local embedded warehouse.
    rows = _catalog_rows(postgres_db)
    assert [(r[0], r[1], r[2]) for r in rows] == [("iceberg", "gold", "customer_metrics")]
    assert rows[0][3].startswith(f"s3://lake/{WAREHOUSE_PREFIX}/gold/customer_metrics/metadata/")
    keys = s3.keys(f"{WAREHOUSE_PREFIX}/gold/customer_metrics/")
    assert any(k.endswith(".metadata.json") for k in keys)
    data_files = [k for k in keys if k.endswith(".parquet")]
    assert {k.split("/data/")[1].split("/")[0] for k in data_files} == {
        "country_part=DK",
        "country_part=NO",
        "country_part=SE",
    }
    assert not (asgard_home / "warehouse").exists()


def test_credentials_from_the_environment_and_the_quality_gate_on_s3(
    asgard_home: Path, postgres_db: str, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = _connect(monkeypatch, s3, postgres_db, keys_in_connection=False)
    assert not any("key" in k for k in props)
    IcebergHook().write("gold.m", [pa.table({"id": list(range(10)), "label": [i % 2 for i in range(10)]})])

    gate = IcebergTableCheckOperator(
        task_id="check", tables=["gold.m"], min_rows=10, unique=[["id"]], accepted_values={"label": [0, 1]}
    )
    result = gate.execute({})
    assert result["gold.m"]["total_records"] == 10
    assert result["gold.m"]["snapshot_id"] == IcebergHook().load_table("gold.m").current_snapshot().snapshot_id

    IcebergHook().write("gold.m", [pa.table({"id": [3], "label": [7]})], mode="append")
    with pytest.raises(DataQualityError) as info:
        gate.execute({})
    assert "gold.m: 1 duplicated keys (id) (unique)" in str(info.value)
    assert "gold.m.label: values [7] not in [0, 1] (accepted_values)" in str(info.value)


def test_feast_reads_the_s3_table_through_the_catalog(
    asgard_home: Path, postgres_db: str, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys in the connection (the Airflow worker) and in the environment (what a pod gets from its Secret).
    _connect(monkeypatch, s3, postgres_db, keys_in_connection=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    data = customer_metrics(n=300)
    IcebergHook().write("gold.customer_metrics", [data])

    result = register_operator().execute(run_context())
    assert result["materialized_rows"] == 300

    # Offline: Feast's DuckDB store scans the Iceberg table on S3 (IcebergSource -> pyiceberg) point-in-time.
    rows = data.to_pandas().set_index(["customer_id", "feature_timestamp"])
    entity_df = pd.DataFrame(
        {
            "customer_id": [1001, 1002],
            "event_timestamp": pd.to_datetime([snapshot_time(PRIOR), snapshot_time(AS_OF)], utc=True),
        }
    )
    out = FeastHook().historical_features(entity_df, FEATURE_REFS).set_index("customer_id")
    assert out.loc[1001, "total_purchases"] == rows.loc[(1001, snapshot_time(PRIOR)), "total_purchases"]
    assert out.loc[1002, "customer_lifetime_value"] == pytest.approx(
        rows.loc[(1002, snapshot_time(AS_OF)), "customer_lifetime_value"]
    )
    # Online: the materialized latest snapshot.
    online = FeastHook().online_features(FEATURE_REFS[:1], [{"customer_id": 1003}])
    assert online["total_purchases"] == [rows.loc[(1003, snapshot_time(AS_OF)), "total_purchases"]]

    # The registry stores the source's catalog settings without the object-store keys.
    source = FeastHook().get_store().get_data_source("gold_customer_metrics")
    assert source.catalog_properties["s3.endpoint"] == s3.endpoint
    assert source.warehouse == "s3://lake/warehouse"
    assert not {k for k in source.catalog_properties if "key" in k}
    assert SECRET_KEY not in str(source.to_proto())
