"""A real `airflow api-server` for tests: its own PostgreSQL metadata DB, SimpleAuthManager with admin / pw."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).parent / "airflow")
USER, PASSWORD = "admin", "pw"


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


def _airflow(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@contextmanager
def api_server(
    folder: Path,
    asgard_home: Path,
    db: str,
    *,
    serialize_dags: bool = False,
    base_path: str = "",
    parent_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Migrate DB ``db`` (dropped before and after), optionally serialize the bundle's DAGs, start the server.

    ``base_path`` (``/airflow``) serves Airflow under that sub-path (``[api] base_url``); the URL yielded ends with
    it. ``parent_env`` replaces this process's environment as the base of the server's.
    """
    port = _free_port()
    (folder / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    env = {
        **(os.environ if parent_env is None else parent_env),
        "AIRFLOW_HOME": str(folder / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
        "ASGARD_HOME": str(asgard_home),
    }
    if base_path:
        env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{port}{base_path}"
    _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    _pg(f'CREATE DATABASE "{db}"')
    log = folder / "api-server.log"
    proc = None
    try:
        _airflow(["db", "migrate"], env)
        if serialize_dags:
            _airflow(["dags", "reserialize"], env)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [AIRFLOW, "api-server", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        _wait_ready(f"http://127.0.0.1:{port}{base_path}", proc, log)
        yield f"http://127.0.0.1:{port}{base_path}"
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


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


def token_headers(base: str) -> dict[str, str]:
    """``Authorization`` header with a token of the admin user from ``POST /auth/token``."""
    import httpx

    token = httpx.post(f"{base}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30)
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}
