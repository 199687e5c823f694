"""Run customer_churn under `make airflow`'s launcher (scheduler, LocalExecutor, PostgreSQL) and time its tasks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
from _common import PYTHON, REPO, isolated_env, tree_rss_kib

PASSWORD = "bench-admin"
#: Process title of a task's process under Airflow 3's supervisor, followed by the task instance's id.
TASK_TITLE = "airflow worker -- "


class TaskRss:
    """Sample every task process (and its children: Spark JVM, training script, dbt) for its peak RSS.

    Each task instance runs in its own process titled ``airflow worker -- <task instance id>``; the peak (MiB)
    per id is what that task alone used, with nothing left over from earlier tasks.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _tasks(self) -> dict[int, str]:
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    title = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            words = title[len(TASK_TITLE) :].split() if title.startswith(TASK_TITLE) else []
            if words and not words[0].startswith("LocalExecutor"):  # the executor's own workers say LocalExecutor:
                found[int(entry)] = words[0]
        return found

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid, ti_id in self._tasks().items():
                mib = tree_rss_kib(pid) / 1024
                self.peaks[ti_id] = max(self.peaks.get(ti_id, 0.0), mib)
            self._stop.wait(self.interval)

    def __enter__(self) -> TaskRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_db(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def _wait(predicate: Any, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise SystemExit(f"timed out waiting for {what}; see {logs}")


def run_scheduler(source_home: Path, home: Path) -> dict[str, Any]:
    """Copy ``source_home``'s sources into ``home``, start the launcher, unpause the DAG, time the run it creates."""
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(source_home / "sources", home / "sources")
    port, db = _free_port(), f"asgard_bench_{os.getpid()}"
    env = {k: v for k, v in isolated_env(home).items() if not k.startswith("AIRFLOW__DATABASE")}
    env.update(
        {
            "ASGARD_AIRFLOW_PORT": str(port),
            "ASGARD_MLFLOW_PORT": str(_free_port()),
            "ASGARD_AIRFLOW_DB": db,
            "ASGARD_ADMIN_PASSWORD": PASSWORD,
            "ASGARD_DBT_MANIFESTS": str(source_home / "dbt" / "manifests"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "BIN": str(PYTHON.parent),
        }
    )
    _drop_db(db)
    launcher_log = home / "launcher.log"
    with open(launcher_log, "w") as out:
        proc = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "airflow-local.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return _time_scheduled_run(f"http://127.0.0.1:{port}", launcher_log, home / "logs")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        _drop_db(db)


def _time_scheduled_run(url: str, launcher_log: Path, logs: Path) -> dict[str, Any]:
    _wait(lambda: "Airflow UI" in launcher_log.read_text(), 300, "the launcher", logs)
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=30)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def api(method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{url}/api/v2{path}", headers=headers, timeout=60, **kwargs)
        return response.json() if response.status_code < 300 else None

    started = time.monotonic()
    _wait(lambda: api("GET", "/dags/customer_churn") is not None, 300, "customer_churn to be parsed", logs)
    visible_s = time.monotonic() - started
    api("PATCH", "/dags/customer_churn", json={"is_paused": False})
    unpaused = time.monotonic()

    def finished() -> bool:
        runs = (api("GET", "/dags/customer_churn/dagRuns") or {}).get("dag_runs", [])
        return bool(runs) and runs[0]["state"] in ("success", "failed")

    with TaskRss() as rss:
        _wait(finished, 7200, "the scheduled run", logs)
    wall = time.monotonic() - unpaused
    run = api("GET", "/dags/customer_churn/dagRuns")["dag_runs"][0]
    tis = api("GET", f"/dags/customer_churn/dagRuns/{run['dag_run_id']}/taskInstances?limit=200")["task_instances"]
    tasks = [
        {
            "task_id": t["task_id"],
            "state": t["state"],
            "duration": t["duration"],
            "start": t["start_date"],
            "end": t["end_date"],
            "queued": t.get("queued_when"),
            "peak_rss_mib": rss.peaks.get(t["id"]),
        }
        for t in tis
    ]
    return {"state": run["state"], "wall_s": wall, "dag_visible_s": visible_s, "tasks": tasks}
