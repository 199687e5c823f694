"""The plugin in a real `airflow api-server`: batch inference through Airflow, and the Asgard tab in a real browser.

The server's ASGARD_HOME is a pipeline that has run (real engines: features, two trainings, one batch inference)
and the bundle's DAGs are serialized into its metadata DB, so the DAG pages and DAG runs exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from .. import airflow_server
from .conftest import PREDICTIONS

CHROMIUM = "/usr/bin/chromium"
DAG = "customer_churn"


@pytest.fixture(scope="module")
def server(ran_pipeline: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("api-server")
    db = f"asgard_ui_{os.getpid()}"
    with airflow_server.api_server(folder, ran_pipeline["home"], db, serialize_dags=True) as base:
        yield base


@pytest.mark.postgres
def test_batch_inference_is_a_dag_run_through_airflow(server: str) -> None:
    import httpx

    url = f"{server}/asgard/pipelines/{DAG}/batch-inference"
    assert httpx.post(url, json={}, timeout=30).status_code == 401
    auth = airflow_server.token_headers(server)
    body = {"run_id": "asgard_batch_1", "conf": {"hyperparameters": {"n_estimators": 10}}, "note": "from the API"}
    started = httpx.post(url, json=body, headers=auth, timeout=60)
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["dag_id"] == DAG and run["run_id"] == "asgard_batch_1" and run["state"] == "queued"
    assert run["triggering_user_name"] == airflow_server.USER and run["conf"]["hyperparameters"] == {"n_estimators": 10}
    # No scheduler here: the run waits for one, its task instances created and not yet scheduled.
    assert run["batch_inference"]["state"] is None and run["batch_inference"]["try_number"] == 0
    assert run["task_states"] == {"none": sum(run["task_states"].values())}
    # Airflow's own API sees the same run, with the conf.
    own = httpx.get(f"{server}/api/v2/dags/{DAG}/dagRuns/asgard_batch_1", headers=auth, timeout=30)
    assert own.status_code == 200 and own.json()["conf"] == run["conf"] and own.json()["state"] == "queued"
    status = httpx.get(f"{url}/asgard_batch_1", headers=auth, timeout=30)
    assert status.status_code == 200 and status.json() == run
    again = httpx.post(url, json=body, headers=auth, timeout=30)
    assert again.status_code == 409 and "already exists" in again.text
    bad = httpx.post(url, json={"conf": {"hyperparameters": "many trees"}}, headers=auth, timeout=30)
    assert bad.status_code == 422 and "conf" in bad.text and "hyperparameters" in bad.text
    unknown = httpx.post(f"{server}/asgard/pipelines/nope/batch-inference", json={}, headers=auth, timeout=30)
    assert unknown.status_code == 404 and "no pipeline DAG 'nope'" in unknown.text
    missing = httpx.get(f"{url}/no_such_run", headers=auth, timeout=30)
    assert missing.status_code == 404


@pytest.mark.postgres
def test_asgard_tab_of_the_dag_page_in_chromium(server: str, ran_pipeline: dict[str, Any], tmp_path: Path) -> None:
    """Log in through the UI, open the DAG's Asgard tab, find row counts and model metrics; save a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    first, second = ran_pipeline["versions"]
    rows = ran_pipeline["inference"]["rows"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{server}/dags/{DAG}/plugin/asgard")
            page.locator("input[name=username]").fill(airflow_server.USER)
            page.locator("input[name=password]").fill(airflow_server.PASSWORD)
            page.locator("input[name=password]").press("Enter")
            page.wait_for_url(f"**/dags/{DAG}/plugin/asgard", timeout=60_000)
            frame = page.frame_locator("iframe[title=Asgard]")
            tables = frame.locator("#tables")
            expect(tables.locator("tr", has_text=PREDICTIONS).first).to_contain_text(str(rows), timeout=60_000)
            expect(tables.locator("tr", has_text="gold.customer_metrics")).to_contain_text(str(2 * rows))
            newest, oldest = frame.locator("#models tbody tr").nth(0), frame.locator("#models tbody tr").nth(1)
            expect(oldest).to_contain_text(f"{first['model_version']}champion")
            expect(oldest).to_contain_text(f"{first['metrics']['roc_auc']:.4f}")
            expect(newest).to_contain_text(f"{second['model_version']}challenger")
            expect(newest).to_contain_text(f"{second['metrics']['roc_auc']:.4f}")
            expect(frame.locator("#drift tr")).to_have_count(1 + 8)
            page.screenshot(path=str(tmp_path / "asgard-tab.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "asgard-tab.png").stat().st_size > 10_000


@pytest.mark.postgres
def test_every_operation_answers_as_its_spec_says(server: str) -> None:
    """Generated requests (6 per operation) get documented answers, never a server error (bar /health's 503)."""
    headers = airflow_server.token_headers(server)
    schema = schemathesis.openapi.from_url(f"{server}/asgard/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12  # every operation of the spec is fuzzed (composite keys added GET /score)
    for operation in operations:
        _fuzz(operation, f"{server}/asgard", headers)


def _fuzz(operation: Any, base_url: str, headers: dict[str, str]) -> None:
    from hypothesis import given
    from schemathesis.checks import not_a_server_error, positive_data_acceptance

    # Schema-valid is not always acceptable here: the key's type, a model's feature columns and what SQL means
    # depend on the pipeline and the data, so a documented 400/422 for a valid-looking body is an answer.
    excluded = [positive_data_acceptance] + ([not_a_server_error] if operation.path == "/health" else [])

    @given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=BOTHER)
    def answers(case: Any) -> None:
        # The first scoring request loads the model and the feature store: allow it more than requests' 10 s.
        case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=excluded, timeout=120)

    answers()


BOTHER = list(HealthCheck)
