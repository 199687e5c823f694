"""Shared fixtures: every test gets its own ASGARD_HOME so catalogs and stores never leak between tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Airflow reads its config at import time: keep test state out of ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".asgard" / "test-airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
# dbt manifests are built ahead of DAG parsing (`asgard dbt compile`), shared by every test's ASGARD_HOME.
os.environ.setdefault("ASGARD_DBT_MANIFESTS", str(REPO / ".asgard" / "dbt" / "manifests"))

# Configure Airflow (and its log handlers) once, before any test captures stdout: Asgard's engines no longer
# import Airflow, so the first import would otherwise happen inside a test and log into its captured output.
import airflow as _airflow  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def dbt_manifests() -> Path:
    """Manifests of the bundle's dbt projects, as `make install` builds them (a no-op when up to date)."""
    from asgard_provider.dbt.cosmos import compile_projects, manifests_dir

    compile_projects(REPO / "include", ["duckdb", "trino"])  # trino: the production fixtures
    return manifests_dir()


@pytest.fixture
def asgard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded-mode state directory (catalog, warehouse, MLflow, Feast)."""
    home = tmp_path / "asgard"
    home.mkdir()
    monkeypatch.setenv("ASGARD_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An Airflow metadata database (SQLite under the test AIRFLOW_HOME), migrated once per session."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return home


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1:5432 named after the test; dropped afterwards."""
    import re

    import psycopg2

    name = "asgard_t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
