"""The Asgard page of a pipeline that has run: tables, models, drift and predictions, read from the engines."""

from __future__ import annotations

import re
from html import escape
from typing import Any

import pytest

from .conftest import PREDICTIONS


def _rows(html: str, table_id: str) -> list[list[str]]:
    """The cells of table ``table_id`` as text."""
    body = html.split(f"<table id={table_id}>", 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>") if "<td" in row]


@pytest.fixture(scope="module")
def page(ran_pipeline: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    from fastapi.testclient import TestClient

    from asgard_provider.api import create_app

    with TestClient(create_app(auth=False)) as client:
        response = client.get("/ui/pipelines/customer_churn")
        missing = client.get("/ui/pipelines/nope")
    assert response.status_code == 200, response.text
    assert missing.status_code == 404 and "no pipeline &#x27;nope&#x27;" in missing.text
    (tmp_path_factory.mktemp("page") / "customer_churn.html").write_text(response.text)  # to look at
    return response.text


def test_page_shows_each_layers_tables_with_rows_and_snapshot(page: str) -> None:
    from asgard_provider.hooks.iceberg import IcebergHook

    tables = {row[1]: row for row in _rows(page, "tables")}
    assert list(tables)[:3] == ["bronze.customers", "bronze.transactions", "bronze.support_tickets"]
    assert tables["bronze.customers"][2] == "not written yet"
    for name in ("gold.customer_metrics", PREDICTIONS):
        table = IcebergHook().load_table(name)
        assert tables[name][2] == str(len(table.scan().to_arrow()))
        assert tables[name][3] == str(table.current_snapshot().snapshot_id)


def test_page_shows_champion_and_challenger_with_metrics_and_why(page: str, ran_pipeline: dict[str, Any]) -> None:
    first, second = ran_pipeline["versions"]
    rows = {row[0]: row for row in _rows(page, "models")}
    assert list(rows) == [second["model_version"], first["model_version"]]  # newest first
    champion, challenger = rows[first["model_version"]], rows[second["model_version"]]
    assert champion[1:3] == ["champion", "yes"] and challenger[1:3] == ["challenger", "no"]
    assert champion[3] == f"{first['metrics']['roc_auc']:.4f}"  # roc_auc, the first shown metric
    assert f"vs champion {second['holdout']['champion']:.4f}" in challenger[-4]
    assert challenger[-2] == escape(second["promotion_reason"])


def test_page_shows_drift_per_feature_and_the_prediction_distribution(page: str, ran_pipeline: dict[str, Any]) -> None:
    from asgard_provider.hooks.iceberg import IcebergHook

    monitoring = IcebergHook().load_table(f"{PREDICTIONS}_monitoring").scan().to_pandas()
    features = monitoring[monitoring["kind"] == "feature"].set_index("name")
    drift = {row[0]: row for row in _rows(page, "drift")}
    assert set(drift) == set(features.index)
    for name, row in drift.items():
        assert row[1] == f"{features.loc[name, 'psi']:.4f}"
    histogram = _rows(page, "histogram")
    assert len(histogram) == 10 and sum(int(r[1]) for r in histogram) == ran_pipeline["inference"]["rows"]


def test_page_shows_each_feature_views_entity_keys(page: str) -> None:
    views = {row[0]: row for row in _rows(page, "feature-views")}
    assert views["customer_churn_features"][1:3] == ["customer_id", "gold.customer_metrics"]


def test_page_of_a_pipeline_with_a_model_per_partition_and_two_views(asgard_home) -> None:
    """Before any run: one section per partition model (ids unique in the page), every feature view listed."""
    from asgard_provider.api.pipeline_view import pipeline_page
    from asgard_provider.api.ui import render

    data = pipeline_page("demand_forecasting")
    names = [m.name for m in data.models]
    assert names == [f"demand_forecaster_{c}" for c in ("fresh", "dry", "household")]
    assert [m.predictions.table for m in data.models] == [
        f"gold.demand_forecasts_{c}" for c in ("fresh", "dry", "household")
    ]
    assert all(f"model {n!r} is not registered yet" in " ".join(data.problems) for n in names)
    html = render(data)
    views = {row[0]: row for row in _rows(html, "feature-views")}
    assert len(views) == 2 and any(row[1] == "store_id, sku_id" for row in views.values())
    assert html.count("<section id=model") == 3 and "id=model-3" in html
