"""Online scoring: the champion model applied to features read from the Feast online store (SQLite and Redis)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from asgard_provider import cli
from asgard_provider.api.app import BODY_TIMEOUT
from asgard_provider.engines.onnx_forest import TOLERANCE
from asgard_provider.exceptions import EntityNotFoundError, InferenceError, InvalidEntityIdError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.serving import OnlineScorer, main, risk_level

from .conftest import AS_OF, FEATURE_REFS, FEATURES, register_operator, run_context, snapshot_time, train_operator

MODEL = "customer_churn_predictor"
COLUMNS = [f["name"] for f in FEATURES]
CUSTOMERS = [1001, 1733, 2468, 3000]
ENDPOINTS = ["/mlops/inference", "/score/{entity_id}", "/score", "/features"]
ENDPOINTS += ["/models", "/models/{name}", "/health", "/query"]
ENDPOINTS += ["/models/{name}/promotions", "/pipelines/{dag_id}/batch-inference"]
ENDPOINTS += ["/pipelines/{dag_id}/batch-inference/{run_id}"]


@pytest.fixture(scope="module")
def trained(ml_home: Path) -> dict[str, Any]:
    return train_operator().execute(run_context())


@pytest.fixture(scope="module")
def scorer(trained: dict[str, Any]) -> OnlineScorer:
    return OnlineScorer(MODEL)


def _as_of_rows(customers: list[int]) -> pd.DataFrame:
    """The rows the online store must serve: each customer's AS_OF snapshot, read straight from Iceberg."""
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    rows = gold[(gold["feature_timestamp"] == snapshot_time(AS_OF)) & gold["customer_id"].isin(customers)]
    return rows.set_index("customer_id").loc[customers]


def _expected(trained: dict[str, Any], customers: list[int]) -> list[float]:
    model = MLflowHook().load_sklearn_model(MODEL, trained["model_version"])
    return [float(p) for p in model.predict_proba(_as_of_rows(customers)[COLUMNS].astype("float64"))[:, 1]]


def test_score_is_the_champion_applied_to_the_materialized_row(scorer: OnlineScorer, trained: dict[str, Any]) -> None:
    assert trained["alias"] == "champion"
    assert scorer.model_version == trained["model_version"]
    assert scorer.entity_key == "customer_id"
    # The refs come from the training run's asgard.features tag, in the model's column order.
    assert scorer.feature_refs == FEATURE_REFS
    rows = _as_of_rows(CUSTOMERS)
    expected = _expected(trained, CUSTOMERS)
    for customer, probability in zip(CUSTOMERS, expected, strict=True):
        result = scorer.score(customer)
        assert result.entity_id == customer
        assert result.value == pytest.approx(probability, abs=TOLERANCE)
        assert result.prediction == int(probability >= 0.5)
        assert result.risk_level == risk_level(probability, 0.7, 0.4)
        assert result.model_name == MODEL and result.model_version == trained["model_version"]
        assert result.feature_timestamp == datetime.combine(AS_OF, datetime.min.time(), UTC).isoformat()
        assert result.features == pytest.approx({c: float(rows.loc[customer, c]) for c in COLUMNS})
        assert result.to_dict()["customer_id"] == customer
    # The fixture's customers span the risk levels, so the thresholds are exercised, not just "low".
    levels = {scorer.score(c).risk_level for c in range(1001, 1061)}
    assert levels == {"low", "medium", "high"}


def test_one_row_probability_is_predict_proba(scorer: OnlineScorer) -> None:
    """The single-row path (ONNX Runtime for forests) gives predict_proba's numbers to 1e-6."""
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    rows = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].head(300)[COLUMNS].astype("float64")
    expected = scorer.model.predict_proba(rows)[:, 1]
    assert scorer._onnx is not None, "the forest was not converted: one row would take scikit-learn's slow path"
    got = [scorer.probability(row) for row in rows.to_dict("records")]
    assert got == pytest.approx([float(p) for p in expected], abs=TOLERANCE)
    # A missing value takes scikit-learn's own path (the forest routes NaN as it was fitted to): exactly equal.
    gap = {**rows.iloc[0].to_dict(), "days_since_last_purchase": None}
    with_nan = pd.DataFrame([gap], columns=COLUMNS).astype("float64")
    assert scorer.probability(gap) == float(scorer.model.predict_proba(with_nan)[0, 1])


