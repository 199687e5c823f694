"""customer_churn as users run it: `scripts/airflow-local.sh` (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, PostgreSQL metadata DB, MLflow server), triggered through the REST API, then backfilled over two
dates.

The demo data is as of today, so the run that unpausing creates finds data too. Every task of every run must
succeed, the trigger's ``conf`` hyperparameters must reach the MLflow run, and each backfilled date's
predictions must be written exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB = f"asgard_sched_{os.getpid()}"
SCALE = {"customers": 4_000, "transactions": 48_000, "tickets": 1_800}
TODAY = datetime.now(UTC).date()
PASSWORD = "test-admin-pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_db() -> None:
    import psycopg2

    conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`make airflow`'s launcher on a temporary ASGARD_HOME with small demo sources as of today."""
    from asgard_demo.data import generate

    root = tmp_path_factory.mktemp("scheduler")
    home = root / "asgard"
    sources = home / "sources"
    generate(sources, as_of=TODAY, seed=7, **SCALE)
    # Only this DAG's file: the dag-processor would otherwise re-parse every shipped pipeline while tasks run.
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "customer_churn.py", dags / "customer_churn.py")
    port, mlflow_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ASGARD"))}
    env.update(
        {
            "ASGARD_HOME": str(home),
            "AIRFLOW_HOME": str(root / "airflow"),
            "ASGARD_DBT_MANIFESTS": os.environ["ASGARD_DBT_MANIFESTS"],
            "ASGARD_AIRFLOW_PORT": str(port),
            "ASGARD_MLFLOW_PORT": str(mlflow_port),
            "ASGARD_SUPPORT_API_PORT": str(_free_port()),  # the launcher starts the demo's support API
            "ASGARD_AIRFLOW_DB": DB,
            "ASGARD_ADMIN_PASSWORD": PASSWORD,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "ASGARD_INCLUDE_DIR": str(REPO / "include"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW_CONN_ASGARD_CUSTOMERS_DB": json.dumps(
                {"conn_type": "sqlite", "host": str(sources / "customers.db")}
            ),
            "AIRFLOW_CONN_ASGARD_TRANSACTIONS_DB": json.dumps(
                {"conn_type": "sqlite", "host": str(sources / "transactions.db")}
            ),
        }
    )
    _drop_db()
    out = (root / "launcher.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "airflow-local.sh")],
        env={**env, "BIN": str(BIN)},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deployment = {"env": env, "home": home, "logs": home / "logs", "launcher": root / "launcher.log"}
    deployment["url"] = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: "Airflow UI" in deployment["launcher"].read_text(), 300, "the launcher", deployment)
        token = requests.post(
            f"{deployment['url']}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=30
        )
        token.raise_for_status()
        deployment["headers"] = {"Authorization": f"Bearer {token.json()['access_token']}"}
        yield deployment
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        _drop_db()


def _wait(predicate: Any, timeout: float, what: str, deployment: dict[str, Any]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(3)
    logs = [deployment["launcher"], *sorted(Path(deployment["logs"]).glob("*.log"))]
    tails = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.is_file())
    pytest.fail(f"timed out waiting for {what}; component logs:\n{tails}")


