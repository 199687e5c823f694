"""SparkHook against a real local Spark: one catalog shared with pyiceberg, one JVM per process."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.catalog import CATALOG_NAME, CatalogSettings
from asgard_provider.exceptions import TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook, find_jars, iceberg_runtime_jar

pytestmark = pytest.mark.spark


def test_jars_are_found() -> None:
    jars = find_jars(CatalogSettings.embedded())
    assert Path(jars[0]) == iceberg_runtime_jar()
    assert iceberg_runtime_jar().name.startswith("iceberg-spark-runtime-3.5_2.12-")
    assert any("sqlite" in Path(j).name for j in jars)
    assert all(Path(j).is_file() for j in jars)


def test_jars_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jar = tmp_path / "only.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv("ASGARD_SPARK_JARS", f"{jar}, ")
    assert find_jars(CatalogSettings.embedded()) == [str(jar)]
    monkeypatch.setenv("ASGARD_SPARK_JARS", f"{jar},{tmp_path / 'missing.jar'}")
    with pytest.raises(TransformError, match=r"missing\.jar"):
        find_jars(CatalogSettings.embedded())


def test_session_conf_defaults_and_catalog(asgard_home: Path) -> None:
    hook = SparkHook()
    conf = hook.session_conf(CatalogSettings.embedded())
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.extensions"] == "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
    catalog = hook.catalog_conf(CatalogSettings.embedded())
    assert catalog["spark.sql.catalog.iceberg.uri"] == f"jdbc:sqlite:{asgard_home / 'catalog.db'}"
    assert catalog["spark.sql.catalog.iceberg.jdbc.schema-version"] == "V1"
    assert catalog["spark.sql.catalog.iceberg.jdbc.init-catalog-tables"] == "false"
    assert catalog["spark.sql.catalog.iceberg.cache-enabled"] == "false"


def test_connection_sets_master_and_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MY_SPARK",
        json.dumps(
            {
                "conn_type": "asgard_spark",
                "host": "local[1]",
                "extra": {"conf": {"spark.sql.shuffle.partitions": "2", "spark.executor.memory": "1g"}},
            }
        ),
    )
    conf = SparkHook("my_spark").session_conf(CatalogSettings.embedded())
    assert conf["spark.master"] == "local[1]"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.executor.memory"] == "1g"


def test_undefined_named_connection_fails() -> None:
    with pytest.raises(TransformError, match="'no_such_spark' is not defined"):
        SparkHook("no_such_spark").session_conf(CatalogSettings.embedded())


def test_pyiceberg_table_read_and_spark_table_written(asgard_home: Path) -> None:
    iceberg = IcebergHook()
    iceberg.write("bronze.items", [pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", None]})])

    spark = SparkHook().get_session(iceberg.settings)
    rows = spark.sql("SELECT id, name FROM iceberg.bronze.items ORDER BY id").collect()
    assert [(r.id, r.name) for r in rows] == [(1, "a"), (2, "b"), (3, None)]

    spark.sql("CREATE NAMESPACE IF NOT EXISTS iceberg.silver")
    spark.sql(
        "CREATE TABLE iceberg.silver.items USING iceberg PARTITIONED BY (bucket(4, id)) "
        "AS SELECT id, upper(name) AS name FROM iceberg.bronze.items"
    )
    table = iceberg.load_table("silver.items")
    assert table.spec().fields[0].transform.num_buckets == 4
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "name": "A"},
        {"id": 2, "name": "B"},
        {"id": 3, "name": None},
    ]

    # Spark keeps its catalog connections open: pyiceberg must still be able to commit, and Spark must see it.
    iceberg.write("bronze.items", [pa.table({"id": pa.array([4], pa.int64()), "name": ["d"]})], mode="append")
    assert spark.sql("SELECT count(*) AS n FROM iceberg.bronze.items").collect()[0].n == 4


def test_spark_first_on_a_fresh_catalog(asgard_home: Path) -> None:
    spark = SparkHook().get_session(CatalogSettings.embedded())
    spark.sql("CREATE NAMESPACE iceberg.gold")
    spark.sql("CREATE TABLE iceberg.gold.scores USING iceberg AS SELECT 7L AS customer_id, 0.5D AS score")
    with sqlite3.connect(asgard_home / "catalog.db") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(iceberg_tables)")}
    assert "iceberg_type" in columns  # the V1 schema pyiceberg expects
    assert IcebergHook().load_table("gold.scores").scan().to_arrow().to_pylist() == [{"customer_id": 7, "score": 0.5}]


def test_sessions_reused_per_catalog(tmp_path: Path) -> None:
    first = CatalogSettings(uri=f"sqlite:///{tmp_path / 'a' / 'catalog.db'}", warehouse=f"file://{tmp_path / 'a'}")
    second = CatalogSettings(uri=f"sqlite:///{tmp_path / 'b' / 'catalog.db'}", warehouse=f"file://{tmp_path / 'b'}")
    hook = SparkHook()
    session = hook.get_session(first)
    assert SparkHook().get_session(first) is session
    other = hook.get_session(second)
    assert other is not session
    assert other.sparkContext is session.sparkContext
    session.sql("CREATE NAMESPACE iceberg.only_in_a")
    names = {row[0] for row in other.sql("SHOW NAMESPACES IN iceberg").collect()}
    assert "only_in_a" not in names


@pytest.fixture
def postgres_catalog(tmp_path: Path) -> Iterator[CatalogSettings]:
    """A SQL catalog in a throwaway PostgreSQL database (dropped afterwards, Spark's connections included)."""
    import psycopg2

    name = f"asgard_spark_test_{os.getpid()}"
    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield CatalogSettings(
            uri=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", warehouse=(tmp_path / "warehouse").as_uri()
        )
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.postgres
def test_postgres_catalog_shared_with_pyiceberg(postgres_catalog: CatalogSettings) -> None:
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(CATALOG_NAME, **postgres_catalog.pyiceberg_properties())
    catalog.create_namespace("bronze")
    table = catalog.create_table(("bronze", "amounts"), schema=pa.schema([("amount", pa.int64())]))
    table.append(pa.table({"amount": pa.array([1, 2], pa.int64())}))

    spark = SparkHook().get_session(postgres_catalog)
    spark.sql(
        "CREATE TABLE iceberg.bronze.tenfold USING iceberg AS SELECT amount * 10 AS amount FROM iceberg.bronze.amounts"
    )
    written = catalog.load_table(("bronze", "tenfold")).scan().to_arrow().column("amount").to_pylist()
    assert sorted(written) == [10, 20]
    table.append(pa.table({"amount": pa.array([3], pa.int64())}))
    assert spark.sql("SELECT sum(amount) AS s FROM iceberg.bronze.amounts").collect()[0].s == 6


@pytest.mark.spark
def test_progress_lines_name_the_running_stage(asgard_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import time

    from asgard_provider.hooks.spark import SparkProgress

    spark = SparkHook().get_session(IcebergHook().settings)
    logger = logging.getLogger("test.spark.progress")
    slow = spark.sparkContext.parallelize(range(4), 2).map(lambda x: (time.sleep(1.5), x)[1])
    with caplog.at_level(logging.INFO, logger=logger.name), SparkProgress(spark, "slow.sql", logger, every=0.5):
        assert slow.sum() == 6
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert lines, "no progress line while the job ran"
    assert any(line.startswith("slow.sql: still running after ") and "/2 tasks" in line for line in lines), lines
