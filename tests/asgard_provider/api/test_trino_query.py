"""``/query`` on Trino (production): the real ``trino`` client against a small HTTP server speaking protocol v1.

No Trino runs here, so the server in this file answers ``POST /v1/statement`` and the ``nextUri`` GETs with
columns and pages of rows, and records every request. The tests assert what the client sent (SQL text and the
``X-Trino-*`` headers), that it stops reading past the row limit, and that refused queries never reach it.
The Iceberg catalog is the real embedded one; the app, hook and client are the real ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from asgard_provider.api.app import create_app
from asgard_provider.engines import wap
from asgard_provider.hooks.iceberg import IcebergHook

COLUMNS = [{"name": "a", "type": "bigint", "typeSignature": {"rawType": "bigint", "arguments": []}}]


@dataclass
class FakeTrino:
    """Protocol v1 coordinator: ``pages`` of rows (or ``error``) for any statement; ``requests`` as received."""

    pages: list[list[list[Any]]] = field(default_factory=lambda: [[[1], [2]], [[3], [4]], [[5], [6]], [[7], [8]]])
    error: dict[str, Any] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    base: str = ""

    def status(self, page: int) -> dict[str, Any]:
        """The JSON answer to the GET of page ``page``: its rows and the next page's URI, or the error."""
        body: dict[str, Any] = {"id": "q1", "infoUri": f"{self.base}/ui/q1", "stats": {"state": "RUNNING"}}
        if self.error:
            return {**body, "stats": {"state": "FAILED"}, "error": self.error}
        body.update(columns=COLUMNS, data=self.pages[page])
        if page + 1 < len(self.pages):
            body["nextUri"] = f"{self.base}/v1/statement/executing/q1/{page + 1}"
        return body


def _handler(fake: FakeTrino) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            fake.requests.append(request)

        def _json(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self._record()
            uri = f"{fake.base}/v1/statement/executing/q1/0"
            self._json({"id": "q1", "infoUri": f"{fake.base}/ui/q1", "nextUri": uri, "stats": {"state": "QUEUED"}})

        def do_GET(self) -> None:
            self._record()
            self._json(fake.status(int(self.path.rsplit("/", 1)[1])))

        def do_DELETE(self) -> None:
            self._record()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def trino(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTrino]:
    """The fake coordinator, ``asgard_trino`` pointing at it, and gold.t in the embedded catalog."""
    fake = FakeTrino()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    port = server.server_address[1]
    fake.base = f"http://127.0.0.1:{port}"
    extra = {"timezone": "UTC", "session_properties": {"query_priority": 2}}
    conn = {"conn_type": "trino", "host": "127.0.0.1", "port": port, "login": "analyst", "schema": "gold"}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_TRINO", json.dumps({**conn, "extra": extra}))
    IcebergHook().write("gold.t", [pa.table({"a": [1, 2]})])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client(trino: FakeTrino) -> Iterator[TestClient]:
    with TestClient(create_app(auth=False)) as test_client:
        yield test_client


def _trino_headers(request: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in request["headers"].items() if k.lower().startswith("x-trino-")}


def test_query_runs_on_trino_with_the_catalog_user_and_timeout(trino: FakeTrino, client: TestClient) -> None:
    import trino as trino_client

    sql = "SELECT a FROM gold.t ORDER BY a"
    response = client.post("/query", json={"sql": sql, "limit": 3, "timeout_seconds": 7.5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["columns"], body["rows"], body["row_count"]) == (["a"], [[1], [2], [3]], 3)
    assert body["truncated"] is True and body["tables"] == ["gold.t"] and body["snapshots"] == {}
    post = trino.requests[0]
    assert (post["method"], post["path"], post["body"]) == ("POST", "/v1/statement", sql)
    assert _trino_headers(post) == {
        "X-Trino-Catalog": "iceberg",
        "X-Trino-Schema": "gold",
        "X-Trino-Source": "asgard-query",
        "X-Trino-User": "analyst",
        "X-Trino-Time-Zone": "UTC",
        "X-Trino-Query-Data-Encoding": "json+zstd,json+lz4,json",
        "X-Trino-Client-Capabilities": trino_client.constants.CLIENT_CAPABILITIES,
        "X-Trino-Client-Info": json.dumps(dict.fromkeys(_CLIENT_INFO_KEYS, ""), sort_keys=True),
        "X-Trino-Session": "query_priority=2,query_max_execution_time=7.5s",
        "X-Trino-Transaction-Id": "NONE",
    }
    # limit + 1 rows are two pages; the client fetches one page ahead (its acknowledgement of the rows before),
    # then cancels the query instead of reading the fourth.
    assert [(r["method"], r["path"]) for r in trino.requests[1:]] == [
        ("GET", "/v1/statement/executing/q1/0"),
        ("GET", "/v1/statement/executing/q1/1"),
        ("GET", "/v1/statement/executing/q1/2"),
        ("DELETE", "/v1/statement/executing/q1/3"),
    ]


_CLIENT_INFO_KEYS = ("dag_id", "dag_owner", "dag_run_id", "logical_date", "task_id", "try_number")


def test_all_rows_when_under_the_limit(trino: FakeTrino, client: TestClient) -> None:
    response = client.post("/query", json={"sql": "SELECT a FROM iceberg.gold.t", "limit": 8})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[i] for i in range(1, 9)] and response.json()["truncated"] is False
    assert [r["method"] for r in trino.requests] == ["POST", "GET", "GET", "GET", "GET"]


def test_as_of_becomes_for_version_as_of_the_snapshot(trino: FakeTrino, client: TestClient) -> None:
    hook = IcebergHook()
    tagged = wap.tag(hook.load_table("gold.t"), "gold.t", "release_1")
    hook.write("gold.u", [pa.table({"a": [9]})])
    hook.write("gold.t", [pa.table({"a": [3]})], mode="append")
    sql = "WITH c AS (SELECT t0.a FROM gold.t AS t0) SELECT c.a FROM c JOIN gold.u AS u ON c.a = u.a"
    response = client.post("/query", json={"sql": sql, "as_of": {"gold.t": "release_1"}})
    assert response.status_code == 200, response.text
    assert response.json()["snapshots"] == {"gold.t": tagged}
    assert response.json()["tables"] == ["gold.t", "gold.u"]
    assert trino.requests[0]["body"] == (
        f"WITH c AS (SELECT t0.a FROM gold.t FOR VERSION AS OF {tagged} AS t0) "
        "SELECT c.a FROM c JOIN gold.u AS u ON c.a = u.a"
    )
    unknown = client.post("/query", json={"sql": sql, "as_of": "release_9"})
    assert unknown.status_code == 400 and "release_9" in unknown.text
    assert len(trino.requests) == 1 + 4  # the refused as_of sent nothing


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM gold.t", "send exactly one SELECT statement"),
        ("INSERT INTO gold.t SELECT * FROM gold.t", "send exactly one SELECT statement"),
        ("SELECT 1; SELECT 2", "send exactly one SELECT statement"),
        ("SELECT * FROM TABLE(system.query(query => 'DROP TABLE x'))", "table functions are not allowed"),
        ("SELECT * FROM range(10)", "table functions are not allowed"),
        ("SELECT * FROM postgresql.public.users", "unknown table postgresql.public.users"),
        ("SELECT * FROM system.runtime.queries", "unknown table system.runtime.queries"),
        ("SELECT * FROM gold.nope", "unknown table gold.nope"),
        ("SELECT * FROM gold.t FOR VERSION AS OF 1", "with as_of"),
        ("SELECT * FROM gold.t FOR TIMESTAMP AS OF TIMESTAMP '2026-01-01 00:00'", "with as_of"),
        ("SELEC 1", "cannot parse"),
    ],
)
def test_refused_queries_never_reach_trino(trino: FakeTrino, client: TestClient, sql: str, message: str) -> None:
    response = client.post("/query", json={"sql": sql})
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert trino.requests == []


