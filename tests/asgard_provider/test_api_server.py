"""The Asgard API as an Airflow plugin: a real `airflow api-server` (PostgreSQL metadata DB) mounts it at /asgard."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import airflow_server

DB = f"asgard_api_{os.getpid()}"


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`airflow api-server` with SimpleAuthManager (admin / pw) and gold.t written to the embedded catalog."""
    import pyarrow as pa

    from asgard_provider.hooks.iceberg import IcebergHook

    home = tmp_path / "asgard"
    monkeypatch.setenv("ASGARD_HOME", str(home))
    IcebergHook().write("gold.t", [pa.table({"a": [1, 2, 3]})], mode="overwrite")
    with airflow_server.api_server(tmp_path, home, DB) as base:
        yield base


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

    auth = airflow_server.token_headers(api_server)
    models = httpx.get(f"{api_server}/asgard/models", headers=auth, timeout=60)
    assert models.status_code == 200 and models.json() == {"models": []}
    answer = httpx.post(f"{api_server}/asgard/query", json=query, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[6]]
    missing = httpx.get(f"{api_server}/asgard/models/nope", headers=auth, timeout=60)
    assert missing.status_code == 404