def test_string_ids_from_urls_are_converted_to_the_join_key_type(scorer: OnlineScorer) -> None:
    assert scorer.score(" 1733 ").value == scorer.score(1733).value
    with pytest.raises(InvalidEntityIdError, match="customer_id must be an integer, got 'abc'"):
        scorer.score("abc")
    with pytest.raises(InvalidEntityIdError, match=r"customer_id must be between -9223372036854775808 and 9223"):
        scorer.score(str(2**63))


def test_unknown_customer_is_a_clear_error(scorer: OnlineScorer) -> None:
    with pytest.raises(EntityNotFoundError, match=r"customer_id 99999 has no online features in feature view "):
        scorer.score(99999)


def test_pipeline_config_supplies_model_features_and_thresholds(trained: dict[str, Any]) -> None:
    scorer = OnlineScorer.from_pipeline("customer_churn", thresholds={"high": 0.9})
    assert scorer.model_name == MODEL and scorer.model_version == trained["model_version"]
    assert scorer.feature_refs == FEATURE_REFS
    assert (scorer.high, scorer.medium) == (0.9, 0.4)


def test_cli_scores_and_reports_unknown_ids(
    scorer: OnlineScorer, trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "score",
                "--pipeline",
                "customer_churn",
                "--key",
                "customer_id=1001",
                "--key",
                "customer_id=2468",
                "--json",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["customer_id"] for line in lines] == [1001, 2468]
    assert [line["churn_probability"] for line in lines] == pytest.approx(_expected(trained, [1001, 2468]))

    assert cli.main(["score", "--model", MODEL, "--key", "customer_id=99999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL customer_id 99999 has no online features")
    assert cli.main(["score", "--key", "customer_id=1001"]) == 1
    assert "name the model to score with: --model <registered model> or --pipeline" in capsys.readouterr().err
    assert cli.main(["score", "--model", MODEL, "--key", "1001"]) == 1
    assert "--key '1001': write the entity's join key as col=value" in capsys.readouterr().err
    assert cli.main(["score", "--model", MODEL, "--key", "store_id=1001"]) == 1
    assert "the entity key is customer_id; got store_id" in capsys.readouterr().err


def test_mlflow_server_payload_scores_like_the_scorer(scorer: OnlineScorer, capsys: pytest.CaptureFixture[str]) -> None:
    """The body printed by `features --format mlflow` fed to MLflow's own scoring app gives the same probability."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import load_model
    from mlflow.pyfunc.scoring_server import init

    assert (
        main(
            [
                "features",
                "--model",
                MODEL,
                "--key",
                "customer_id=1001",
                "--key",
                "customer_id=3000",
                "--format",
                "mlflow",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["dataframe_split"]["columns"] == COLUMNS

    MLflowHook().client()  # points the process-wide registry URI at the embedded MLflow
    client = TestClient(init(load_model(f"models:/{MODEL}@champion")))
    response = client.post("/invocations", json=payload)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [row[1] for row in predictions] == pytest.approx([scorer.score(1001).value, scorer.score(3000).value])


def test_redis_online_store(
    trained: dict[str, Any], scorer: OnlineScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production layout: the same view materialized into Redis on 127.0.0.1:6379 serves the same scores."""
    import redis

    project = f"asgard_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_REDIS",
        json.dumps(
            {
                "conn_type": "asgard_feast",
                "extra": {
                    "project": project,
                    "registry": str(tmp_path / "registry.db"),
                    "online_store": "redis://127.0.0.1:6379/0",
                    "repo_path": str(tmp_path / "repo"),
                },
            }
        ),
    )
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        assert register_operator(feast_conn_id="feast_redis").execute(run_context())["materialized_rows"] == 2000
        assert any(True for _ in client.scan_iter(f"*{project}*", count=1000)), "nothing was written to Redis"
        on_redis = OnlineScorer(MODEL, feast_conn_id="feast_redis")
        assert on_redis.store.config.online_store.type == "redis"
        assert on_redis.project == project
        expected = _expected(trained, CUSTOMERS)
        assert [on_redis.score(c).value for c in CUSTOMERS] == pytest.approx(expected, abs=TOLERANCE)
        assert [on_redis.score(c).value for c in CUSTOMERS] == [scorer.score(c).value for c in CUSTOMERS]
        # Redis reads take no lock (its client is a thread-safe pool): concurrent reads each get their own row.
        with ThreadPoolExecutor(8) as pool:
            many = list(pool.map(lambda c: on_redis.score(c).value, CUSTOMERS * 25))
        assert many == [scorer.score(c).value for c in CUSTOMERS] * 25
        with pytest.raises(EntityNotFoundError, match=f"customer_id 99999 .*Feast project '{project}'"):
            on_redis.score(99999)
    finally:
        for key in client.scan_iter(f"*{project}*", count=1000):
            client.delete(key)
        client.close()


