"""Online scoring of a composite entity key (store_id, sku_id): Feast online store, a registered regressor, CLI, API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from asgard_provider.exceptions import EntityNotFoundError, InvalidEntityIdError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.serving import OnlineScorer, entities, main

from .conftest import (
    AS_OF,
    SERIES_FEATURES,
    SERIES_KEYS,
    SERIES_TABLE,
    SERIES_VIEW,
    TRAINING_FIXTURES,
    run_context,
    series_register_operator,
    snapshot_time,
    store_sku_metrics,
    train_operator,
)

MODEL = "store_sku_units"
#: The command line's model options: the regressor, its task and the name of its value.
CLI_MODEL = ["--model", MODEL, "--task", "regression", "--prediction-column", "units_next_7d"]
COLUMNS = [f["name"] for f in SERIES_FEATURES]
REFS = [f"{SERIES_VIEW}:{c}" for c in COLUMNS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A home with the store x SKU table registered and materialized, and a regressor trained on both keys."""
    home = tmp_path_factory.mktemp("series") / "asgard"
    home.mkdir()
    include = tmp_path_factory.mktemp("include")
    shutil.copytree(TRAINING_FIXTURES, include / "training")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASGARD_HOME", str(home))
        IcebergHook().write(SERIES_TABLE, [store_sku_metrics()], mode="overwrite")
        series_register_operator().execute(run_context())
        yield train_operator(
            task_id="train_units",
            script="regression_training.py",
            include_dir=str(include),
            experiment_name="store_sku_units",
            registered_model_name=MODEL,
            features=REFS,
            label_table=SERIES_TABLE,
            label_column="units_next_7d",
            entity_key=SERIES_KEYS,
            task="regression",
            hyperparameters={},
            min_metrics={},
        ).execute(run_context())


@pytest.fixture(scope="module")
def scorer(trained: dict[str, Any]) -> OnlineScorer:
    return OnlineScorer(MODEL, task="regression", prediction_column="units_next_7d")


def _expected(trained: dict[str, Any], pairs: list[tuple[int, str]]) -> list[float]:
    """The regressor applied to each pair's AS_OF row, read straight from Iceberg."""
    gold = IcebergHook().load_table(SERIES_TABLE).scan().to_pandas()
    rows = gold[gold["feature_timestamp"] == snapshot_time(AS_OF)].set_index(SERIES_KEYS).loc[pairs]
    model = MLflowHook().load_sklearn_model(MODEL, trained["model_version"])
    return [float(v) for v in model.predict(pd.DataFrame(rows[COLUMNS].astype("float64")))]


def test_one_store_sku_pair_is_scored_from_its_online_row(scorer: OnlineScorer, trained: dict[str, Any]) -> None:
    assert scorer.entity_keys == ["store_id", "sku_id"] and scorer.entity_key == "store_id,sku_id"
    result = scorer.score({"store_id": "2", "sku_id": "sku7"})
    assert result.keys == {"store_id": 2, "sku_id": "sku7"}
    assert (result.entity_key, result.entity_id) == ("store_id,sku_id", "2,sku7")
    assert result.value == pytest.approx(_expected(trained, [(2, "sku7")])[0], abs=1e-9)
    # The same SKU in another store is another entity with its own features and prediction.
    other = scorer.score({"store_id": 1, "sku_id": "sku7"})
    assert other.features != result.features and other.value != result.value
    assert result.to_dict()["store_id"] == 2 and result.to_dict()["sku_id"] == "sku7"
    assert result.to_dict()["units_next_7d"] == result.value
    assert scorer.describe()["entity_keys"] == ["store_id", "sku_id"]


def test_an_unknown_pair_or_a_partial_key_is_a_clear_error(scorer: OnlineScorer) -> None:
    with pytest.raises(EntityNotFoundError, match=r"store_id=9, sku_id=sku7 has no online features in feature view"):
        scorer.score({"store_id": 9, "sku_id": "sku7"})
    with pytest.raises(InvalidEntityIdError, match=r"the entity key is store_id,sku_id; got store_id"):
        scorer.score({"store_id": 1})
    with pytest.raises(InvalidEntityIdError, match=r"composite \(store_id,sku_id\): give every column"):
        scorer.score(1)
    with pytest.raises(InvalidEntityIdError, match="store_id must be an integer, got 'x'"):
        scorer.score({"store_id": "x", "sku_id": "sku7"})


