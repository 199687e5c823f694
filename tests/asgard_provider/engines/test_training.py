"""The training engine on real MLflow (SQLite) and a real Iceberg table, with a tiny real training script.

The last test runs the same engine through the task pod's entry point in a child process whose environment
poisons Airflow's database setting, and checks that no ``airflow`` module was imported on the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from asgard_provider.catalog import CatalogSettings
from asgard_provider.engines import wap
from asgard_provider.engines.feature_batches import ViewSource
from asgard_provider.engines.iceberg_tables import write_batches
from asgard_provider.engines.mlflow_store import MLflowStore
from asgard_provider.engines.stores import FeastSettings, MLflowSettings, Stores, open_catalog
from asgard_provider.engines.training import RunStarted, TrainingOutcome, TrainingSpec, train
from asgard_provider.exceptions import TrainingError
from asgard_provider.kubernetes import encode_spec

MODEL = "tiny_model"
LABELS = "gold.tiny_labels"

#: A complete training script: reads its training frame (the pinned labels joined point-in-time with the
#: features, without importing Feast), fits, logs metrics, holdout and model.
SCRIPT = """
import sys
import mlflow, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from asgard_provider.training import TrainingContext

ctx = TrainingContext.from_env()
frame = ctx.training_frame()
assert "feast" not in sys.modules, "the training frame imported Feast"
train, holdout = ctx.split(frame)
print(f"training on {len(train)} rows", flush=True)
with mlflow.start_run():
    model = LogisticRegression(C=float(ctx.params["C"])).fit(train[ctx.feature_columns], train[ctx.label_column])
    scores = model.predict_proba(holdout[ctx.feature_columns])[:, 1]
    mlflow.log_metric("roc_auc", roc_auc_score(holdout[ctx.label_column], scores))
    mlflow.log_param("rows", len(frame))
    ctx.log_datasets(train, holdout)
    requirements = mlflow.sklearn.get_default_pip_requirements(include_skops=True)  # not inferred: faster
    mlflow.sklearn.log_model(model, name=ctx.model_artifact_path, pip_requirements=requirements)
