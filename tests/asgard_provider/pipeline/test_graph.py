"""The pipeline graph: one registry of stage kinds, the ``stages:`` list form, and the one-writer rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import PipelineConfig, load_pipeline_config
from asgard_provider.pipeline.graph import PipelineGraph
from asgard_provider.stages import STAGE_KINDS

from .test_dag_shape import VALUE, _shape

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"


def _as_list(config: dict[str, Any]) -> dict[str, Any]:
    """The same pipeline with every stage under ``stages:`` (the shorthand keys' stages before those listed)."""
    header = {k: v for k, v in config.items() if k not in STAGE_KINDS and k != "stages"}
    stages = []
    for key in STAGE_KINDS:
        value = config.get(key)
        stages += [{key: s} for s in value] if isinstance(value, list) else [{key: value}] if value else []
    return {**header, "stages": stages + config.get("stages", [])}


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / f"{config['pipeline']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_shorthand_keys_are_registered_stage_kinds_in_run_order() -> None:
    shorthand = ["ingest", "transform", "dbt", "features", "train", "predict"]
    assert [key for key in STAGE_KINDS if key in PipelineConfig.model_fields] == shorthand


def test_the_stages_list_builds_the_same_dag_and_show_output(tmp_path: Path) -> None:
    shorthand = INCLUDE / "pipelines" / "customer_value.yaml"
    path = _write(tmp_path, _as_list(yaml.safe_load(shorthand.read_text())))
    tasks = sorted({task for edge in VALUE["edges"] for task in edge})
    assert _shape(path) == {"tasks": tasks, **VALUE}
    listed = PipelineGraph(load_pipeline_config(path, base_dir=INCLUDE), INCLUDE).describe()
    assert listed == PipelineGraph(load_pipeline_config(shorthand, base_dir=INCLUDE), INCLUDE).describe()


def _problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(_write(tmp_path, config), base_dir=INCLUDE)
    return info.value.problems


def test_a_list_entry_holds_exactly_one_stage_kind(tmp_path: Path) -> None:
    ingest = {"name": "a", "source": {"connection": "c", "table": "t"}, "target": "bronze.t"}
    problems = _problems(tmp_path, {"pipeline": "p", "stages": [{"ingest": ingest, "dbt": {"project": "x"}}]})
    kinds = "ingest, transform, dbt, features, train, predict, export"
    assert problems == [f"stages[0]: give exactly one stage kind ({kinds}), got 2"]


def test_list_stages_are_named_by_their_position_and_share_the_one_writer_rule(tmp_path: Path) -> None:
    config = {
        "pipeline": "p",
        "ingest": [{"name": "a", "source": {"connection": "c", "table": "customers"}, "target": "bronze.customers"}],
        "stages": [
            {
                "transform": {
                    "name": "clean",
                    "sql": "customer_churn/customers_cleaned.sql",
                    "output_table": "silver.customers_cleaned",
                    "quarantine_table": "bronze.customers",
                }
            }
        ],
    }
    assert _problems(tmp_path, config) == [
        "stages[0].transform.quarantine_table: bronze.customers (quarantine table of silver.customers_cleaned) "
        "is also written by ingest[0]"
    ]


def test_two_stages_generating_one_task_id_are_refused(tmp_path: Path) -> None:
    ingest = {"name": "a", "source": {"connection": "c", "table": "t"}, "target": "bronze.t"}
    dbt = {"project": "customer_churn"}
    problems = _problems(tmp_path, {"pipeline": "p", "ingest": [ingest], "stages": [{"dbt": dbt}, {"dbt": dbt}]})
    assert "stages[1].dbt: task id 'gold' is also a task of stages[0].dbt; a pipeline holds one stage of this kind" in (
        problems
    )


def test_scoring_options_read_the_stages_list_like_the_shorthand(tmp_path: Path) -> None:
    from asgard_provider.serving import pipeline_options

    shorthand = yaml.safe_load((INCLUDE / "pipelines" / "customer_churn.yaml").read_text())
    bundle = tmp_path / "include"
    (bundle / "pipelines").mkdir(parents=True)
    for sub in ("sql", "dbt", "training"):
        (bundle / sub).symlink_to(INCLUDE / sub)
    (bundle / "pipelines" / "listed.yaml").write_text(
        yaml.safe_dump(_as_list({**shorthand, "pipeline": "listed"}), sort_keys=False)
    )
    expected = pipeline_options("customer_churn", INCLUDE)
    assert pipeline_options("listed", bundle) == expected
    assert expected["feature_refs"] and expected["thresholds"] == {"high": 0.7, "medium": 0.4}


def test_an_export_waits_for_the_writer_of_its_table_and_owns_its_folder(tmp_path: Path) -> None:
    config = yaml.safe_load((INCLUDE / "pipelines" / "customer_value.yaml").read_text())
    gold = {"name": "share_features", "table": "gold.customer_value_features", "to": "s3://share/features/"}
    config["stages"].append({"export": {**gold, "connection": "share_s3", "columns": ["customer_id", "spend_90d"]}})
    path = _write(tmp_path, config)
    shape = _shape(path)
    assert [edge for edge in shape["edges"] if "share_features" in edge] == [("check_gold", "share_features")]
    assert shape["outlets"]["share_features"] == ["files:s3://share/features"]
    described = PipelineGraph(load_pipeline_config(path, base_dir=INCLUDE), INCLUDE).describe()[-1]
    assert described == {
        "stage": "export",
        "name": "share_features",
        "tasks": ["share_features"],
        "reads": ["gold.customer_value_features"],
        "writes": ["files:s3://share/features"],
    }

    config["stages"].append({"export": {**gold, "name": "share_again", "format": "csv"}})
    assert _problems(tmp_path, config) == [
        "stages[2].export.to: files:s3://share/features is also written by stages[1].export"
    ]
