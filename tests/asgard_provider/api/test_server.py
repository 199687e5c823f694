"""``asgard serve --workers N``: several uvicorn worker processes, one model check at start, one JWT key for all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import run_context, train_operator

ASGARD = str(Path(sys.executable).parent / "asgard")
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, folder: Path) -> dict[str, str]:
    """Only what the server needs. Unit-test mode gives each process a random JWT key unless one is handed down,
    so a worker accepting another's token shows that ``serve`` gave them all the parent's key."""
    (folder / "passwords.json").write_text(json.dumps({"admin": "pw"}))
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "ASGARD_HOME": str(home),
        "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
        "DO_NOT_TRACK": "1",
    }


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module")
def served(ml_home: Path, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`asgard serve --workers 2` of the trained champion in its own process group, with an explicit env."""
    train_operator().execute(run_context())
    folder = tmp_path_factory.mktemp("serve-workers")
    port = _free_port()
    log = folder / "serve.log"
    cmd = [ASGARD, "serve", "--model", "customer_churn_predictor", "--port", str(port), "--workers", str(WORKERS)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=_env(ml_home, folder), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail(f"asgard serve did not answer:\n{log.read_text()[-3000:]}")
        yield {"base": base, "pid": proc.pid, "log": log}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_every_worker_requires_and_accepts_the_same_airflow_token(served: dict[str, Any]) -> None:
    base = served["base"]
    workers = [pid for pid in _children(served["pid"]) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == WORKERS, workers
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "pw"}, timeout=30)
    assert token.status_code == 201, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    # Each request on a new connection: the kernel hands the connections to both workers.
    for _ in range(12):
        assert httpx.get(f"{base}/score/1001", timeout=30).status_code == 401
        answer = httpx.get(f"{base}/score/1001", headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["keys"] == {"customer_id": 1001}
    assert httpx.get(f"{base}/score/1001", headers={"Authorization": "Bearer x.y.z"}, timeout=30).status_code == 403
    log = served["log"].read_text()
    assert "with 2 worker(s)" in log and "pw" not in log.split("serving ")[-1]


def test_a_bad_model_fails_at_start_before_any_worker(ml_home: Path, tmp_path: Path) -> None:
    env = _env(ml_home, tmp_path)
    cmd = [ASGARD, "serve", "--model", "no_such_model", "--port", str(_free_port()), "--workers", str(WORKERS)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "FAIL" in result.stderr and "no_such_model" in result.stderr
    assert "listening on" not in result.stdout


def test_workers_must_be_a_positive_count(tmp_path: Path) -> None:
    result = subprocess.run([ASGARD, "serve", "--model", "m", "--workers", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "expected a positive integer, got '0'" in result.stderr
