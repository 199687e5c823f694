"""Run a training script under include/training/ in an MLflow run, then register and promote its model.

The work is :mod:`asgard_provider.engines.training`'s; the operator turns the task context into a
:class:`~asgard_provider.engines.training.TrainingSpec` and publishes the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider import evaluation
from asgard_provider.engines.training import (
    TAIL_LINES,
    RunStarted,
    Trainer,
    TrainingOutcome,
    TrainingSpec,
    code_version,
    resolve_script,
)
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.hooks.stores import connection_stores
from asgard_provider.lineage import LineageMixin, feast_namespace, mlflow_namespace, model_dataset_name
from asgard_provider.links import MLFLOW_XCOM, MLflowModelVersionLink, MLflowRunLink, push
from asgard_provider.publishing import Dataset, publish_outcome

__all__ = ["TAIL_LINES", "MLflowTrainOperator", "airflow_tags", "code_version", "pipeline_file", "resolve_script"]


def pipeline_file(context: Context) -> str:
    """Return the config a task's errors point at: ``include/pipelines/<dag id>.yaml``."""
    dag = context.get("dag")
    return f"include/pipelines/{dag.dag_id}.yaml" if dag is not None else "the pipeline file"


def airflow_tags(context: Context, task_id: str) -> dict[str, str]:
    """MLflow tags tying a run to the Airflow task that produced it."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or ""
    logical: Any = context.get("logical_date") or context.get("data_interval_end")
    return {
        "airflow.dag_id": str(dag_id),
        "airflow.run_id": str(context.get("run_id", "")),
        "airflow.task_id": task_id,
        "airflow.logical_date": logical.isoformat() if hasattr(logical, "isoformat") else str(logical or ""),
        "airflow.try_number": str(getattr(ti, "try_number", "")),
    }


class MLflowTrainOperator(LineageMixin, BaseOperator):
    """Train a model with a normal Python script and register it in MLflow.

    The operator creates the MLflow run (tagged with the DAG, run and task), writes the
    :class:`~asgard_provider.training.TrainingContext` file and runs the script as a subprocess with
    ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID`` and ``ASGARD_TRAINING_CONTEXT`` set, streaming its output to the
    task log. A failing script marks the run FAILED and registers nothing. Otherwise the model the script
    logged at ``model_artifact_path`` becomes a new registered version, unless it does not fit ``task`` (a
    regressor for a classification task: the run is marked FAILED, the error names ``train.task``). It gets
    the ``champion`` alias when every ``min_metrics`` floor and ``max_metrics`` ceiling holds AND, if a
    champion exists, its ``compare_metric`` on the holdout the script logged (``ctx.log_datasets``) matches
    or beats the current champion's on that same holdout (lower is better for mae, rmse, wape and log_loss);
    otherwise it gets the ``challenger`` alias, the champion stays, and the reason is logged and tagged.
    Every metric of the task is computed on the holdout and logged as ``holdout_<name>``; a gate on a
    metric the script did not log itself reads that value.

    Lineage tags on every run: DAG, run id, logical date, task, the Iceberg snapshot of the label table (the
    script reads exactly that snapshot) and of each feature view's source table, the feature views, the
    script's sha256 and the git commit. The task's plots on the holdout (ROC curve and confusion matrix;
    confusion matrix; predicted vs actual and residuals) and feature importance are logged under ``plots/``.

    :param script: file under ``include/training/`` (``include_dir`` or ``$ASGARD_INCLUDE_DIR`` overrides the root).
    :param features: Feast feature refs, ``view:feature``.
    :param hyperparameters: handed to the script as ``ctx.params`` (named so as not to clash with Airflow's
        ``params``); a dict, or a template rendering to a JSON object such as
        ``"{{ params.hyperparameters | tojson }}"`` (lets a trigger form override them).
    :param task: ML task type, one of :data:`asgard_provider.evaluation.TASK_TYPES`.
    :param min_metrics: floors such as ``{"roc_auc": 0.75}``: the metric must be known and at least that value.
    :param max_metrics: ceilings such as ``{"mae": 12.5}``: the metric must be known and at most that value.
    :param compare_metric: holdout metric the new model must match or beat the champion on (one of the task's
        :data:`asgard_provider.evaluation.METRICS`; ``None``: the task's default).
    :param feature_views: each feature view the features come from, as
        :meth:`~asgard_provider.engines.feature_batches.ViewSource.to_dict` describes it (the factory passes the
        pipeline's): the script's point-in-time join and the input snapshots read them without opening the Feast
        registry; if a view is not described, all are looked up there.
    :param compare_with_champion: ``False`` promotes on ``min_metrics`` alone (e.g. after a feature-set change
        the old champion cannot score the new holdout).
    :param timeout: seconds (or timedelta) the script may run; ``None`` relies on ``execution_timeout``.
    :param row_filter: Iceberg filter on the label rows (``category = 'fresh'``: one model per partition value).
    :param as_of_tag: train on the label table and every feature view's source table at this Iceberg tag.
    """

    template_fields: Sequence[str] = (
        "script",
        "experiment_name",
        "registered_model_name",
        "hyperparameters",
        "label_table",
    )
    template_fields_renderers = {"hyperparameters": "json"}
    ui_color = "#0194e2"
    #: What :mod:`asgard_provider.pod_entry` runs for this operator under ``runner: kubernetes``.
    pod_engine = "train"
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(
        self,
        *,
        script: str,
        experiment_name: str,
        registered_model_name: str,
        features: Sequence[str],
        label_table: str,
        label_column: str,
        entity_key: str | Sequence[str],
        timestamp_field: str,
        hyperparameters: dict[str, Any] | str | None = None,
        task: str = evaluation.BINARY,
        min_metrics: dict[str, float] | None = None,
        max_metrics: dict[str, float] | None = None,
        compare_metric: str | None = None,
        compare_with_champion: bool = True,
        model_artifact_path: str = "model",
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        include_dir: str | None = None,
        python: str | None = None,
        timeout: float | timedelta | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        feature_views: Sequence[Mapping[str, Any]] = (),
        feast_conn_id: str = FeastHook.default_conn_name,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        row_filter: str | None = None,
        as_of_tag: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script = script
        self.experiment_name = experiment_name
        self.registered_model_name = registered_model_name
        self.features = list(features)
        self.label_table = label_table
        self.label_column = label_column
        self.entity_keys = [entity_key] if isinstance(entity_key, str) else list(entity_key)
        self.timestamp_field = timestamp_field
        self.hyperparameters: dict[str, Any] | str = (
            hyperparameters if isinstance(hyperparameters, str) else dict(hyperparameters or {})
        )
        self.task = task
        self.min_metrics = dict(min_metrics or {})
        self.max_metrics = dict(max_metrics or {})
        self.compare_metric = compare_metric or evaluation.DEFAULT_COMPARE_METRIC.get(task, "")
        self.compare_with_champion = compare_with_champion
        self.model_artifact_path = model_artifact_path
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self.include_dir = include_dir
        self.python = python
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.mlflow_conn_id = mlflow_conn_id
        self.feature_views = [dict(view) for view in feature_views]
        self.feast_conn_id = feast_conn_id
        self.iceberg_conn_id = iceberg_conn_id
        self.row_filter = row_filter  # train on these label rows only (one model per partition value)
        self.as_of_tag = as_of_tag
        self._trainer: Trainer | None = None

    @property
    def entity_key(self) -> str:
        """The entity's first key column (the only one unless the key is composite)."""
        return self.entity_keys[0]

    def spec(self, context: Context) -> TrainingSpec:
        """Return the engine's arguments: the rendered fields plus the run's tags and name."""
        return TrainingSpec(
            script=self.script,
            experiment_name=self.experiment_name,
            registered_model_name=self.registered_model_name,
            features=tuple(self.features),
            label_table=self.label_table,
            label_column=self.label_column,
            entity_keys=tuple(self.entity_keys),
            timestamp_field=self.timestamp_field,
            hyperparameters=self.hyperparameters,
            task=self.task,
            min_metrics=self.min_metrics,
            max_metrics=self.max_metrics,
            compare_metric=self.compare_metric,
            compare_with_champion=self.compare_with_champion,
            model_artifact_path=self.model_artifact_path,
            champion_alias=self.champion_alias,
            challenger_alias=self.challenger_alias,
            feature_views=tuple(self.feature_views),
            include_dir=self.include_dir,
            python=self.python,
            timeout=self.timeout,
            task_id=self.task_id,
            run_name=f"{self.task_id}__{context.get('run_id', 'manual')}",
            run_tags=airflow_tags(context, self.task_id),
            where=pipeline_file(context),
            row_filter=self.row_filter,
            as_of_tag=self.as_of_tag,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the script in a new MLflow run; register, gate and promote its model."""
        stores = connection_stores(self.iceberg_conn_id, self.mlflow_conn_id, self.feast_conn_id)
        self._trainer = Trainer(self.spec(context), stores, self.log)

        def started(run: RunStarted) -> None:  # the run's link works while the script runs
            push(context, MLFLOW_XCOM, run_links(run))

        try:
            outcome = self._trainer.run(on_started=started)
        finally:
            self._trainer = None
        publish_outcome(
            self,
            context,
            read=training_reads(self.features, self.label_table, FeastHook(self.feast_conn_id)),
            wrote=[model_dataset(outcome)],
            iceberg=IcebergHook(self.iceberg_conn_id),
            xcom={MLFLOW_XCOM: {**run_links(outcome), "model_version": outcome.model_version}},
        )
        return outcome.as_dict()

    def on_kill(self) -> None:
        """Stop the training subprocess when the task is killed."""
        if self._trainer is not None:
            self._trainer.kill()


def run_links(run: RunStarted | TrainingOutcome) -> dict[str, str]:
    """Return what the MLflow run link needs (XCom ``asgard_mlflow``)."""
    return {"experiment_id": run.experiment_id, "run_id": run.run_id, "model_name": run.model_name}


def training_reads(features: Sequence[str], label_table: str, feast: FeastHook) -> list[Dataset]:
    """Lineage inputs of a training: the feature views of ``features`` and the label table."""
    views = sorted({ref.split(":", 1)[0] for ref in features})
    return [*(Dataset(view, namespace=feast_namespace(feast.project)) for view in views), Dataset(label_table)]


def model_dataset(outcome: TrainingOutcome) -> Dataset:
    """Lineage output of a training: the registered model version."""
    name = model_dataset_name(outcome.model_name, outcome.model_version)
    return Dataset(name, namespace=mlflow_namespace(outcome.tracking_uri))