# --- The Asgard API (asgard_provider.api) on the same real model and online store -----------------------------


@pytest.fixture(scope="module")
def api(trained: dict[str, Any], airflow_db: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A test client of the app with Airflow's auth manager (token checks read the metadata DB), admin headers."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from asgard_provider.api import create_app

    app = create_app(pipeline="customer_churn")
    token = init_auth_manager(app).generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_api_scores_feature_values_like_the_model(api: tuple[Any, dict[str, str]], trained: dict[str, Any]) -> None:
    client, auth = api
    rows = _as_of_rows(CUSTOMERS)[COLUMNS]
    inputs = [{c: float(v) for c, v in row.items()} for row in rows.to_dict("records")]
    expected = _expected(trained, CUSTOMERS)
    for selector in ({"model_version": int(trained["model_version"])}, {"model_alias": "champion"}, {}):
        body = {"model_name": MODEL, "inputs": inputs, **selector}
        response = client.post("/mlops/inference", json=body, headers=auth)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["model_name"] == MODEL and data["model_version"] == trained["model_version"]
        assert [p["index"] for p in data["predictions"]] == list(range(len(CUSTOMERS)))
        assert [p["value"] for p in data["predictions"]] == pytest.approx(expected, abs=TOLERANCE)
        assert [p["risk_level"] for p in data["predictions"]] == [risk_level(p, 0.7, 0.4) for p in expected]
        assert data["inference_time_ms"] > 0
    # A missing value (null) is scored the way the forest was fitted to route it.
    gap = {**inputs[0], "support_tickets": None}
    response = client.post("/mlops/inference", json={"model_name": MODEL, "inputs": [gap]}, headers=auth)
    assert response.status_code == 200, response.text


def test_api_scores_entities_from_the_online_store(api: tuple[Any, dict[str, str]], trained: dict[str, Any]) -> None:
    client, auth = api
    expected = _expected(trained, [1733, 2468])
    one = client.get("/score/1733", headers=auth)
    assert one.status_code == 200, one.text
    assert one.json()["entity_key"] == "customer_id" and one.json()["entity_id"] == 1733
    assert one.json()["value"] == pytest.approx(expected[0], abs=TOLERANCE)
    # Named as the pipeline's predictions table names it (predict.prediction_column).
    assert one.json()["prediction_column"] == "churn_probability" and one.json()["risk_level"] in {
        "low",
        "medium",
        "high",
    }
    assert one.json()["features"] == pytest.approx({c: float(_as_of_rows([1733]).loc[1733, c]) for c in COLUMNS})
    many = client.post("/score", json={"entity_ids": [1733, "2468"]}, headers=auth)
    assert many.status_code == 200, many.text
    assert [s["entity_id"] for s in many.json()["scores"]] == [1733, 2468]
    assert [s["value"] for s in many.json()["scores"]] == pytest.approx(expected, abs=TOLERANCE)
    pinned = client.post("/score", json={"entity_ids": [1733], "model_version": 1}, headers=auth)
    assert pinned.status_code == 200 and pinned.json()["scores"][0]["model_version"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/score/99999", None, 404, "customer_id 99999 has no online features"),
        ("GET", "/score/abc", None, 422, "must be an integer, got 'abc'"),
        ("GET", f"/score/{2**63}", None, 422, "must be between -9223372036854775808 and 9223372036854775807"),
        ("GET", f"/score/{-(2**63) - 1}", None, 422, "must be between"),
        ("POST", "/score", {"entity_ids": [2**64]}, 422, "must be between"),
        ("POST", "/score", {"entity_ids": [1001], "model_name": "nope"}, 404, "'nope'"),
        ("POST", "/score", {"id": 1}, 422, "entity_ids"),
        ("POST", "/mlops/inference", {"model_name": "nope", "inputs": [{}]}, 404, "'nope'"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "model_version": 999, "inputs": [{}]}, 404, "999"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "model_alias": "gone", "inputs": [{}]}, 404, "@gone"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "inputs": [{"x": 1}]}, 422, "missing total_purchases"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "inputs": []}, 422, "at least 1"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "inputs": [{"a": "x"}]}, 422, "valid number"),
        ("POST", "/mlops/inference", {"model_name": MODEL, "model_version": 2**63, "inputs": [{}]}, 422, "less than"),
        ("PUT", "/score/1001", None, 405, "Method Not Allowed"),
        ("DELETE", "/models", None, 405, "Method Not Allowed"),
        ("GET", "/models/nope", None, 404, "no registered model 'nope'"),
        ("GET", "/nope", None, 404, "Not Found"),
    ],
)
def test_api_status_codes(
    api: tuple[Any, dict[str, str]], method: str, path: str, body: Any, status: int, message: str
) -> None:
    client, auth = api
    response = client.request(method, path, json=body, headers=auth)
    assert response.status_code == status, response.text
    assert message in response.text


