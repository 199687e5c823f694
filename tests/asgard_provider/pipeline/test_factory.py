"""The DAG the factory builds: schedule with data intervals, trigger-form params, assets per Iceberg table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.pipeline.factory import build_dag

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"


def _dag(tmp_path: Path, config: dict, name: str = "p"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return build_dag(load_pipeline_config(path, base_dir=INCLUDE), base_dir=INCLUDE, config_path=path)


def _churn():
    path = INCLUDE / "pipelines" / "customer_churn.yaml"
    return build_dag(load_pipeline_config(path, base_dir=INCLUDE), base_dir=INCLUDE, config_path=path)


def test_cron_schedule_has_data_intervals() -> None:
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = _churn()
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    # A run at 06:00 covers the previous day: as_of (data_interval_end) is the run's day.
    interval = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2025, 11, 11, 6))
    assert (interval.start.isoformat(), interval.end.isoformat()) == (
        "2025-11-10T06:00:00+00:00",
        "2025-11-11T06:00:00+00:00",
    )


def test_trigger_form_params_are_typed_and_default_to_the_config() -> None:
    dag = _churn()
    params = dag.params
    assert params["hyperparameters"] == {"n_estimators": 100, "max_depth": 10}
    schema = params.get_param("hyperparameters").schema
    assert schema["type"] == "object"
    train = dag.get_task("train_model")
    assert train.hyperparameters == "{{ params.hyperparameters | tojson }}"
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        params.get_param("hyperparameters").resolve("not an object")


@pytest.mark.parametrize(
    "asked",
    [{"n_estimators": 100_000}, {"n_estimators": 2.5}, {"max_depth": 0}, {"n_estimators": "many"}, {"typo": 1}],
)
def test_trigger_outside_the_hyperparameter_bounds_is_refused(asked: dict) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    param = _churn().params.get_param("hyperparameters")
    assert param.resolve({"n_estimators": 300, "max_depth": 12}) == {"n_estimators": 300, "max_depth": 12}
    with pytest.raises(ParamValidationError):
        param.resolve({"n_estimators": 100, "max_depth": 10, **asked})


def test_every_written_table_is_an_asset_outlet() -> None:
    dag = _churn()
    outlets = {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks if t.outlets}
    assert outlets["ingest_customers"] == ["bronze.customers"]
    assert outlets["clean_transactions"] == ["silver.transactions_cleaned", "silver.transactions_cleaned_quarantine"]
    assert outlets["batch_inference"] == ["gold.customer_churn_predictions"]
    uris = {a.uri for t in dag.tasks for a in t.outlets}
    assert "iceberg://iceberg/gold/customer_metrics" in uris


def test_incremental_stage_gets_interval_and_full_refresh_param(tmp_path: Path) -> None:
    dag = _dag(
        tmp_path,
        {
            "pipeline": "p",
            "schedule": "@hourly",
            "ingest": [
                {
                    "name": "ingest_transactions",
                    "source": {"connection": "asgard_transactions_db", "table": "transactions"},
                    "target": "bronze.transactions",
                    "incremental": {"cursor": "created_at"},
                }
            ],
        },
    )
    task = dag.get_task("ingest_transactions")
    assert task.cursor_column == "created_at"
    assert (task.interval_start, task.interval_end) == ("{{ data_interval_start }}", "{{ data_interval_end }}")
    assert task.full_refresh == "{{ params.full_refresh }}"
    assert dag.params["full_refresh"] is False


def test_schedule_on_another_pipelines_gold_asset(tmp_path: Path) -> None:
    dag = _dag(
        tmp_path,
        {
            "pipeline": "p",
            "schedule_on": ["gold.customer_metrics"],
            "ingest": [
                {"name": "copy", "source": {"connection": "c", "table": "t"}, "target": "bronze.t"},
            ],
        },
    )
    from airflow.sdk import Asset

    (asset,) = dag.timetable.asset_condition.objects
    assert asset == Asset(name="gold.customer_metrics", uri="iceberg://iceberg/gold/customer_metrics", group="iceberg")


def test_schedule_and_schedule_on_conflict(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="schedule_on") as info:
        _dag(tmp_path, {"pipeline": "p", "schedule": "@daily", "schedule_on": ["gold.x"]})
    assert str(tmp_path / "p.yaml") in str(info.value)


def test_incremental_needs_a_database_source(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="incremental"):
        _dag(
            tmp_path,
            {
                "pipeline": "p",
                "ingest": [
                    {
                        "name": "files",
                        "source": {"path": "/x.jsonl"},
                        "target": "bronze.x",
                        "incremental": {"cursor": "ts"},
                    }
                ],
            },
        )


def test_the_training_script_gets_its_own_timeout_so_the_error_names_script_and_limit() -> None:
    from asgard_provider.stages.train import TASK_MARGIN_MINUTES

    task = _churn().get_task("train_model")
    assert task.timeout == 60 * 60  # MLflowTrainOperator: "training script ... did not finish within 3600s"
    assert task.execution_timeout.total_seconds() == (60 + TASK_MARGIN_MINUTES) * 60  # Airflow's: "Timeout, PID"


def _demand(**predict: object) -> dict:
    """A regression pipeline over the churn Gold table (its tables exist in include/), one model per store x SKU."""
    return {
        "pipeline": "demand",
        "dbt": {"project": "customer_churn", "produces": ["gold.customer_metrics"]},
        "features": {
            "feature_view": "demand_features",
            "entity": "series",
            "join_key": "customer_id",
            "source_table": "gold.customer_metrics",
            "timestamp_field": "feature_timestamp",
            "features": [{"name": "total_purchases", "dtype": "int64"}],
        },
        "train": {
            "script": "churn_training.py",
            "experiment": "demand",
            "registered_model": "demand_model",
            "label_table": "gold.customer_metrics",
            "label_column": "total_purchases",
            "task": "regression",
            "max_metrics": {"wape": 0.4},
        },
        "predict": {"output_table": "gold.demand_predictions", **predict},
    }


def test_task_gates_columns_and_scope_reach_the_tasks(tmp_path: Path) -> None:
    dag = _dag(tmp_path, _demand(prediction_column="units_next_7d", scope="new_events"), name="demand")
    train, score = dag.get_task("train_model"), dag.get_task("batch_inference")
    assert (train.task, train.max_metrics, train.min_metrics, train.compare_metric) == (
        "regression",
        {"wape": 0.4},
        {},
        "rmse",
    )
    assert (score.task, score.prediction_column, score.scope) == ("regression", "units_next_7d", "new_events")
    churn = _churn().get_task("batch_inference")
    assert (churn.task, churn.prediction_column, churn.scope) == (
        "binary_classification",
        "churn_probability",
        "latest",
    )


@pytest.mark.parametrize(
    ("predict", "message"),
    [
        ({"thresholds": {"high": 0.8, "medium": 0.5}}, "predict.thresholds: risk levels only exist for train.task"),
        ({"prediction_column": "model_name"}, "prediction column 'model_name' is used twice or is reserved"),
        ({"prediction_column": "Units Next"}, "'Units Next' is not a column name"),
        ({"scope": "recent"}, "predict.scope"),
    ],
)
def test_predict_keys_that_do_not_fit_the_task_are_refused(tmp_path: Path, predict: dict, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message.replace(".", r"\.")):
        _dag(tmp_path, _demand(**predict), name="demand")
