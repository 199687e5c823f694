"""Spark transforms on a real standalone cluster (a master and two workers on 127.0.0.1) give the local result.

The cluster is started from pyspark's own launcher (``spark-class ...Master`` / ``...Worker``); the transform runs
in a child process whose ``asgard_spark_default`` connection points at ``spark://127.0.0.1:<port>``, the one
config change that moves Spark work off the Airflow worker. Both runs share the embedded Iceberg catalog.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from asgard_provider.engines.spark_sql import TransformSpec, run_transform
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook

pytestmark = pytest.mark.spark

WORKERS = 2
SQL = """
WITH events AS (
    SELECT e.account_id, e.amount, a.region,
           ROW_NUMBER() OVER (PARTITION BY e.account_id ORDER BY e.event_id DESC) AS recency_rank
    FROM iceberg.bronze.events e JOIN iceberg.bronze.accounts a ON a.account_id = e.account_id
)
SELECT account_id, region, COUNT(*) AS events, SUM(amount) AS total,
       MAX(CASE WHEN recency_rank = 1 THEN amount END) AS last_amount,
       CASE WHEN account_id % 100 = 7 THEN 'flagged account' END AS _rejected_reason
FROM events GROUP BY account_id, region
"""
# The child runs the same engine call as the local run below, in a session on the cluster.
CHILD = """
import json, sys
from asgard_provider.engines.spark_sql import TransformSpec, run_transform
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook
spark = SparkHook().get_session(IcebergHook().settings)
result = run_transform(spark, TransformSpec(**json.loads(sys.argv[1])))
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
print("RESULT " + json.dumps({"result": result.as_dict(), "master": spark.sparkContext.master, "executors": executors}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_env(tmp: Path) -> dict[str, str]:
    import pyspark

    env = {k: os.environ[k] for k in ("PATH", "HOME", "JAVA_HOME", "LANG") if k in os.environ}
    env.update(SPARK_HOME=str(Path(pyspark.__file__).parent), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(tmp))
    return env


def _cluster_state(web_port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/json/", timeout=2) as response:
            return dict(json.load(response))
    except OSError:
        return {}


def _wait_for(what: str, ready: Any, procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"{what}: a Spark daemon exited with {dead[0].returncode}"
        assert time.monotonic() < deadline, f"{what}: not ready after {timeout} s"
        time.sleep(1)


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A standalone master and two one-core workers; yields the master URL and its web UI port."""
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = _spark_env(tmp)
    spark_class = Path(env["SPARK_HOME"]) / "bin" / "spark-class"
    port, web_port = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    master_cmd = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web_port)]
    commands = [[str(spark_class), "org.apache.spark.deploy.master.Master", *master_cmd]]
    for n in range(WORKERS):
        worker = ["--host", "127.0.0.1", "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port())]
        commands.append(
            [str(spark_class), "org.apache.spark.deploy.worker.Worker", *worker, "--work-dir", str(tmp / f"w{n}"), url]
        )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, cmd in enumerate(commands):
            log = (tmp / f"daemon{i}.log").open("wb")
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            if i == 0:
                _wait_for("master", lambda: _cluster_state(web_port).get("status") == "ALIVE", procs)
        alive = lambda: sum(w.get("state") == "ALIVE" for w in _cluster_state(web_port).get("workers", []))  # noqa: E731
        _wait_for("workers", lambda: alive() == WORKERS, procs)
        yield url, web_port
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def _bronze(iceberg: IcebergHook) -> None:
    accounts = pa.table({"account_id": pa.array(range(500), pa.int64()), "region": [f"r{i % 5}" for i in range(500)]})
    n = 20_000
    events = pa.table(
        {
            "event_id": pa.array(range(n), pa.int64()),
            "account_id": pa.array([(i * 7) % 500 for i in range(n)], pa.int64()),
            "amount": pa.array([float(i % 97) for i in range(n)], pa.float64()),
        }
    )
    iceberg.write("bronze.accounts", [accounts])
    iceberg.write("bronze.events", [events])


def _spec(output: str) -> TransformSpec:
    return TransformSpec(
        sql=SQL, output_table=output, sql_source="standalone.sql", quarantine_table=f"{output}_rejected"
    )


def _sorted_rows(iceberg: IcebergHook, table: str) -> list[dict[str, Any]]:
    return sorted(iceberg.load_table(table).scan().to_arrow().to_pylist(), key=lambda r: r["account_id"])


def test_transform_on_a_standalone_cluster_matches_local(
    spark_cluster: tuple[str, int], asgard_home: Path, tmp_path: Path
) -> None:
    url, web_port = spark_cluster
    iceberg = IcebergHook()
    _bronze(iceberg)
    local = run_transform(SparkHook().get_session(iceberg.settings), _spec("silver.accounts_local"))

    connection = {
        "conn_type": "asgard_spark",
        "host": url,
        "extra": {"conf": {"spark.executor.memory": "512m", "spark.cores.max": str(WORKERS)}},
    }
    env = {
        **_spark_env(tmp_path),
        "ASGARD_HOME": str(asgard_home),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONN_ASGARD_SPARK_DEFAULT": json.dumps(connection),
    }
    spec = json.dumps(dataclasses.asdict(_spec("silver.accounts_cluster")))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, spec], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    (line,) = [x for x in child.stdout.splitlines() if x.startswith("RESULT ")]
    remote = json.loads(line.removeprefix("RESULT "))

    assert remote["master"] == url and remote["executors"] == WORKERS
    assert remote["result"]["rows_written"] == local.rows_written == 495
    assert remote["result"]["rows_quarantined"] == local.rows_quarantined == 5
    assert _sorted_rows(iceberg, "silver.accounts_cluster") == _sorted_rows(iceberg, "silver.accounts_local")
    assert _sorted_rows(iceberg, "silver.accounts_cluster_rejected") == _sorted_rows(
        iceberg, "silver.accounts_local_rejected"
    )
    finished = _cluster_state(web_port).get("completedapps", []) + _cluster_state(web_port).get("activeapps", [])
    assert any(app.get("cores") == WORKERS for app in finished), finished
