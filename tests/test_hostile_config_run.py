"""A config that references a secret through Jinja or ``${VAR}``, run for real (issue 14.1).

Validation refuses these configs; this run bypasses it (``PipelineConfig.model_validate``) to prove the
factory's second line: the password never reaches the task log, the rendered fields or the error.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Hx7-s3cret-pw-41"
SECRET = "{{ conn.asgard_customers_db.password }}"
REVERSED = "{{ conn.asgard_customers_db.password | reverse }}"
PATH = "${AIRFLOW_CONN_ASGARD_CUSTOMERS_DB}/x.jsonl"


def _stage(name: str, source: dict) -> dict:
    return {"name": name, "source": source, "target": f"bronze.{name}"}


def _config() -> dict:
    conn = "asgard_customers_db"
    return {
        "pipeline": "hostile_ingest",
        "schedule": None,
        "retries": 0,
        "ingest": [
            _stage("plain", {"connection": conn, "table": "customers"}),
            _stage("templated", {"connection": conn, "table": SECRET}),
            _stage("reversed", {"connection": conn, "table": REVERSED}),
            _stage("expanded", {"path": PATH}),
        ],
    }


DAG_FILE = """
from pathlib import Path

from asgard_provider.pipeline.config import PipelineConfig
from asgard_provider.pipeline.factory import build_dag

dag = build_dag(PipelineConfig.model_validate({config!r}), base_dir=Path({include!r}))
"""


def _dag(folder: Path) -> object:
    """Build the DAG from a DAG file in ``folder`` and serialize it, as the DAG processor would."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    path = folder / "hostile_ingest.py"
    path.write_text(DAG_FILE.format(config=_config(), include=str(REPO / "include")))
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags["hostile_ingest"]


@pytest.fixture
def source(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite customer table behind a connection that carries a password."""
    db = asgard_home / "customers.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(1, "a@x.org"), (2, "b@x.org")])
    value = json.dumps({"conn_type": "sqlite", "host": str(db), "password": PASSWORD})
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_CUSTOMERS_DB", value)
    return value


def _rendered(dag_id: str) -> dict[str, dict]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id).all()
        return {row.task_id: dict(row.rendered_fields) for row in rows}


def test_a_templated_secret_reference_never_reaches_log_rendered_fields_or_error(
    airflow_db: Path, source: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    dag: Any = _dag(tmp_path)
    with caplog.at_level(logging.INFO):
        run = dag.test(logical_date=datetime(2025, 11, 11, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"plain": "success", "templated": "failed", "reversed": "failed", "expanded": "failed"}
    rendered = _rendered(dag.dag_id)
    assert rendered["templated"]["source_table"] == SECRET, "the config string stays data"
    out, err = capfd.readouterr()
    seen = caplog.text + out + err + json.dumps(rendered)
    assert "may not be expanded" in seen, "the ${VAR} task fails naming the variable"
    for leaked in (PASSWORD, PASSWORD[::-1], source):
        assert leaked not in seen