def test_key_options_group_into_entities() -> None:
    assert entities(["store_id=1", "sku_id=7"]) == [{"store_id": "1", "sku_id": "7"}]
    assert entities(["store_id=1,sku_id=7", "store_id=2", "sku_id=8"]) == [
        {"store_id": "1", "sku_id": "7"},
        {"store_id": "2", "sku_id": "8"},
    ]
    assert entities(["account_id=1", "account_id=2"]) == [{"account_id": "1"}, {"account_id": "2"}]


def test_cli_scores_a_pair_given_as_one_key_option_per_column(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["score", *CLI_MODEL, "--key", "store_id=2", "--key", "sku_id=sku7", "--key", "store_id=1"]
    assert main([*argv, "--key", "sku_id=sku8", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["store_id"], line["sku_id"]) for line in lines] == [(2, "sku7"), (1, "sku8")]
    assert [line["units_next_7d"] for line in lines] == pytest.approx(_expected(trained, [(2, "sku7"), (1, "sku8")]))
    assert main(["score", *CLI_MODEL, "--key", "store_id=2", "--key", "sku_id=sku7"]) == 0
    assert capsys.readouterr().out.startswith("store_id=2 sku_id=sku7  ")
    assert main(["score", *CLI_MODEL, "--key", "store_id=9", "--key", "sku_id=sku7"]) == 1
    assert capsys.readouterr().err.startswith("FAIL store_id=9, sku_id=sku7 has no online features")
    assert main(["features", *CLI_MODEL, "--key", "store_id=2", "--key", "sku_id=sku7"]) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["store_id"], line["sku_id"]) == (2, "sku7") and set(COLUMNS) <= set(line)


@pytest.fixture(scope="module")
def api(trained: dict[str, Any], airflow_db: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A test client of the app serving the store x SKU model, with an admin token."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from asgard_provider.api import create_app

    app = create_app(model_name=MODEL, task="regression", prediction_column="units_next_7d")
    token = init_auth_manager(app).generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_api_scores_a_pair_by_query_parameters_and_by_body(
    api: tuple[Any, dict[str, str]], trained: dict[str, Any]
) -> None:
    client, auth = api
    expected = _expected(trained, [(2, "sku7"), (1, "sku8")])
    one = client.get("/score", params={"store_id": 2, "sku_id": "sku7"}, headers=auth)
    assert one.status_code == 200, one.text
    assert one.json()["keys"] == {"store_id": 2, "sku_id": "sku7"} and one.json()["entity_key"] == "store_id,sku_id"
    assert one.json()["value"] == pytest.approx(expected[0], abs=1e-9)
    body = {"entity_ids": [{"store_id": 2, "sku_id": "sku7"}, {"store_id": "1", "sku_id": "sku8"}]}
    many = client.post("/score", json=body, headers=auth)
    assert many.status_code == 200, many.text
    assert [s["keys"] for s in many.json()["scores"]] == [
        {"store_id": 2, "sku_id": "sku7"},
        {"store_id": 1, "sku_id": "sku8"},
    ]
    assert [s["value"] for s in many.json()["scores"]] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/score?store_id=9&sku_id=sku7", None, 404, "store_id=9, sku_id=sku7 has no online features"),
        ("POST", "/score", {"entity_ids": [{"store_id": 9, "sku_id": "sku7"}]}, 404, "store_id=9, sku_id=sku7"),
        ("GET", "/score?store_id=1", None, 422, "the entity key is store_id,sku_id; got store_id"),
        ("GET", "/score?store_id=1&store_id=2&sku_id=sku7", None, 422, "give each join key column once"),
        ("GET", "/score/1", None, 422, "composite (store_id,sku_id): give every column"),
        ("POST", "/score", {"entity_ids": [{"store_id": 1, "region": "x"}]}, 422, "got region, store_id"),
    ],
)
def test_api_names_both_keys_in_its_errors(
    api: tuple[Any, dict[str, str]], method: str, path: str, body: Any, status: int, message: str
) -> None:
    client, auth = api
    response = client.request(method, path, json=body, headers=auth)
    assert response.status_code == status, response.text
    assert message in response.text


def test_openapi_documents_the_composite_key_routes(api: tuple[Any, dict[str, str]]) -> None:
    client, auth = api
    spec = client.get("/openapi.json", headers=auth).json()
    assert "get" in spec["paths"]["/score"] and "post" in spec["paths"]["/score"]
    assert "store_id=1&sku_id=7" in spec["paths"]["/score"]["get"]["description"]
    assert "keys" in spec["components"]["schemas"]["EntityScore"]["required"]
    items = spec["components"]["schemas"]["ScoreRequest"]["properties"]["entity_ids"]["items"]["anyOf"]
    assert {"type": "object", "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "string"}]}} in items
