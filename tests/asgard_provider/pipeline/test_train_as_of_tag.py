"""``train.as_of_tag``: the config value reaches every training task of the stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
CHURN = INCLUDE / "pipelines" / "customer_churn.yaml"


def _train_task(tmp_path: Path, **train: Any) -> Any:
    config = yaml.safe_load(CHURN.read_text())
    config["train"].update(train)
    path = tmp_path / CHURN.name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build_dag(load_pipeline_config(path, base_dir=INCLUDE), base_dir=INCLUDE, config_path=path).get_task(
        "train_model"
    )


def test_as_of_tag_is_passed_to_the_training_task(tmp_path: Path) -> None:
    assert _train_task(tmp_path, as_of_tag="release_2025_11").as_of_tag == "release_2025_11"


def test_without_as_of_tag_the_task_trains_on_current_data(tmp_path: Path) -> None:
    assert _train_task(tmp_path).as_of_tag is None
