"""`engine: airbyte` builds the Airbyte provider's trigger + deferrable sensor; the requests go to a fake API.

No Airbyte server can run here, so a loopback HTTP server records what the provider's SDK sends and answers
like Airbyte's public API; the test asserts the exact requests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "tests" / "fixtures" / "pipelines" / "good" / "airbyte_ingest.yaml"
CONNECTION = "9a1c3d4e-1111-4c2b-9d55-0123456789ab"


class _FakeAirbyte(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def _reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        entry = {"method": self.command, "path": self.path, "body": body}
        self.requests.append(entry)
        return entry

    def do_POST(self) -> None:
        self._record()
        self._reply(
            {
                "jobId": 4242,
                "status": "running",
                "jobType": "sync",
                "connectionId": CONNECTION,
                "startTime": "2025-11-11T06:00:01Z",
            }
        )

    def do_GET(self) -> None:
        self._record()
        self._reply(
            {
                "jobId": 4242,
                "status": "succeeded",
                "jobType": "sync",
                "connectionId": CONNECTION,
                "startTime": "2025-11-11T06:00:01Z",
                "duration": "PT5M",
                "rowsSynced": 100000,
            }
        )

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_airbyte(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    server = HTTPServer(("127.0.0.1", 0), _FakeAirbyte)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeAirbyte.requests = []
    host = f"http://127.0.0.1:{server.server_port}/v1"
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_AIRBYTE", json.dumps({"conn_type": "airbyte", "host": host}))
    yield _FakeAirbyte.requests
    server.shutdown()


def test_airbyte_stage_builds_trigger_then_deferrable_sensor() -> None:
    dag = build_dag(load_pipeline_config(CONFIG, base_dir=REPO / "include"), base_dir=REPO / "include")
    trigger = dag.get_task("ingest_customers_trigger")
    wait = dag.get_task("ingest_customers_wait")
    assert type(trigger).__name__ == "AirbyteTriggerSyncOperator"
    assert (trigger.connection_id, trigger.airbyte_conn_id, trigger.asynchronous) == (
        CONNECTION,
        "asgard_airbyte",
        True,
    )
    assert type(wait).__name__ == "AirbyteJobSensor"
    assert wait.deferrable is True and wait.timeout == 30 * 60
    assert wait.upstream_task_ids == {"ingest_customers_trigger"}


def test_trigger_and_sensor_send_the_exact_airbyte_requests(fake_airbyte: list[dict[str, Any]]) -> None:
    dag = build_dag(load_pipeline_config(CONFIG, base_dir=REPO / "include"), base_dir=REPO / "include")
    job_id = dag.get_task("ingest_customers_trigger").execute(context={})
    assert job_id == 4242
    assert fake_airbyte == [
        {"method": "POST", "path": "/v1/jobs", "body": {"connectionId": CONNECTION, "jobType": "sync"}}
    ]

    from airflow.providers.airbyte.sensors.airbyte import AirbyteJobSensor

    sensor = AirbyteJobSensor(task_id="probe", airbyte_job_id=job_id, airbyte_conn_id="asgard_airbyte")
    assert sensor.poke(context={}) is True
    assert fake_airbyte[-1] == {"method": "GET", "path": "/v1/jobs/4242", "body": None}
