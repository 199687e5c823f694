"""Score every entity of a feature snapshot with a registered MLflow model and write the predictions to Iceberg."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseOperator, Context

from asgard_provider.assets import publish
from asgard_provider.evaluation import risk_level, risk_thresholds
from asgard_provider.exceptions import AsgardError, CatalogError, FeatureStoreError, InferenceError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.lineage import LineageMixin, mlflow_namespace, model_dataset_name
from asgard_provider.monitoring import DRIFT_THRESHOLD, PREDICTION_PROFILE_ARTIFACT, RunningStats
from asgard_provider.monitoring import monitoring_table as default_monitoring_table
from asgard_provider.training import EVENT_TIMESTAMP, PROFILE_ARTIFACT

#: Name of the prediction column, also the ``name`` of the prediction row in the monitoring table.
PREDICTION_COLUMN = "churn_probability"


def prediction_schema(entity_key: str, key_type: pa.DataType) -> pa.Schema:
    """Columns of the predictions table (``gold.customer_churn_predictions`` for the churn pipeline)."""
    return pa.schema(
        [
            pa.field(entity_key, key_type),
            pa.field("churn_probability", pa.float64()),
            pa.field("prediction", pa.int32()),
            pa.field("risk_level", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("scored_at", pa.timestamp("us", tz="UTC")),
            pa.field("as_of_date", pa.date32()),
        ]
    )


def monitoring_schema() -> pa.Schema:
    """Columns of the monitoring table: one row per scored date and feature, plus one for the prediction."""
    return pa.schema(
        [
            pa.field("as_of_date", pa.date32()),
            pa.field("kind", pa.string()),  # "feature" or "prediction"
            pa.field("name", pa.string()),
            pa.field("rows", pa.int64()),
            pa.field("mean", pa.float64()),
            pa.field("std", pa.float64()),
            pa.field("min", pa.float64()),
            pa.field("max", pa.float64()),
            pa.field("null_rate", pa.float64()),
            pa.field("reference_mean", pa.float64()),
            pa.field("psi", pa.float64()),
            pa.field("drifted", pa.bool_()),
            pa.field("positive_rate", pa.float64()),
            pa.field("share_high", pa.float64()),
            pa.field("share_medium", pa.float64()),
            pa.field("share_low", pa.float64()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("reference_run_id", pa.string()),
            pa.field("computed_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def risk_levels(probabilities: Sequence[float], high: float, medium: float) -> list[str]:
    """:func:`~asgard_provider.evaluation.risk_level` of each probability."""
    return [risk_level(p, high, medium) for p in probabilities]


class BatchInferenceOperator(LineageMixin, BaseOperator):
    """Score the entities of the ``as_of`` snapshot of ``entity_table`` and replace that date's predictions.

    Entities are the rows of ``entity_table`` whose ``timestamp_field`` falls on ``as_of`` (one score per
    entity). Their features come from Feast historical retrieval at that timestamp, i.e. the same feature
    definitions the model was trained on. The model is ``models:/<model_name>@<model_alias>`` (or
    ``model_version``). Predictions for ``as_of`` are replaced in one Iceberg commit, so reruns are idempotent;
    the output table is partitioned by ``as_of_date``.

    Monitoring: every run also replaces that date's rows in ``monitoring_table`` (default
    ``<output_table>_monitoring``): distribution stats of each feature and of the predicted probability, and
    their population stability index against the training-set profile the model's run logged
    (``TrainingContext.log_datasets``; the prediction against its holdout predictions). PSI above
    ``drift_threshold`` is logged as a warning and listed in the return value and the asset event.
    """

    template_fields: Sequence[str] = (
        "as_of",
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
        entity_key: str,
        timestamp_field: str,
        output_table: str,
        as_of: str = "{{ data_interval_end | ds }}",
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.feature_refs = list(feature_refs)
        self.entity_table = entity_table
        self.entity_key = entity_key
        self.timestamp_field = timestamp_field
        self.output_table = output_table
        self.as_of = as_of
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

    def execute(self, context: Context) -> dict[str, Any]:
        """Score, write and return rows written, model version, table and snapshot id."""
        as_of = self._as_of_date()
        high, medium = risk_thresholds(self.thresholds)
        if self.batch_size <= 0:
            raise InferenceError(f"batch_size must be positive, got {self.batch_size}")
        if not self.feature_refs:
            raise InferenceError(f"no feature_refs given to score {self.model_name!r}")

        mlflow = MLflowHook(self.mlflow_conn_id)
        version = mlflow.version_for(
            self.model_name, alias=None if self.model_version else self.model_alias, version=self.model_version
        )
        model = mlflow.load_sklearn_model(self.model_name, version)
        columns = self._model_columns(model, version)
        iceberg = IcebergHook(self.iceberg_conn_id)
        entities, key_type = self._entities(iceberg, as_of)
        self.log.info(
            "scoring %d entities of %s as of %s with %s version %s",
            len(entities),
            self.entity_table,
            as_of,
            self.model_name,
            version,
        )

        schema = prediction_schema(self.entity_key, key_type)
        reference = self._reference(mlflow, version) if self.monitor else {}
        features_ref = reference.get("features", {})
        stats = {c: RunningStats(features_ref.get(c, {}).get("edges", [])) for c in columns}
        prediction_ref = reference.get("prediction", {})
        stats[PREDICTION_COLUMN] = RunningStats(prediction_ref.get("edges", []))
        levels = {"high": 0, "medium": 0, "low": 0, "positive": 0}
        batches = self._score(
            FeastHook(self.feast_conn_id),
            model,
            columns,
            entities,
            schema,
            version,
            as_of,
            (high, medium),
            stats,
            levels,
        )
        try:
            result = iceberg.write(
                self.output_table,
                batches,
                mode="overwrite",
                overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
                partition_by=["as_of_date"],
                schema=schema,
                snapshot_properties={
                    "asgard.model": f"{self.model_name}/{version}",
                    "asgard.as_of": as_of.isoformat(),
                    "airflow.run_id": str(context.get("run_id", "")),
                },
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
        monitoring: dict[str, Any] = {}
        if self.monitor:
            monitoring = self._monitoring(iceberg, context, as_of, version, reference, stats, levels)
        drift_extra = (
            {
                "drifted_features": monitoring["drifted_features"],
                "drift_max_psi": monitoring["max_feature_psi"],
                "prediction_psi": monitoring["prediction"]["psi"],
                "mean_probability": monitoring["prediction"]["mean"],
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
        self._report_lineage(iceberg, mlflow, version, result, monitoring, len(stats))
        return {
            "rows": result["rows_written"],
            "model_name": self.model_name,
            "model_version": version,
            "table": result["table"],
            "snapshot_id": result["snapshot_id"],
            "as_of_date": as_of.isoformat(),
            "monitoring": monitoring,
        }

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
        """Training-set feature profiles and holdout prediction profile logged by the model's training run."""
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
        stats: dict[str, RunningStats],
        levels: dict[str, int],
    ) -> dict[str, Any]:
        """Write this date's monitoring rows (replacing earlier ones) and return the summary."""
        computed_at = datetime.now(UTC)
        profiles = {**reference.get("features", {})}
        if "prediction" in reference:
            profiles[PREDICTION_COLUMN] = reference["prediction"]
        rows = []
        psi: dict[str, float | None] = {}
        for name, running in stats.items():
            ref = profiles.get(name)
            value = _finite(running.psi_against(ref)) if ref is not None and running.rows else None
            psi[name] = value
            summary = running.summary()
            is_prediction = name == PREDICTION_COLUMN
            total = running.rows or 1
            rows.append(
                {
                    "as_of_date": as_of,
                    "kind": "prediction" if is_prediction else "feature",
                    "name": name,
                    "rows": running.rows,
                    **{k: _finite(v) for k, v in summary.items()},
                    "reference_mean": _finite(ref.get("mean")) if ref else None,
                    "psi": value,
                    "drifted": None if value is None else value > self.drift_threshold,
                    "positive_rate": levels["positive"] / total if is_prediction else None,
                    "share_high": levels["high"] / total if is_prediction else None,
                    "share_medium": levels["medium"] / total if is_prediction else None,
                    "share_low": levels["low"] / total if is_prediction else None,
                    "model_name": self.model_name,
                    "model_version": version,
                    "reference_run_id": reference.get("run_id"),
                    "computed_at": computed_at,
                }
            )
        schema = monitoring_schema()
        try:
            written = iceberg.write(
                self.monitoring_table,
                [pa.Table.from_pylist(rows, schema=schema)],
                mode="overwrite",
                overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
                partition_by=["as_of_date"],
                schema=schema,
                snapshot_properties={
                    "asgard.model": f"{self.model_name}/{version}",
                    "asgard.as_of": as_of.isoformat(),
                    "airflow.run_id": str(context.get("run_id", "")),
                },
            )
        except CatalogError as exc:
            raise InferenceError(f"writing monitoring stats to {self.monitoring_table} failed: {exc}") from exc
        feature_psi = {k: v for k, v in psi.items() if k != PREDICTION_COLUMN}
        drifted = sorted(k for k, v in feature_psi.items() if v is not None and v > self.drift_threshold)
        known = [v for v in feature_psi.values() if v is not None]
        prediction_row = rows[-1]
        result = {
            "table": written["table"],
            "snapshot_id": written["snapshot_id"],
            "reference_run_id": reference.get("run_id"),
            "psi": feature_psi,
            "max_feature_psi": max(known) if known else None,
            "drifted_features": drifted,
            "prediction": {
                "psi": psi.get(PREDICTION_COLUMN),
                "mean": prediction_row["mean"],
                "std": prediction_row["std"],
                "positive_rate": prediction_row["positive_rate"],
                "share_high": prediction_row["share_high"],
                "share_medium": prediction_row["share_medium"],
                "share_low": prediction_row["share_low"],
            },
        }
        for name in drifted:
            self.log.warning(
                "DRIFT: feature %s on %s has PSI %.3f > %.2f against the training set of %s version %s",
                name,
                as_of,
                feature_psi[name],
                self.drift_threshold,
                self.model_name,
                version,
            )
        prediction_psi = psi.get(PREDICTION_COLUMN)
        if prediction_psi is not None and prediction_psi > self.drift_threshold:
            self.log.warning(
                "DRIFT: predicted %s on %s has PSI %.3f > %.2f against the holdout predictions",
                PREDICTION_COLUMN,
                as_of,
                prediction_psi,
                self.drift_threshold,
            )
        self.log.info(
            "monitoring for %s written to %s (snapshot %s): prediction %s, feature PSI %s",
            as_of,
            written["table"],
            written["snapshot_id"],
            result["prediction"],
            {k: None if v is None else round(v, 4) for k, v in feature_psi.items()},
        )
        return result

    def _as_of_date(self) -> date:
        text = str(self.as_of).strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise InferenceError(f"as_of {self.as_of!r} is not a date (YYYY-MM-DD)") from None

    def _model_columns(self, model: Any, version: str) -> list[str]:
        """Feature columns in the order the model was fitted with; all must be among ``feature_refs``."""
        if not hasattr(model, "predict_proba"):
            raise InferenceError(f"{self.model_name} version {version} ({type(model).__name__}) has no predict_proba")
        available = [ref.split(":", 1)[-1] for ref in self.feature_refs]
        fitted = [str(c) for c in getattr(model, "feature_names_in_", [])]
        missing = [c for c in fitted if c not in available]
        if missing:
            raise InferenceError(
                f"{self.model_name} version {version} was trained on {', '.join(missing)}, which feature_refs "
                f"({', '.join(self.feature_refs)}) do not provide"
            )
        return fitted or available

    def _entities(self, iceberg: IcebergHook, as_of: date) -> tuple[Any, pa.DataType]:
        """One row per entity with its latest timestamp on ``as_of``, sorted by key; plus the key's Arrow type."""
        import pandas as pd
        import pyarrow.compute as pc

        try:
            data = (
                iceberg.load_table(self.entity_table)
                .scan(selected_fields=(self.entity_key, self.timestamp_field))
                .to_arrow()
            )
        except (CatalogError, ValueError) as exc:
            raise InferenceError(f"cannot read entities {self.entity_key!r} from {self.entity_table}: {exc}") from exc
        for column in (self.entity_key, self.timestamp_field):
            if column not in data.column_names:
                raise InferenceError(f"{self.entity_table} has no column {column!r}")
        days = pc.cast(data.column(self.timestamp_field), pa.date32())
        selected = data.filter(pc.equal(days, pa.scalar(as_of, pa.date32())))
        if selected.num_rows == 0:
            latest = pc.max(days).as_py() if data.num_rows else None
            raise InferenceError(
                f"{self.entity_table} has no rows with {self.timestamp_field} on {as_of} "
                f"(latest snapshot: {latest or 'none, the table is empty'})"
            )
        frame = selected.to_pandas()
        frame = frame.dropna(subset=[self.entity_key])
        frame = frame.groupby(self.entity_key, as_index=False)[self.timestamp_field].max()
        frame = frame.rename(columns={self.timestamp_field: EVENT_TIMESTAMP}).sort_values(self.entity_key)
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
        return frame.reset_index(drop=True), data.schema.field(self.entity_key).type

    def _score(
        self,
        feast: FeastHook,
        model: Any,
        columns: list[str],
        entities: Any,
        schema: pa.Schema,
        version: str,
        as_of: date,
        thresholds: tuple[float, float],
        stats: dict[str, RunningStats] | None = None,
        levels: dict[str, int] | None = None,
    ) -> Iterator[pa.Table]:
        """Yield scored batches; raise (aborting the write) unless every entity is scored exactly once."""
        import numpy as np

        classes = [int(c) for c in getattr(model, "classes_", [0, 1])]
        if 1 not in classes:
            raise InferenceError(f"{self.model_name} version {version} has no positive class 1 (classes: {classes})")
        positive = classes.index(1)
        scored_at = datetime.now(UTC)
        total = 0
        for start in range(0, len(entities), self.batch_size):
            chunk = entities.iloc[start : start + self.batch_size]
            try:
                features = feast.historical_features(chunk, self.feature_refs)
            except FeatureStoreError as exc:
                raise InferenceError(f"feature retrieval for {self.entity_table} as of {as_of} failed: {exc}") from exc
            features = features.drop_duplicates(subset=[self.entity_key])
            joined = chunk[[self.entity_key]].merge(features, on=self.entity_key, how="left", validate="one_to_one")
            try:
                probabilities = model.predict_proba(joined[columns].astype("float64"))[:, positive]
            except Exception as exc:
                raise InferenceError(f"{self.model_name} version {version} failed to score: {exc}") from exc
            n = len(joined)
            total += n
            levels_batch = risk_levels(probabilities.tolist(), *thresholds)
            predicted = (probabilities >= self.decision_threshold).astype(np.int32)
            if stats is not None:
                for column in columns:
                    stats[column].add(joined[column].astype("float64").to_numpy())
                stats[PREDICTION_COLUMN].add(probabilities)
            if levels is not None:
                for level in ("high", "medium", "low"):
                    levels[level] += levels_batch.count(level)
                levels["positive"] += int(predicted.sum())
            yield pa.Table.from_arrays(
                [
                    pa.array(joined[self.entity_key].to_numpy(), type=schema.field(self.entity_key).type),
                    pa.array(probabilities, type=pa.float64()),
                    pa.array(predicted, type=pa.int32()),
                    pa.array(levels_batch, type=pa.string()),
                    pa.array([self.model_name] * n, type=pa.string()),
                    pa.array([version] * n, type=pa.string()),
                    pa.array([scored_at] * n, type=pa.timestamp("us", tz="UTC")),
                    pa.array([as_of] * n, type=pa.date32()),
                ],
                schema=schema,
            )
        if total != len(entities):
            raise InferenceError(
                f"scored {total} rows for {len(entities)} entities of {self.entity_table}; nothing written"
            )