def test_api_requires_an_airflow_token(api: tuple[Any, dict[str, str]]) -> None:
    client, _ = api
    for method, path in (("GET", "/score/1001"), ("GET", "/models"), ("GET", "/health"), ("POST", "/query")):
        assert client.request(method, path, json={"sql": "SELECT 1"}).status_code == 401
    assert client.get("/models", headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == set(ENDPOINTS)
    inference = spec["paths"]["/mlops/inference"]["post"]
    assert inference["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceRequest")
    assert inference["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceResponse")


def test_api_feature_views_models_and_health(api: tuple[Any, dict[str, str]], trained: dict[str, Any]) -> None:
    client, auth = api
    views = client.get("/features", headers=auth).json()
    view = next(v for v in views["feature_views"] if v["name"] == "customer_churn_features")
    table = IcebergHook().load_table("gold.customer_metrics")
    assert view["join_keys"] == ["customer_id"] and view["source_table"] == "gold.customer_metrics"
    assert view["source_snapshot_id"] == table.current_snapshot().snapshot_id
    assert [f["name"] for f in view["features"]] == COLUMNS and view["ttl_seconds"] == 90 * 86400
    assert view["materialized_until"].startswith("2025-11-11T06:00") and view["staleness_seconds"] > 0

    models = client.get("/models", headers=auth).json()["models"]
    assert {"name": MODEL, "aliases": {"champion": trained["model_version"]}} == {
        k: v for k, v in next(m for m in models if m["name"] == MODEL).items() if k != "latest_version"
    }
    detail = client.get(f"/models/{MODEL}", headers=auth).json()
    champion = next(v for v in detail["versions"] if v["version"] == trained["model_version"])
    assert champion["aliases"] == ["champion"] and champion["tags"]["asgard.promoted"] == "true"
    assert champion["metrics"]["roc_auc"] >= 0.75 and champion["run_id"]

    health = client.get("/health", headers=auth)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert set(health.json()["components"]) == {"catalog", "mlflow", "feast_online_store"}


def test_api_health_names_a_dead_store_without_its_password(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from asgard_provider.api import create_app

    extra = {"online_store": "redis://:s3cr3t-pw@127.0.0.1:1/0", "registry": str(tmp_path / "r.db")}
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_DEAD", json.dumps({"conn_type": "asgard_feast", "extra": extra}))
    register_operator(feast_conn_id="feast_dead", materialize=False).execute(run_context())
    with TestClient(create_app(auth=False, feast_conn_id="feast_dead")) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["components"]["feast_online_store"]["ok"] is False
    assert response.json()["components"]["catalog"]["ok"] is True
    assert "s3cr3t-pw" not in response.text


def test_api_read_only_sql_over_the_catalog(api: tuple[Any, dict[str, str]]) -> None:
    client, auth = api
    for sql in (
        "SELECT count(*) AS n FROM gold.customer_metrics",
        "SELECT count(*) AS n FROM iceberg.gold.customer_metrics",
    ):
        response = client.post("/query", json={"sql": sql}, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [[4000]] and response.json()["columns"] == ["n"]
        assert response.json()["tables"] == ["gold.customer_metrics"]
    sql = "WITH c AS (SELECT customer_id FROM gold.customer_metrics) SELECT * FROM c ORDER BY 1"
    limited = client.post("/query", json={"sql": sql, "limit": 5}, headers=auth).json()
    assert limited["rows"] == [[1001], [1001], [1002], [1002], [1003]] and limited["truncated"] is True


def test_api_query_reads_a_table_as_of_a_tag(api: tuple[Any, dict[str, str]]) -> None:
    import pyarrow as pa

    from asgard_provider.engines import wap
    from asgard_provider.hooks.iceberg import IcebergHook

    client, auth = api
    hook = IcebergHook()
    hook.write("scratch.time_travel", [pa.table({"id": [1, 2]})])
    tagged = wap.tag(hook.load_table("scratch.time_travel"), "scratch.time_travel", "release_1")
    hook.write("scratch.time_travel", [pa.table({"id": [3]})], mode="append")
    sql = "SELECT count(*) FROM scratch.time_travel"
    now = client.post("/query", json={"sql": sql}, headers=auth).json()
    then = client.post("/query", json={"sql": sql, "as_of": "release_1"}, headers=auth).json()
    per_table = client.post("/query", json={"sql": sql, "as_of": {"scratch.time_travel": str(tagged)}}, headers=auth)
    assert (now["rows"], then["rows"], per_table.json()["rows"]) == ([[3]], [[2]], [[2]])
    assert then["snapshots"] == {"scratch.time_travel": tagged} and now["snapshots"] == {}
    missing = client.post("/query", json={"sql": sql, "as_of": "release_9"}, headers=auth)
    assert missing.status_code == 400 and "tag:release_1" in missing.text


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_text('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')", "disabled"),
        ("SELECT * FROM '/etc/passwd'", "unknown table /etc/passwd"),
        ("INSTALL httpfs", "only SELECT is allowed, got LOAD"),
        ("LOAD httpfs", "only SELECT is allowed, got LOAD"),
        ("SET enable_external_access = true", "only SELECT is allowed, got SET"),
        ("ATTACH '/tmp/x.db' AS x", "only SELECT is allowed, got ATTACH"),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", "only SELECT is allowed, got COPY"),
        ("CREATE TABLE t AS SELECT 1", "only SELECT is allowed, got CREATE"),
        ("PRAGMA version", "only SELECT is allowed, got PRAGMA"),
        ("SELECT 1; SELECT 2", "exactly one statement, got 2"),
        ("SELECT * FROM gold.nope", "unknown table gold.nope"),
        ("SELECT * FROM other.gold.customer_metrics", "unknown table other.gold.customer_metrics"),
        ("SELEC 1", "cannot parse"),
        ("SELECT count(*) FROM range(100000000000) a, range(100000000000) b", "timeout of 0.5 s"),
    ],
)
def test_api_sql_reaches_only_catalog_tables(api: tuple[Any, dict[str, str]], sql: str, message: str) -> None:
    client, auth = api
    # Only the endless cross join needs the short timeout; a busy machine must not turn the others into timeouts.
    timeout = 0.5 if "timeout" in message else 30
    response = client.post("/query", json={"sql": sql, "timeout_seconds": timeout}, headers=auth)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"server did not listen on {port}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(trained: dict[str, Any], airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`asgard serve` in its own process (uvicorn), with Airflow's SimpleAuthManager: user admin, password pw."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "passwords.json").write_text(json.dumps({"admin": "pw"}))
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
    }
    asgard = str(Path(sys.executable).parent / "asgard")
    log = folder / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [asgard, "serve", "--pipeline", "customer_churn", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        assert "pw" not in log.read_text().split("serving ")[-1], "a password reached the server log"


def _raw(base: str, request: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(request)
    return sock


def test_serve_answers_while_idle_and_short_body_clients_hold_connections(served: str) -> None:
    """Issue 14.2: under uvicorn, one idle TCP client or a short body does not block anyone else."""
    import httpx

    token = httpx.post(f"{served}/auth/token", json={"username": "admin", "password": "pw"}, timeout=30)
    assert token.status_code == 201, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{served}/score/1001", timeout=30).status_code == 401
    assert httpx.get(f"{served}/score/1001", headers=auth, timeout=30).status_code == 200  # warm: first DB use
    idle = _raw(served, b"")
    short = _raw(
        served, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    )
    negative = _raw(served, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    try:
        started = time.monotonic()
        response = httpx.get(f"{served}/score/1001", headers=auth, timeout=5)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 3
        assert negative.recv(200).startswith(b"HTTP/1.1 400")
        # The short body is given up after BODY_TIMEOUT: its connection does not stay open forever.
        short.settimeout(BODY_TIMEOUT + 10)
        answer = short.recv(200)  # socket.timeout if the server still held it
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
    finally:
        for sock in (idle, short, negative):
            sock.close()


def test_pipeline_options_of_a_pipeline_with_a_model_per_partition() -> None:
    """Several models: one must be named; its options carry every view of its feature set."""
    from asgard_provider.serving import pipeline_options

    with pytest.raises(InferenceError, match=r"trains 3 models: name one with --model \(demand_forecaster_fresh, "):
        pipeline_options("demand_forecasting")
    options = pipeline_options("demand_forecasting", model_name="demand_forecaster_dry")
    assert options["model_name"] == "demand_forecaster_dry" and options["task"] == "regression"
    views = {ref.split(":")[0] for ref in options["feature_refs"]}
    assert views == {"store_sku_demand", "sku_profile"}
    assert options["prediction_column"] == "units_next_7d"
