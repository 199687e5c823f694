"""More than one of a stage: one model per partition value, several train stages, feature sets, shared tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag
from asgard_provider.pipeline.graph import PipelineGraph

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
DEMAND = INCLUDE / "pipelines" / "demand_forecasting.yaml"
CATEGORIES = ["fresh", "dry", "household"]


@pytest.fixture(scope="module")
def demand() -> Any:
    return build_dag(load_pipeline_config(DEMAND, base_dir=INCLUDE), base_dir=INCLUDE, config_path=DEMAND)


def test_a_partition_expands_into_one_training_task_and_model_per_value(demand: Any) -> None:
    tasks = {c: demand.get_task(f"train_model.{c}") for c in CATEGORIES}
    assert {c: t.registered_model_name for c, t in tasks.items()} == {c: f"demand_forecaster_{c}" for c in CATEGORIES}
    assert {c: t.row_filter for c, t in tasks.items()} == {c: f"category = '{c}'" for c in CATEGORIES}
    assert {c: [a.name for a in t.outlets] for c, t in tasks.items()} == {
        c: [f"model:demand_forecaster_{c}"] for c in CATEGORIES
    }
    # Each model is trained on the whole feature set: both views, joined on the first view's keys.
    for task in tasks.values():
        assert {ref.split(":")[0] for ref in task.features} == {"store_sku_demand", "sku_profile"}
        assert task.entity_keys == ["store_id", "sku_id"]
        views = {view["name"]: view for view in task.feature_views}
        assert {name: view["table"] for name, view in views.items()} == {
            "store_sku_demand": "gold.demand_features",
            "sku_profile": "gold.sku_profile",
        }
        assert views["store_sku_demand"]["keys"] == ["store_id", "sku_id"]
        assert views["sku_profile"]["keys"] == ["sku_id"]
        assert {f"{name}:{f}" for name, view in views.items() for f in view["features"]} == set(task.features)


def test_each_model_scores_its_own_rows_into_its_own_table(demand: Any) -> None:
    for category in CATEGORIES:
        task = demand.get_task(f"batch_inference.{category}")
        assert task.model_name == f"demand_forecaster_{category}"
        assert task.row_filter == f"category = '{category}'"
        assert task.output_table == f"gold.demand_forecasts_{category}"
        assert task.monitoring_table == f"gold.demand_forecasts_{category}_monitoring"
        assert task.prediction_column == "units_next_7d"
        # It waits for its own model only: another category's failed gate does not hold up this one's scores.
        assert task.upstream_task_ids == {f"train_model.{category}"}
        # It reads the feature views its model was trained on, described from config (no Feast registry).
        assert task.feature_views == demand.get_task(f"train_model.{category}").feature_views
        assert {f"{v['name']}:{f}" for v in task.feature_views for f in v["features"]} == set(task.feature_refs)


def test_a_feature_set_registers_its_views_in_turn_and_one_service_over_them(demand: Any) -> None:
    first, second = demand.get_task("register_store_sku_demand"), demand.get_task("register_sku_profile")
    assert "register_store_sku_demand" in second.upstream_task_ids
    assert (first.feature_service, first.service_views) == ("demand_service", [])
    assert (second.feature_service, second.service_views) == ("demand_service", ["store_sku_demand"])
    assert second.source_table == "gold.sku_profile"


def test_another_pipelines_table_is_read_in_place_and_named() -> None:
    graph = PipelineGraph(load_pipeline_config(DEMAND, base_dir=INCLUDE), INCLUDE)
    assert graph.problems == []
    assert graph.external == {"gold.sku_profile": "retail_catalog"}
    assert graph.notes() == ["gold.sku_profile is read in place from pipeline retail_catalog"]
    view = next(stage for stage in graph.describe() if stage["name"] == "sku_profile")
    assert view["reads"] == ["gold.sku_profile (pipeline retail_catalog)"]
    # No stage of this pipeline writes it, so no task waits for one.
    register = next(node for node in graph.nodes if node.spec.label == "sku_profile")
    assert [up.spec.label for up, _ in graph.upstream(register)] == ["demand_forecasting", "store_sku_demand"]


def _config(tmp_path: Path, **changes: Any) -> Path:
    config = yaml.safe_load(DEMAND.read_text())
    config.update(changes)
    path = tmp_path / "demand_forecasting.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_other_pipelines_columns_are_checked(tmp_path: Path) -> None:
    config = yaml.safe_load(DEMAND.read_text())
    config["features"][1]["features"][0]["name"] = "unit_prize"
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(_config(tmp_path, features=config["features"]), base_dir=INCLUDE)
    assert "features[1].features[0].name: 'unit_prize' is not a column of gold.sku_profile" in str(info.value)


def test_several_named_train_and_predict_stages_each_register_and_score_their_model(tmp_path: Path) -> None:
    config = yaml.safe_load(DEMAND.read_text())
    train, predict = config.pop("train"), config.pop("predict")
    del train["partition"]
    config["stages"] = [
        {"train": {**train, "name": "train_small", "registered_model": "demand_small"}},
        {"predict": {**predict, "name": "predict_small", "output_table": "gold.small_forecasts"}},
        {"train": {**train, "name": "train_large", "registered_model": "demand_large"}},
        {"predict": {**predict, "name": "predict_large", "output_table": "gold.large_forecasts"}},
    ]
    path = tmp_path / "demand_forecasting.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    dag = build_dag(load_pipeline_config(path, base_dir=INCLUDE), base_dir=INCLUDE, config_path=path)
    assert dag.get_task("train_small").registered_model_name == "demand_small"
    assert dag.get_task("train_small").row_filter is None
    assert (dag.get_task("predict_small").model_name, dag.get_task("predict_large").model_name) == (
        "demand_small",
        "demand_large",
    )
    assert dag.get_task("predict_large").output_table == "gold.large_forecasts"
    assert "train_small" in dag.get_task("predict_small").upstream_task_ids