def _api(deployment: dict[str, Any], method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(
        method, f"{deployment['url']}/api/v2{path}", headers=deployment["headers"], timeout=60, **kwargs
    )
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json()


def _runs(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_api(deployment, "GET", "/dags/customer_churn/dagRuns?limit=100")["dag_runs"])


def _all_finished(deployment: dict[str, Any], expected: int) -> bool:
    runs = _runs(deployment)
    failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
    if failed:
        pytest.fail(f"runs failed: {failed}; task states: {_task_states(deployment, failed[0])}")
    return len(runs) >= expected and all(r["state"] == "success" for r in runs)


def _task_states(deployment: dict[str, Any], run_id: str) -> dict[str, str]:
    tis = _api(deployment, "GET", f"/dags/customer_churn/dagRuns/{run_id}/taskInstances?limit=200")
    return {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}


def _table(home: Path, namespace: str, name: str) -> Any:
    from pyiceberg.catalog import load_catalog

    from asgard_provider.catalog import CATALOG_NAME, CatalogSettings

    settings = CatalogSettings(
        type="sql", uri=f"sqlite:///{home / 'catalog.db'}", warehouse=f"file://{home / 'warehouse'}"
    )
    table = load_catalog(CATALOG_NAME, **settings.pyiceberg_properties()).load_table((namespace, name))
    return table.scan().to_pandas()


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.spark
def test_rest_trigger_then_backfill_under_the_scheduler(airflow: dict[str, Any]) -> None:
    _wait(lambda: requests.get(f"{airflow['url']}/api/v2/dags/customer_churn", headers=airflow["headers"],
                               timeout=30).status_code == 200, 300, "customer_churn to be parsed", airflow)  # fmt: skip
    _api(airflow, "PATCH", "/dags/customer_churn", json={"is_paused": False})
    hyper = {"n_estimators": 23, "max_depth": 6}
    manual = _api(
        airflow,
        "POST",
        "/dags/customer_churn/dagRuns",
        json={"dag_run_id": "manual__rest", "logical_date": f"{TODAY}T00:00:00Z", "conf": {"hyperparameters": hyper}},
    )
    assert manual["dag_run_id"] == "manual__rest"
    # Unpausing also creates the latest scheduled run; it must find data (the demo data is as of today).
    _wait(lambda: _all_finished(airflow, 2), 1800, "the scheduled and the REST-triggered runs", airflow)
    for run in _runs(airflow):
        states = _task_states(airflow, run["dag_run_id"])
        assert states and set(states.values()) == {"success"}, (run["dag_run_id"], states)
        assert "train_model" in states and "batch_inference" in states

    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{airflow['env']['ASGARD_MLFLOW_PORT']}")
    [experiment] = [e for e in client.search_experiments() if e.name == "customer_churn_prediction"]
    [trained] = client.search_runs([experiment.experiment_id], "tags.`airflow.run_id` = 'manual__rest'")
    assert trained.data.params["n_estimators"] == "23" and trained.data.params["max_depth"] == "6"
    links = _api(airflow, "GET", "/dags/customer_churn/dagRuns/manual__rest/taskInstances/train_model/links")
    mlflow_ui = f"http://127.0.0.1:{airflow['env']['ASGARD_MLFLOW_PORT']}"
    run_link = links["extra_links"]["MLflow run"]
    assert run_link == f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/{trained.info.run_id}"
    assert links["extra_links"]["MLflow model version"].startswith(f"{mlflow_ui}/#/models/customer_churn_predictor/")
    assert requests.get(mlflow_ui, timeout=30).status_code == 200, "the MLflow UI the buttons open is not served"

    # Logical dates TODAY-4 and -3 at 06:00: two runs whose as-of dates are TODAY-3 and -2.
    created = subprocess.run(
        [str(BIN / "airflow"), "backfill", "create", "--dag-id", "customer_churn",
         "--from-date", f"{TODAY - timedelta(days=4)}", "--to-date", f"{TODAY - timedelta(days=2)}",
         "--max-active-runs", "1"],
        env={**airflow["env"], **_deployment_settings(airflow)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr[-3000:]
    _wait(lambda: _all_finished(airflow, 4), 2400, "2 backfill runs", airflow)
    backfill = [r for r in _runs(airflow) if r["run_type"] == "backfill"]
    assert len(backfill) == 2
    for run in backfill:
        states = _task_states(airflow, run["dag_run_id"])
        assert set(states.values()) == {"success"} and "train_model" in states, (run["dag_run_id"], states)

    predictions = _table(airflow["home"], "gold", "customer_churn_predictions")
    per_date = predictions.groupby(predictions["as_of_date"].astype(str))["customer_id"]
    gold = _table(airflow["home"], "gold", "customer_metrics")
    entities = gold.groupby(gold["snapshot_date"].astype(str))["customer_id"].nunique()
    as_of_dates = sorted(run["data_interval_end"][:10] for run in backfill)
    assert as_of_dates == [str(TODAY - timedelta(days=d)) for d in (3, 2)], as_of_dates
    for day in as_of_dates:
        keys = per_date.get_group(day)
        assert keys.is_unique, f"predictions of {day} written more than once"
        assert len(keys) == entities[day], f"{day}: {len(keys)} predictions for {entities[day]} customers"


def _deployment_settings(airflow: dict[str, Any]) -> dict[str, str]:
    """What the launcher exports for its components, so the CLI talks to the same metadata database."""
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DB}"}
