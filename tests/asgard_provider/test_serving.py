"""Online scoring: the champion model applied to features read from the Feast online store (SQLite and Redis)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from asgard_provider import cli
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.serving import (
    CustomerNotFoundError,
    InvalidEntityIdError,
    OnlineScorer,
    create_app,
    main,
    make_app,
    risk_level,
)

from .conftest import AS_OF, FEATURE_REFS, FEATURES, register_operator, run_context, snapshot_time, train_operator

MODEL = "customer_churn_predictor"
COLUMNS = [f["name"] for f in FEATURES]
CUSTOMERS = [1001, 1733, 2468, 3000]


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
        assert result.churn_probability == pytest.approx(probability, abs=1e-12)
        assert result.prediction == int(probability >= 0.5)
        assert result.risk_level == risk_level(probability, 0.7, 0.4)
        assert result.model_name == MODEL and result.model_version == trained["model_version"]
        assert result.feature_timestamp == datetime.combine(AS_OF, datetime.min.time(), UTC).isoformat()
        assert result.features == pytest.approx({c: float(rows.loc[customer, c]) for c in COLUMNS})
        assert result.to_dict()["customer_id"] == customer
    # The fixture's customers span the risk levels, so the thresholds are exercised, not just "low".
    levels = {scorer.score(c).risk_level for c in range(1001, 1061)}
    assert levels == {"low", "medium", "high"}


def test_one_row_probability_is_exactly_predict_proba(scorer: OnlineScorer) -> None:
    """The single-row path (trees evaluated directly for forests) gives predict_proba's numbers bit for bit."""
    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    rows = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].head(300)[COLUMNS].astype("float64")
    expected = scorer.model.predict_proba(rows)[:, 1]
    got = [scorer.probability(row) for row in rows.to_dict("records")]
    assert got == [float(p) for p in expected]
    # A missing value takes scikit-learn's own path (the forest routes NaN as it was fitted to).
    gap = {**rows.iloc[0].to_dict(), "days_since_last_purchase": None}
    with_nan = pd.DataFrame([gap], columns=COLUMNS).astype("float64")
    assert scorer.probability(gap) == float(scorer.model.predict_proba(with_nan)[0, 1])


def test_string_ids_from_urls_are_converted_to_the_join_key_type(scorer: OnlineScorer) -> None:
    assert scorer.score(" 1733 ").churn_probability == scorer.score(1733).churn_probability
    with pytest.raises(InvalidEntityIdError, match="customer_id must be an integer, got 'abc'"):
        scorer.score("abc")


def test_unknown_customer_is_a_clear_error(scorer: OnlineScorer) -> None:
    with pytest.raises(CustomerNotFoundError, match=r"customer_id 99999 has no online features in feature view "):
        scorer.score(99999)


def test_pipeline_config_supplies_model_features_and_thresholds(trained: dict[str, Any]) -> None:
    scorer = OnlineScorer.from_pipeline("customer_churn", thresholds={"high": 0.9})
    assert scorer.model_name == MODEL and scorer.model_version == trained["model_version"]
    assert scorer.feature_refs == FEATURE_REFS
    assert (scorer.high, scorer.medium) == (0.9, 0.4)


def test_cli_scores_and_reports_unknown_ids(
    scorer: OnlineScorer, trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--customer-id", "1001", "--customer-id", "2468", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["customer_id"] for line in lines] == [1001, 2468]
    assert [line["churn_probability"] for line in lines] == pytest.approx(_expected(trained, [1001, 2468]))

    assert cli.main(["score", "--customer-id", "99999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL customer_id 99999 has no online features")


def test_mlflow_server_payload_scores_like_the_scorer(scorer: OnlineScorer, capsys: pytest.CaptureFixture[str]) -> None:
    """The body printed by `features --format mlflow` fed to MLflow's own scoring app gives the same probability."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import load_model
    from mlflow.pyfunc.scoring_server import init

    assert main(["features", "--customer-id", "1001", "--customer-id", "3000", "--format", "mlflow"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["dataframe_split"]["columns"] == COLUMNS

    MLflowHook().client()  # points the process-wide registry URI at the embedded MLflow
    client = TestClient(init(load_model(f"models:/{MODEL}@champion")))
    response = client.post("/invocations", json=payload)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [row[1] for row in predictions] == pytest.approx(
        [scorer.score(1001).churn_probability, scorer.score(3000).churn_probability]
    )


def test_wsgi_factory_for_gunicorn(trained: dict[str, Any]) -> None:
    """`gunicorn 'asgard_provider.serving:create_app(pipeline="customer_churn")'` gets a working app."""
    from wsgiref.util import setup_testing_defaults

    app = create_app(pipeline="customer_churn")
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/score/2468"}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"]
    assert json.loads(body)["churn_probability"] == pytest.approx(_expected(trained, [2468])[0])


@pytest.fixture(scope="module")
def http_base(scorer: OnlineScorer) -> Iterator[str]:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, make_app(scorer), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_endpoint(http_base: str, scorer: OnlineScorer, trained: dict[str, Any]) -> None:
    expected = _expected(trained, [1733])[0]
    for status, body in (
        _http(f"{http_base}/score/1733"),
        _http(f"{http_base}/score?customer_id=1733"),
        _http(f"{http_base}/score", {"customer_id": 1733}),
    ):
        assert status == 200
        assert body["customer_id"] == 1733
        assert body["churn_probability"] == pytest.approx(expected)
        assert body["risk_level"] == risk_level(expected, 0.7, 0.4)
        assert body["model_version"] == trained["model_version"]

    status, body = _http(f"{http_base}/score/99999")
    assert status == 404 and "customer_id 99999 has no online features" in body["error"]
    status, body = _http(f"{http_base}/score/abc")
    assert status == 400 and "must be an integer" in body["error"]
    status, body = _http(f"{http_base}/score", {"id": 1})
    assert status == 400 and '{"customer_id": 1001}' in body["error"]
    status, body = _http(f"{http_base}/health")
    assert status == 200 and body["model_version"] == trained["model_version"]
    assert body["feature_refs"] == FEATURE_REFS
    status, body = _http(f"{http_base}/nope")
    assert status == 404


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
        assert [on_redis.score(c).churn_probability for c in CUSTOMERS] == pytest.approx(expected, abs=1e-12)
        assert [on_redis.score(c).churn_probability for c in CUSTOMERS] == [
            scorer.score(c).churn_probability for c in CUSTOMERS
        ]
        with pytest.raises(CustomerNotFoundError, match=f"customer_id 99999 .*Feast project '{project}'"):
            on_redis.score(99999)
    finally:
        for key in client.scan_iter(f"*{project}*", count=1000):
            client.delete(key)
        client.close()