"""


def labels(n: int = 400, seed: int = 3) -> pa.Table:
    """``n`` entities with two features; the label depends on their sum."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    start = datetime(2025, 1, 1)
    return pa.table(
        {
            "entity_id": np.arange(n, dtype=np.int64),
            "ts": pa.array([start + timedelta(minutes=i) for i in range(n)], pa.timestamp("us")),
            "x1": x1,
            "x2": x2,
            "label": ((x1 + x2 + rng.normal(scale=0.5, size=n)) > 0).astype(np.int32),
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ASGARD_HOME holding the label table, and an include/ with the tiny script (and a broken one)."""
    root = tmp_path_factory.mktemp("train-engine")
    scripts = root / "include" / "training"
    scripts.mkdir(parents=True)
    (scripts / "tiny.py").write_text(SCRIPT)
    (scripts / "broken.py").write_text("print('reading labels')\nraise SystemExit(3)\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASGARD_HOME", str(root / "asgard"))
        write_batches(open_catalog(CatalogSettings.embedded()), LABELS, [labels()], mode="overwrite")
        yield root


def stores() -> Stores:
    return Stores(CatalogSettings.embedded(), MLflowSettings.embedded(), FeastSettings.embedded())


def spec(home: Path, **overrides: Any) -> TrainingSpec:
    values: dict[str, Any] = {
        "script": "tiny.py",
        "experiment_name": "tiny",
        "registered_model_name": MODEL,
        "features": ("tiny_view:x1", "tiny_view:x2"),
        "label_table": LABELS,
        "label_column": "label",
        "entity_keys": ("entity_id",),
        "timestamp_field": "ts",
        "hyperparameters": {"C": 1.0},
        "min_metrics": {"roc_auc": 0.8},
        "feature_views": (ViewSource("tiny_view", LABELS, ("entity_id",), "ts", None, ("x1", "x2")).to_dict(),),
        "include_dir": str(home / "include"),
        "timeout": 300,
        "run_tags": {"airflow.run_id": "manual__1"},
        "run_name": "train__manual__1",
    }
    return TrainingSpec(**{**values, **overrides})


@pytest.fixture(scope="module")
def first(home: Path) -> tuple[TrainingOutcome, list[RunStarted]]:
    heard: list[RunStarted] = []
    return train(spec(home), stores(), on_started=heard.append), heard


def test_first_model_becomes_the_champion(home: Path, first: tuple[TrainingOutcome, list[RunStarted]]) -> None:
    outcome, heard = first
    assert [h.run_id for h in heard] == [outcome.run_id]
    assert outcome.promoted and outcome.alias == "champion" and outcome.model_version == "1"
    assert outcome.champion_version is None and outcome.gate_failures == []
    assert outcome.holdout.summary is not None and outcome.holdout.summary.startswith("no champion yet")
    assert outcome.holdout.rows is not None and 40 <= outcome.holdout.rows <= 130
    assert outcome.metrics["roc_auc"] >= 0.8
    assert outcome.holdout_metrics["roc_auc"] == pytest.approx(outcome.metrics["roc_auc"])
    assert {"script", "register", "compare"} <= set(outcome.timings)

    client = MLflowStore(MLflowSettings.embedded()).client()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train__manual__1"
    assert run.data.tags["airflow.run_id"] == "manual__1"
    snapshot = open_catalog(CatalogSettings.embedded()).load_table(LABELS).current_snapshot()
    assert run.data.tags["asgard.label_table_snapshot_id"] == str(snapshot.snapshot_id)
    assert json.loads(run.data.tags["asgard.input_snapshots"]) == {LABELS: snapshot.snapshot_id}
    assert run.data.params["rows"] == "400"
    assert outcome.as_dict()["model_uri"] == f"models:/{MODEL}/1"


def test_gate_failure_registers_a_challenger_compared_on_the_same_holdout(
    home: Path, first: tuple[TrainingOutcome, list[RunStarted]]
) -> None:
    outcome = train(spec(home, hyperparameters='{"C": 0.5}', max_metrics={"log_loss": 0.01}), stores())
    assert not outcome.promoted and outcome.alias == "challenger"
    assert outcome.champion_version == first[0].model_version
    assert any(f.startswith("log_loss = ") for f in outcome.gate_failures), outcome.gate_failures
    assert outcome.holdout.champion is not None and outcome.holdout.rows == first[0].holdout.rows
    client = MLflowStore(MLflowSettings.embedded()).client()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == first[0].model_version
    assert client.get_model_version(MODEL, outcome.model_version).tags["asgard.promoted"] == "false"


def test_failing_script_fails_its_run_and_registers_nothing(
    home: Path, first: tuple[TrainingOutcome, list[RunStarted]]
) -> None:
    client = MLflowStore(MLflowSettings.embedded()).client()
    before = len(client.search_model_versions(f"name = '{MODEL}'"))
    heard: list[RunStarted] = []
    with pytest.raises(TrainingError, match=r"broken\.py exited with code 3") as err:
        train(spec(home, script="broken.py"), stores(), on_started=heard.append)
    assert "reading labels" in str(err.value)
    assert client.get_run(heard[0].run_id).info.status == "FAILED"
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == before


def test_hyperparameters_that_are_not_an_object_are_refused_before_any_run(home: Path) -> None:
    heard: list[RunStarted] = []
    with pytest.raises(TrainingError, match="must be a JSON object"):
        train(spec(home, hyperparameters="[1, 2]"), stores(), on_started=heard.append)
    assert heard == []


def test_the_pod_entry_trains_without_importing_airflow(
    home: Path, first: tuple[TrainingOutcome, list[RunStarted]], tmp_path: Path
) -> None:
    """``python -m asgard_provider.pod_entry`` as the pod runs it, under Airflow 3's poisoned DB setting."""
    args = json.loads(json.dumps(spec(home, run_tags={"airflow.run_id": "pod__1"}).__dict__))
    pod_spec = {"engine": "train", "args": args, "connections": {}}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ASGARD_HOME": os.environ["ASGARD_HOME"],
        "ASGARD_XCOM_PATH": str(tmp_path / "xcom" / "return.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "airflow-db-not-allowed:///",
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "asgard_provider.pod_entry", encode_spec(pod_spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "asgard_provider.engines.training" in imported and "mlflow" in imported
    assert not [m for m in imported if m == "airflow" or m.startswith("airflow.")]
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())
    assert result["model_name"] == MODEL and int(result["model_version"]) > int(first[0].model_version)
    client = MLflowStore(MLflowSettings.embedded()).client()
    assert client.get_run(result["run_id"]).data.tags["airflow.run_id"] == "pod__1"


def test_as_of_tag_trains_on_the_tagged_snapshot_not_on_rows_appended_after_it(home: Path) -> None:
    catalog = open_catalog(CatalogSettings.embedded())
    table = catalog.load_table(LABELS)
    tagged = wap.tag(table, LABELS, "release_1")
    tagged_rows = table.scan(snapshot_id=tagged).to_arrow().num_rows
    write_batches(catalog, LABELS, [labels(n=150, seed=5)], mode="append")
    current = catalog.load_table(LABELS).current_snapshot()
    assert current is not None and current.snapshot_id != tagged

    outcome = train(spec(home, as_of_tag="release_1", registered_model_name="tiny_tagged"), stores())

    assert outcome.label_snapshot_id == tagged
    run = MLflowStore(MLflowSettings.embedded()).client().get_run(outcome.run_id)
    assert run.data.params["rows"] == str(tagged_rows) == "400"  # the 150 appended rows are not trained on
    assert run.data.tags["asgard.as_of_tag"] == "release_1"
    assert run.data.tags["asgard.label_table_snapshot_id"] == str(tagged)
    assert json.loads(run.data.tags["asgard.input_snapshots"]) == {LABELS: tagged}


def test_a_missing_as_of_tag_names_the_key_and_the_tags_that_exist(home: Path) -> None:
    table = open_catalog(CatalogSettings.embedded()).load_table(LABELS)
    wap.tag(table, LABELS, "release_0")
    with pytest.raises(TrainingError, match=r"train\.as_of_tag .*no tag 'release_9' \(its tags: release_0") as err:
        train(spec(home, as_of_tag="release_9", registered_model_name="tiny_missing_tag"), stores())
    assert LABELS in str(err.value)
    assert MLflowStore(MLflowSettings.embedded()).client().search_registered_models("name = 'tiny_missing_tag'") == []
