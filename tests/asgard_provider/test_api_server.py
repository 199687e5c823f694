"""The Asgard API as an Airflow plugin: a real `airflow api-server` (PostgreSQL metadata DB) mounts it at /asgard."""

from __future__ import annotations

import os
import shutil
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


#: Where the sub-path server mounts Airflow (``[api] base_url = http://127.0.0.1:PORT/airflow``).
SUB_PATH = "/airflow"
REPO = Path(__file__).resolve().parents[2]
DAG = "customer_churn"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def sub_path_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The same server under ``/airflow``, started with an explicit minimal environment (no inherited settings)."""
    import pyarrow as pa

    from asgard_provider.child_env import child_env
    from asgard_provider.hooks.iceberg import IcebergHook

    home = tmp_path / "asgard"
    monkeypatch.setenv("ASGARD_HOME", str(home))
    IcebergHook().write("gold.t", [pa.table({"a": [1, 2, 3]})], mode="overwrite")
    dags = tmp_path / "airflow" / "dags"  # the server's default dags folder: one pipeline DAG to serialize
    dags.mkdir(parents=True)
    shutil.copy(REPO / "dags" / f"{DAG}.py", dags)
    bundle = {"ASGARD_INCLUDE_DIR": str(REPO / "include"), "ASGARD_DBT_MANIFESTS": os.environ["ASGARD_DBT_MANIFESTS"]}
    server = airflow_server.api_server(
        tmp_path, home, f"{DB}_sub", serialize_dags=True, base_path=SUB_PATH, parent_env=child_env(bundle)
    )
    with server as base:
        yield base


@pytest.mark.postgres
def test_plugin_and_its_ui_page_under_a_sub_path(sub_path_server: str) -> None:
    """API routes answer under /airflow/asgard, and the Asgard tab's href resolves there from the UI's <base href>."""
    import re
    from urllib.parse import quote, urljoin, urlsplit

    import httpx

    base = sub_path_server
    root = base.removesuffix(SUB_PATH)
    spec = httpx.get(f"{base}/asgard/openapi.json", timeout=30)
    assert spec.status_code == 200 and "/query" in spec.json()["paths"]
    assert httpx.post(f"{base}/asgard/query", json={"sql": "SELECT 1"}, timeout=30).status_code == 401
    auth = airflow_server.token_headers(base)
    answer = httpx.post(
        f"{base}/asgard/query", json={"sql": "SELECT sum(a) AS s FROM gold.t"}, headers=auth, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["rows"] == [[6]], answer.text
    # The UI page: its <base href> is the sub-path, and the tab's iframe src is the plugin's relative href.
    index = httpx.get(f"{base}/", timeout=30)
    base_href = re.search(r'<base href="([^"]+)"', index.text)
    assert index.status_code == 200 and base_href is not None and base_href.group(1) == f"{SUB_PATH}/"
    plugins = httpx.get(f"{base}/api/v2/plugins", headers=auth, timeout=30).json()["plugins"]
    (view,) = next(p for p in plugins if p["name"] == "asgard")["external_views"]
    src = urljoin(f"{root}{base_href.group(1)}", view["href"].replace("{DAG_ID}", quote(DAG, safe="")))
    assert urlsplit(src).path == f"{SUB_PATH}/asgard/ui/pipelines/{DAG}"
    assert httpx.get(src, timeout=30).status_code in (401, 403)  # Airflow's DAG access check applies there too
    page = httpx.get(src, headers=auth, timeout=60)
    assert page.status_code == 200, page.text[-2000:]
    assert f"<h1>Asgard pipeline {DAG}</h1>" in page.text and "gold.customer_metrics" in page.text
    assert _asgard_tab_in_chromium(base) == src


def _asgard_tab_in_chromium(base: str) -> str:
    """Log in through the UI under the sub-path, open the DAG's Asgard tab; return the iframe's URL once it shows."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/dags/{DAG}/plugin/asgard")
            page.locator("input[name=username]").fill(airflow_server.USER)
            page.locator("input[name=password]").fill(airflow_server.PASSWORD)
            page.locator("input[name=password]").press("Enter")
            page.wait_for_url(f"**{SUB_PATH}/dags/{DAG}/plugin/asgard", timeout=60_000)
            expect(page.frame_locator("iframe[title=Asgard]").locator("h1")).to_have_text(
                f"Asgard pipeline {DAG}", timeout=60_000
            )
            frame = next(f for f in page.frames if "/asgard/ui/pipelines/" in f.url)
            return str(frame.url)
        finally:
            browser.close()