def test_trino_errors_are_answered_without_secrets(trino: FakeTrino, client: TestClient) -> None:
    trino.error = {"message": "Query exceeded maximum time limit of 2.00s", "errorName": "EXCEEDED_TIME_LIMIT"}
    trino.error.update(errorCode=131075, errorType="INSUFFICIENT_RESOURCES")
    slow = client.post("/query", json={"sql": "SELECT a FROM gold.t", "timeout_seconds": 2})
    assert slow.status_code == 400 and slow.json()["detail"] == "query stopped after its timeout of 2 s"
    assert "query_max_execution_time=2s" in trino.requests[0]["headers"]["X-Trino-Session"]
    trino.error = {"message": "Function 'nope' not registered", "errorName": "FUNCTION_NOT_FOUND"}
    trino.error.update(errorCode=44, errorType="USER_ERROR")
    bad = client.post("/query", json={"sql": "SELECT nope(a) FROM gold.t"})
    assert bad.status_code == 400
    assert bad.json()["detail"] == "query failed on Trino: FUNCTION_NOT_FOUND: Function 'nope' not registered"


def test_unreachable_trino_is_a_502_without_the_password(
    trino: FakeTrino, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conn = {"conn_type": "trino", "host": "127.0.0.1", "port": 1, "login": "analyst", "password": "s3cr3t-pw"}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_TRINO", json.dumps({**conn, "extra": {"protocol": "https"}}))
    with TestClient(create_app(auth=False)) as test_client:
        response = test_client.post("/query", json={"sql": "SELECT a FROM gold.t"})
    assert response.status_code == 502, response.text
    assert response.json()["detail"].startswith("Trino did not answer: TrinoConnectionError")
    assert "s3cr3t-pw" not in response.text and "s3cr3t-pw" not in caplog.text


def test_without_the_trino_connection_the_query_runs_on_duckdb(
    trino: FakeTrino, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ASGARD_TRINO")
    response = client.post("/query", json={"sql": "SELECT sum(a) FROM gold.t"})
    assert response.status_code == 200 and response.json()["rows"] == [[3]]
    assert trino.requests == []
