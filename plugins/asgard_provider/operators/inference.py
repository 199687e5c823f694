"""Score entities of a feature snapshot with a registered MLflow model and write the predictions to Iceberg.

The work is :func:`asgard_provider.engines.scoring.score`'s; the operator turns the task context into a
:class:`~asgard_provider.engines.scoring.ScoringSpec` and publishes the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.engines.monitoring import DRIFT_THRESHOLD
from asgard_provider.engines.monitoring import monitoring_table as default_monitoring_table
from asgard_provider.engines.scoring import ScoringOutcome, ScoringSpec, score
from asgard_provider.evaluation import BINARY, risk_level
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.hooks.stores import connection_stores
from asgard_provider.lineage import LineageMixin, feast_namespace, mlflow_namespace, model_dataset_name
from asgard_provider.publishing import Dataset, publish_outcome


def risk_levels(probabilities: Sequence[float], high: float, medium: float) -> list[str]:
    """:func:`~asgard_provider.evaluation.risk_level` of each probability."""
    return [risk_level(p, high, medium) for p in probabilities]


class BatchInferenceOperator(LineageMixin, BaseOperator):
    """Score the rows of ``entity_table`` that ``scope`` selects and replace the ``as_of`` date's predictions.

    ``scope``: ``latest`` scores each entity's latest row at or before ``as_of`` (one score per entity);
    ``new_events`` every row whose ``timestamp_field`` is in the run's data interval; ``all`` every row. Their
    features come from a point-in-time join at each row's timestamp (the same join and feature definitions
    the model was trained on). The model is ``models:/<model_name>@<model_alias>`` (or ``model_version``) and
    must fit ``task``. Output columns are named by ``prediction_column``, ``class_column`` and
    ``probability_prefix`` (see :class:`~asgard_provider.engines.scoring.PredictionColumns`); risk levels
    (``thresholds``) only exist for binary classification. Predictions for ``as_of`` are replaced in one
    Iceberg commit, so reruns are idempotent; the output table is partitioned by ``as_of_date``.

    Monitoring: every run also replaces that date's rows in ``monitoring_table`` (default
    ``<output_table>_monitoring``): distribution stats of each feature and prediction column and their
    population stability index against the profiles the model's training run logged. PSI above
    ``drift_threshold`` is logged as a warning and listed in the return value and the asset event.

    ``row_filter`` (an Iceberg filter, e.g. ``category = 'fresh'``) limits the entity rows scored to those of
    one partition's model.

    ``feature_views`` describe each view the features come from, as
    :meth:`~asgard_provider.engines.feature_batches.ViewSource.to_dict` does (the factory passes the pipeline's):
    the point-in-time join reads them without importing Feast. Without them the views are looked up in the Feast
    registry. They are not templated.
    """

    template_fields: Sequence[str] = (
        "as_of",
        "interval_start",
        "interval_end",
        "model_alias",
        "model_version",
        "entity_table",
        "output_table",
        "monitoring_table",
    )
    ui_color = "#2e8b57"
    #: What :mod:`asgard_provider.pod_entry` runs for this operator under ``runner: kubernetes``.
    pod_engine = "score"

    def __init__(
        self,
        *,
        model_name: str,
        feature_refs: Sequence[str],
        entity_table: str,
        entity_key: str | Sequence[str],
        timestamp_field: str,
        output_table: str,
        as_of: str = "{{ data_interval_end | ds }}",
        scope: str = "latest",
        interval_start: str = "{{ data_interval_start }}",
        interval_end: str = "{{ data_interval_end }}",
        task: str = BINARY,
        prediction_column: str | None = None,
        class_column: str = "prediction",
        probability_prefix: str = "probability_",
        model_alias: str = "champion",
        model_version: str | None = None,
        thresholds: dict[str, float] | None = None,
        decision_threshold: float = 0.5,
        batch_size: int = 50_000,
        monitoring_table: str | None = None,
        monitor: bool = True,
        drift_threshold: float = DRIFT_THRESHOLD,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        row_filter: str | None = None,
        feature_views: Sequence[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.feature_refs = list(feature_refs)
        self.entity_table = entity_table
        self.entity_keys = [entity_key] if isinstance(entity_key, str) else list(entity_key)
        self.timestamp_field = timestamp_field
        self.output_table = output_table
        self.as_of = as_of
        self.scope = scope
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.task = task
        self.prediction_column = prediction_column
        self.class_column = class_column
        self.probability_prefix = probability_prefix
        self.model_alias = model_alias
        self.model_version = model_version
        self.thresholds = dict(thresholds or {"high": 0.7, "medium": 0.4})
        self.decision_threshold = decision_threshold
        self.batch_size = batch_size
        self.monitoring_table = monitoring_table or default_monitoring_table(output_table)
        self.monitor = monitor
        self.drift_threshold = drift_threshold
        self.mlflow_conn_id = mlflow_conn_id
        self.feast_conn_id = feast_conn_id
        self.iceberg_conn_id = iceberg_conn_id
        self.row_filter = row_filter  # score these entity rows only (one model per partition value)
        self.feature_views = [dict(view) for view in feature_views]

    def spec(self, context: Context) -> ScoringSpec:
        """Return the engine's arguments: the rendered fields plus the run id."""
        return ScoringSpec(
            model_name=self.model_name,
            feature_refs=list(self.feature_refs),
            entity_table=self.entity_table,
            entity_keys=list(self.entity_keys),
            timestamp_field=self.timestamp_field,
            output_table=self.output_table,
            as_of=str(self.as_of),
            scope=self.scope,
            interval_start=str(self.interval_start),
            interval_end=str(self.interval_end),
            task=self.task,
            prediction_column=self.prediction_column,
            class_column=self.class_column,
            probability_prefix=self.probability_prefix,
            model_alias=self.model_alias,
            model_version=self.model_version,
            thresholds=self.thresholds,
            decision_threshold=self.decision_threshold,
            batch_size=self.batch_size,
            monitoring_table=self.monitoring_table,
            monitor=self.monitor,
            drift_threshold=self.drift_threshold,
            row_filter=self.row_filter,
            feature_views=tuple(self.feature_views),
            task_id=self.task_id,
            run_id=str(context.get("run_id", "")),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Score, write and return rows written, model version, table and snapshot id."""
        stores = connection_stores(self.iceberg_conn_id, self.mlflow_conn_id, self.feast_conn_id)
        outcome = score(self.spec(context), stores, self.log)
        read, wrote = scoring_lineage(outcome, self.entity_table, self.feature_refs, FeastHook(self.feast_conn_id))
        publish_outcome(
            self,
            context,
            read=read,
            wrote=wrote,
            events={outcome.table: outcome.event_extra()},
            iceberg=IcebergHook(self.iceberg_conn_id),
        )
        return outcome.as_dict()


def scoring_lineage(
    outcome: ScoringOutcome, entity_table: str, feature_refs: Sequence[str], feast: FeastHook
) -> tuple[list[Dataset], list[Dataset]]:
    """Return what a batch inference read (model version, entities, feature views) and wrote (predictions, stats)."""
    model = model_dataset_name(outcome.model_name, outcome.model_version)
    views = sorted({ref.split(":", 1)[0] for ref in feature_refs})
    read = [
        Dataset(model, namespace=mlflow_namespace(outcome.tracking_uri)),
        Dataset(entity_table),
        *(Dataset(view, namespace=feast_namespace(feast.project)) for view in views),
    ]
    wrote = [Dataset(outcome.table, rows=outcome.rows_written)]
    if outcome.monitoring is not None:
        wrote.append(Dataset(outcome.monitoring.table, rows=outcome.monitoring.rows))
    return read, wrote
