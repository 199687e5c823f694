"""Score entities of a feature snapshot with a registered MLflow model and write the predictions to Iceberg."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.assets import publish
from asgard_provider.engines.scoring import (
    SCOPES,
    BatchScorer,
    Entities,
    ModelStamp,
    PredictionColumns,
    ScoringTally,
    select_entities,
)
from asgard_provider.evaluation import BINARY, TASK_TYPES, risk_level, risk_thresholds
from asgard_provider.exceptions import AsgardError, CatalogError, InferenceError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.lineage import LineageMixin, mlflow_namespace, model_dataset_name
from asgard_provider.monitoring import (
    DRIFT_THRESHOLD,
    PREDICTION_PROFILE_ARTIFACT,
    MonitoringReport,
    monitoring_report,
)
from asgard_provider.monitoring import monitoring_table as default_monitoring_table
from asgard_provider.training import PROFILE_ARTIFACT


def risk_levels(probabilities: Sequence[float], high: float, medium: float) -> list[str]:
    """:func:`~asgard_provider.evaluation.risk_level` of each probability."""
    return [risk_level(p, high, medium) for p in probabilities]


class BatchInferenceOperator(LineageMixin, BaseOperator):
    """Score the rows of ``entity_table`` that ``scope`` selects and replace the ``as_of`` date's predictions.

    ``scope``: ``latest`` scores each entity's latest row at or before ``as_of`` (one score per entity);
    ``new_events`` every row whose ``timestamp_field`` is in the run's data interval; ``all`` every row. Their
    features come from Feast historical retrieval at each row's timestamp, i.e. the same feature definitions
    the model was trained on. The model is ``models:/<model_name>@<model_alias>`` (or ``model_version``) and
    must fit ``task``. Output columns are named by ``prediction_column``, ``class_column`` and
    ``probability_prefix`` (see :class:`~asgard_provider.engines.scoring.PredictionColumns`); risk levels
    (``thresholds``) only exist for binary classification. Predictions for ``as_of`` are replaced in one
    Iceberg commit, so reruns are idempotent; the output table is partitioned by ``as_of_date``.

    Monitoring: every run also replaces that date's rows in ``monitoring_table`` (default
    ``<output_table>_monitoring``): distribution stats of each feature and prediction column and their
    population stability index against the profiles the model's training run logged. PSI above
    ``drift_threshold`` is logged as a warning and listed in the return value and the asset event.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.row_filter = row_filter  # score these entity rows only (one model per partition value)
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

    def _columns(self) -> PredictionColumns:
        if self.task not in TASK_TYPES:
            raise InferenceError(f"task {self.task!r} of {self.task_id} is not one of {', '.join(TASK_TYPES)}")
        if self.scope not in SCOPES:
            raise InferenceError(f"scope {self.scope!r} of {self.task_id} is not one of {', '.join(SCOPES)}")
        return PredictionColumns(
            task=self.task,
            value_column=self.prediction_column,
            class_column=self.class_column,
            probability_prefix=self.probability_prefix,
            thresholds=risk_thresholds(self.thresholds),
            decision_threshold=self.decision_threshold,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Score, write and return rows written, model version, table and snapshot id."""
        as_of = self._as_of_date()
        columns = self._columns()
        if self.batch_size <= 0:
            raise InferenceError(f"batch_size must be positive, got {self.batch_size}")
        if not self.feature_refs:
            raise InferenceError(f"no feature_refs given to score {self.model_name!r}")
        mlflow = MLflowHook(self.mlflow_conn_id)
        version = mlflow.version_for(
            self.model_name, alias=None if self.model_version else self.model_alias, version=self.model_version
        )
        model = mlflow.load_sklearn_model(self.model_name, version)
        iceberg = IcebergHook(self.iceberg_conn_id)
        entities = self._entities(iceberg, as_of)
        feast = FeastHook(self.feast_conn_id)
        scorer = BatchScorer(
            model,
            columns,
            self._model_columns(model, version),
            lambda chunk: feast.historical_features(chunk, self.feature_refs),
            ModelStamp(self.model_name, str(version), as_of, datetime.now(UTC)),
            keep_timestamp=None if self.scope == "latest" else self.timestamp_field,
        )
        self.log.info(
            "scoring %d rows (scope %s) of %s as of %s with %s version %s",
            len(entities.frame),
            self.scope,
            self.entity_table,
            as_of,
            self.model_name,
            version,
        )
        reference = self._reference(mlflow, version) if self.monitor else {}
        tally = scorer.tally(reference)
        result = self._write(iceberg, context, scorer, entities, tally, as_of, version)
        monitoring: dict[str, Any] = {}
        if self.monitor:
            monitoring = self._monitoring(iceberg, context, as_of, version, reference, scorer, tally)
        self._publish(context, result, as_of, version, monitoring)
        self._report_lineage(iceberg, mlflow, version, result, monitoring, len(tally.stats))
        return {
            "rows": result["rows_written"],
            "model_name": self.model_name,
            "model_version": version,
            "table": result["table"],
            "snapshot_id": result["snapshot_id"],
            "as_of_date": as_of.isoformat(),
            "scope": self.scope,
            "monitoring": monitoring,
        }

    def _write(
        self,
        iceberg: IcebergHook,
        context: Context,
        scorer: BatchScorer,
        entities: Entities,
        tally: ScoringTally,
        as_of: date,
        version: str,
    ) -> dict[str, Any]:
        """Replace the ``as_of`` date's predictions with the scored batches (one commit)."""
        try:
            result = iceberg.write(
                self.output_table,
                scorer.batches(entities, self.batch_size, tally),
                mode="overwrite",
                overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
                partition_by=["as_of_date"],
                schema=scorer.schema(entities),
                snapshot_properties=self._snapshot_properties(context, as_of, version),
            )
        except CatalogError as exc:
            raise InferenceError(f"writing predictions to {self.output_table} failed: {exc}") from exc
        self.log.info(
            "wrote %s predictions for %s to %s (snapshot %s)",
            result["rows_written"],
            as_of,
            result["table"],
            result["snapshot_id"],
        )
        return result

    def _snapshot_properties(self, context: Context, as_of: date, version: str) -> dict[str, str]:
        return {
            "asgard.model": f"{self.model_name}/{version}",
            "asgard.as_of": as_of.isoformat(),
            "airflow.run_id": str(context.get("run_id", "")),
        }

    def _publish(
        self, context: Context, result: dict[str, Any], as_of: date, version: str, monitoring: dict[str, Any]
    ) -> None:
        drift_extra = (
            {
                "drifted_features": monitoring["drifted_features"],
                "drift_max_psi": monitoring["max_feature_psi"],
                "prediction_psi": monitoring["prediction"]["psi"],
                "mean_prediction": monitoring["prediction"]["mean"],
                "positive_rate": monitoring["prediction"]["positive_rate"],
                "monitoring_table": monitoring["table"],
                "monitoring_snapshot_id": monitoring["snapshot_id"],
            }
            if monitoring
            else {}
        )
        publish(
            context,
            result["table"],
            snapshot_id=result["snapshot_id"],
            rows_written=result["rows_written"],
            as_of_date=as_of.isoformat(),
            model_version=str(version),
            **drift_extra,
        )

    def _report_lineage(
        self,
        iceberg: IcebergHook,
        mlflow: MLflowHook,
        version: str,
        result: dict[str, Any],
        monitoring: dict[str, Any],
        monitoring_rows: int,
    ) -> None:
        """Report the model version, entity table and feature views read; predictions and monitoring written."""
        model = model_dataset_name(self.model_name, version)
        self.lineage_input(model, namespace=mlflow_namespace(mlflow.tracking_uri()))
        self.lineage_input(self.entity_table, table=iceberg.load_table(self.entity_table))
        self.lineage_feature_views(self.feature_refs, FeastHook(self.feast_conn_id).project)
        self.lineage_output(result["table"], table=iceberg.load_table(result["table"]), rows=result["rows_written"])
        if monitoring:
            table = iceberg.load_table(monitoring["table"])
            self.lineage_output(monitoring["table"], table=table, rows=monitoring_rows)

    def _reference(self, mlflow: MLflowHook, version: str) -> dict[str, Any]:
        """Training-set feature profiles and holdout prediction profiles logged by the model's training run."""
        try:
            run_id = mlflow.version_run_id(self.model_name, version)
            if run_id is None:
                raise InferenceError(f"version {version} was registered without a run")
            reference: dict[str, Any] = {"run_id": run_id}
            with tempfile.TemporaryDirectory(prefix="asgard-reference-") as tmp:
                for artifact in (PROFILE_ARTIFACT, PREDICTION_PROFILE_ARTIFACT):
                    path = mlflow.download_artifact(run_id, artifact, tmp)
                    if path is not None:
                        reference.update(json.loads(Path(path).read_text()))
        except (AsgardError, OSError, ValueError) as exc:
            self.log.warning("no drift reference for %s version %s: %s", self.model_name, version, exc)
            return {}
        if "features" not in reference:
            self.log.warning(
                "%s version %s (run %s) logged no %s: feature drift is not computed",
                self.model_name,
                version,
                reference["run_id"],
                PROFILE_ARTIFACT,
            )
        return reference

    def _monitoring(
        self,
        iceberg: IcebergHook,
        context: Context,
        as_of: date,
        version: str,
        reference: dict[str, Any],
        scorer: BatchScorer,
        tally: ScoringTally,
    ) -> dict[str, Any]:
        """Write this date's monitoring rows (replacing earlier ones) and return the summary."""
        report = monitoring_report(
            tally.stats,
            scorer.columns.monitored(scorer.classes),
            tally.levels if self.task == BINARY else None,
            reference,
            as_of=as_of,
            model=(self.model_name, str(version)),
            computed_at=datetime.now(UTC),
            drift_threshold=self.drift_threshold,
        )
        try:
            written = iceberg.write(
                self.monitoring_table,
                [report.table()],
                mode="overwrite",
                overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
                partition_by=["as_of_date"],
                schema=report.table().schema,
                snapshot_properties=self._snapshot_properties(context, as_of, version),
            )
        except CatalogError as exc:
            raise InferenceError(f"writing monitoring stats to {self.monitoring_table} failed: {exc}") from exc
        self._log_drift(report, as_of, version)
        self.log.info(
            "monitoring for %s written to %s (snapshot %s): prediction %s, feature PSI %s",
            as_of,
            written["table"],
            written["snapshot_id"],
            report.prediction,
            {k: None if v is None else round(v, 4) for k, v in report.feature_psi.items()},
        )
        return {
            "table": written["table"],
            "snapshot_id": written["snapshot_id"],
            "reference_run_id": report.reference_run_id,
            "psi": report.feature_psi,
            "prediction_psi": report.prediction_psi,
            "max_feature_psi": report.max_feature_psi,
            "drifted_features": report.drifted_features,
            "prediction": report.prediction,
        }

    def _log_drift(self, report: MonitoringReport, as_of: date, version: str) -> None:
        for name in report.drifted_features:
            self.log.warning(
                "DRIFT: feature %s on %s has PSI %.3f > %.2f against the training set of %s version %s",
                name,
                as_of,
                report.feature_psi[name],
                self.drift_threshold,
                self.model_name,
                version,
            )
        for name in report.drifted_predictions:
            self.log.warning(
                "DRIFT: predicted %s on %s has PSI %.3f > %.2f against the holdout predictions",
                name,
                as_of,
                report.prediction_psi[name],
                self.drift_threshold,
            )

    def _as_of_date(self) -> date:
        text = str(self.as_of).strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise InferenceError(f"as_of {self.as_of!r} is not a date (YYYY-MM-DD)") from None

    def _interval(self) -> tuple[datetime, datetime] | None:
        try:
            return datetime.fromisoformat(str(self.interval_start)), datetime.fromisoformat(str(self.interval_end))
        except ValueError:
            if self.scope == "new_events":
                raise InferenceError(
                    f"scope new_events needs the data interval; got {self.interval_start!r} .. {self.interval_end!r}"
                ) from None
            return None

    def _model_columns(self, model: Any, version: str) -> list[str]:
        """Feature columns in the order the model was fitted with; all must be among ``feature_refs``."""
        available = [ref.split(":", 1)[-1] for ref in self.feature_refs]
        fitted = [str(c) for c in getattr(model, "feature_names_in_", [])]
        missing = [c for c in fitted if c not in available]
        if missing:
            raise InferenceError(
                f"{self.model_name} version {version} was trained on {', '.join(missing)}, which feature_refs "
                f"({', '.join(self.feature_refs)}) do not provide"
            )
        return fitted or available

    def _entities(self, iceberg: IcebergHook, as_of: date) -> Entities:
        """Select the rows ``scope`` picks, sorted by key and timestamp."""
        try:
            table = iceberg.load_table(self.entity_table)
        except CatalogError as exc:
            raise InferenceError(f"cannot read entities from {self.entity_table}: {exc}") from exc
        try:
            entities = select_entities(
                table, self.entity_keys, self.timestamp_field, self.scope, as_of, self._interval(), self.row_filter
            )
        except InferenceError as exc:
            raise InferenceError(f"{self.entity_table}: {exc}") from None
        if entities.frame.empty:
            self.log.warning("%s: scope %s selects no rows for %s", self.entity_table, self.scope, as_of)
        return entities
