"""Training against a real MLflow tracking server: PostgreSQL backend store, artifacts proxied to S3 (moto).

The server runs as a subprocess on a free loopback port, exactly as the chart runs it (``mlflow server
--backend-store-uri postgresql://... --artifacts-destination s3://...``). Only the server holds the S3 keys: the
Airflow side reaches artifacts through the server's proxy, as in the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from asgard_provider.hooks.mlflow import MLflowHook

from ..conftest import register_operator, run_context, train_operator, write_customer_metrics
from ..moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, free_port, s3_server

pytestmark = pytest.mark.postgres

MODEL = "customer_churn_predictor"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    """moto's S3 server on loopback with an empty bucket for MLflow artifacts."""
    with s3_server("mlflow-artifacts") as server:
        yield server


@pytest.fixture
def tracking_server(postgres_db: str, s3: S3Server, tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free loopback port; yield its URL, stop it afterwards."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))},
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
    }
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"postgresql://postgres@127.0.0.1:5432/{postgres_db}",
        "--artifacts-destination",
        f"s3://{s3.bucket}/artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Create the schema first: the server's processes migrate a fresh database concurrently otherwise.
    upgrade = subprocess.run(
        [command[0], "db", "upgrade", command[3]], env=env, capture_output=True, text=True, timeout=300
    )
    assert upgrade.returncode == 0, upgrade.stderr[-3000:]
    log = (tmp_path / "mlflow-server.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                server_log = (tmp_path / "mlflow-server.log").read_text()[-3000:]
                pytest.fail(f"mlflow server exited with {proc.returncode}: {server_log}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "mlflow server did not answer /health within 240 s: "
                    + (tmp_path / "mlflow-server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def test_training_registers_a_champion_on_the_tracking_server(
    asgard_home: Path,
    postgres_db: str,
    s3: S3Server,
    tracking_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)  # the Airflow side never sees the artifact store's keys
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_MLFLOW_DEFAULT", json.dumps({"conn_type": "asgard_mlflow", "host": tracking_server})
    )
    write_customer_metrics()
    register_operator().execute(run_context())

    result = train_operator().execute(run_context())

    assert result["promoted"] is True
    assert result["model_version"] == "1"
    hook = MLflowHook()
    assert hook.tracking_uri() == tracking_server
    assert hook.version_for(MODEL, alias="champion") == "1"
    run = hook.client().get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "40"
    assert run.data.metrics["roc_auc"] >= 0.75
    # Artifacts go through the server's proxy into the bucket.
    experiment = hook.client().get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    keys = s3.keys("artifacts/")
    assert any(k.endswith("/MLmodel") for k in keys)
    assert any(k.endswith("code/churn_training.py") for k in keys)
    model = hook.load_sklearn_model(MODEL, "1")
    assert list(model.feature_names_in_)[:2] == ["total_purchases", "customer_lifetime_value"]

    # The registry lives in Postgres; the embedded SQLite store was never created.
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=postgres_db) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT name, alias, version FROM registered_model_aliases")
            assert cur.fetchall() == [(MODEL, "champion", 1)]
            cur.execute("SELECT count(*) FROM runs WHERE run_uuid = %s AND status = 'FINISHED'", (result["run_id"],))
            assert cur.fetchone() == (1,)
    assert not (asgard_home / "mlflow" / "mlflow.db").exists()
