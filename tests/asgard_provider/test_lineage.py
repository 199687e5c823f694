"""OpenLineage: operators report the datasets they read and wrote, with schema and row counts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from asgard_provider.operators.checks import IcebergTableCheckOperator
from asgard_provider.operators.ingest import SqlToIcebergOperator


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"u{i}@x.io") for i in range(25)])
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


def test_ingest_and_check_report_lineage(asgard_home: Path, source: Path) -> None:
    ingest = SqlToIcebergOperator(
        task_id="ingest", source_conn_id="crm", source_table="customers", target_table="bronze.customers"
    )
    ingest.execute({"run_id": "manual__ol"})
    lineage = ingest.get_openlineage_facets_on_complete(None)
    (inp,) = lineage.inputs
    assert (inp.namespace, inp.name) == (f"sqlite://{source}", "customers")
    (out,) = lineage.outputs
    assert (out.namespace, out.name) == ("iceberg://iceberg", "bronze.customers")
    assert [(f.name, f.type) for f in out.facets["schema"].fields] == [("customer_id", "long"), ("email", "string")]
    assert out.outputFacets["outputStatistics"].rowCount == 25

    check = IcebergTableCheckOperator(task_id="check", tables=["bronze.customers"], min_rows=1)
    check.execute({})
    (checked,) = check.get_openlineage_facets_on_complete(None).inputs
    assert (checked.namespace, checked.name) == ("iceberg://iceberg", "bronze.customers")


def test_openlineage_provider_uses_the_operators_own_lineage() -> None:
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    op = SqlToIcebergOperator(task_id="ingest", source_conn_id="crm", source_table="t", target_table="bronze.t")
    assert ExtractorManager().get_extractor_class(op) is DefaultExtractor
