"""The Asgard API as an Airflow plugin: a real `airflow api-server` (PostgreSQL metadata DB) mounts it at /asgard."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DB = f"asgard_api_{os.getpid()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[str]:
    """`airflow api-server` with SimpleAuthManager (admin / pw) and gold.t written to the embedded catalog."""
    import pyarrow as pa

    port = _free_port()
    (tmp_path / "passwords.json").write_text(json.dumps({"admin": "pw"}))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DB}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
        "ASGARD_HOME": str(tmp_path / "asgard"),
    }
    os.environ["ASGARD_HOME"] = env["ASGARD_HOME"]
    from asgard_provider.hooks.iceberg import IcebergHook

    IcebergHook().write("gold.t", [pa.table({"a": [1, 2, 3]})], mode="overwrite")
    _pg(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    _pg(f'CREATE DATABASE "{DB}"')
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    log = tmp_path / "api-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [AIRFLOW, "api-server", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        _pg(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        os.environ.pop("ASGARD_HOME", None)


def _wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"api-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    pytest.fail(f"api-server not ready:\n{log.read_text()[-3000:]}")


@pytest.mark.postgres
def test_plugin_endpoints_need_airflows_token(api_server: str) -> None:
    import httpx

    spec = httpx.get(f"{api_server}/asgard/openapi.json", timeout=30)
    assert spec.status_code == 200 and "/mlops/inference" in spec.json()["paths"]
    query = {"sql": "SELECT sum(a) AS s FROM gold.t"}
    for response in (
        httpx.get(f"{api_server}/asgard/models", timeout=30),
        httpx.post(f"{api_server}/asgard/query", json=query, timeout=30),
        httpx.get(f"{api_server}/asgard/score/1001", timeout=30),
    ):
        assert response.status_code == 401, response.text
    assert (
        httpx.get(f"{api_server}/asgard/models", headers={"Authorization": "Bearer x"}, timeout=30).status_code == 403
    )

    token = httpx.post(f"{api_server}/auth/token", json={"username": "admin", "password": "pw"}, timeout=30)
    assert token.status_code == 201, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    models = httpx.get(f"{api_server}/asgard/models", headers=auth, timeout=60)
    assert models.status_code == 200 and models.json() == {"models": []}
    answer = httpx.post(f"{api_server}/asgard/query", json=query, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[6]]
    missing = httpx.get(f"{api_server}/asgard/models/nope", headers=auth, timeout=60)
    assert missing.status_code == 404
