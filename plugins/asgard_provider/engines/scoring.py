"""Batch scoring without Airflow: pick the rows to score, predict them in batches, write predictions and drift.

:func:`score` runs one :class:`ScoringSpec` against plain :class:`~asgard_provider.engines.stores.Stores`: it
resolves the model version, selects the entity rows (:func:`select_entities`), scores them batch by batch with
features from a point-in-time join of the feature views' Iceberg tables (:class:`BatchScorer`), replaces the
date's predictions in one Iceberg commit and the date's monitoring rows in another.
:class:`~asgard_provider.operators.inference.BatchInferenceOperator` and the task pod
(:mod:`asgard_provider.pod_entry`) both call it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa

from asgard_provider.engines import wap
from asgard_provider.engines.feature_batches import PointInTimeJoin, ViewSource, requested_views, view_sources
from asgard_provider.engines.iceberg_tables import WriteResult, load_table, write_batches
from asgard_provider.engines.mlflow_store import MLflowStore
from asgard_provider.engines.monitoring import (
    DRIFT_THRESHOLD,
    MonitoringOutcome,
    RunningStats,
    load_reference,
    log_drift,
    monitoring_report,
    monitoring_table,
    reference_profile,
)
from asgard_provider.engines.stores import FeastStore, Stores, open_catalog
from asgard_provider.evaluation import (
    BINARY,
    DECISION_THRESHOLD,
    DEFAULT_RISK_THRESHOLDS,
    MULTICLASS,
    REGRESSION,
    TASK_TYPES,
    check_model,
    risk_level,
    risk_thresholds,
)
from asgard_provider.exceptions import CatalogError, FeatureStoreError, InferenceError, ModelTaskError
from asgard_provider.training import EVENT_TIMESTAMP

Scope = Literal["latest", "new_events", "all"]
#: Which rows of the entity table a run scores (``predict.scope``).
SCOPES: tuple[str, ...] = get_args(Scope)

#: Column naming each entity-frame row, so features join back to the row they were fetched for.
ROW_ID = "__asgard_row"

#: Default name of the probability (binary) or value (regression) column when ``prediction_column`` is not set.
DEFAULT_VALUE_COLUMN = {BINARY: "probability", REGRESSION: "prediction"}

_UNSAFE = re.compile(r"[^0-9a-zA-Z_]+")
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionColumns:
    """How predictions are laid out in the output table, by task type.

    Binary: ``value_column`` (probability of class 1), ``class_column`` (0/1) and ``risk_level``. Multiclass:
    ``class_column`` (the predicted class) and one ``<probability_prefix><class>`` column per class.
    Regression: ``value_column`` (the predicted number). Every table ends with the model, time and date columns.
    """

    task: str = BINARY
    value_column: str | None = None
    class_column: str = "prediction"
    probability_prefix: str = "probability_"
    thresholds: tuple[float, float] = (0.7, 0.4)
    decision_threshold: float = DECISION_THRESHOLD

    @property
    def value(self) -> str:
        """The probability (binary) or value (regression) column."""
        return self.value_column or DEFAULT_VALUE_COLUMN.get(self.task, "prediction")

    def probability_column(self, label: Any) -> str:
        """Column of one class's probability (multiclass): the prefix plus the class label made safe."""
        return f"{self.probability_prefix}{_UNSAFE.sub('_', str(label)).strip('_').lower()}"

    def prediction_fields(self, classes: Sequence[Any] = ()) -> list[pa.Field]:
        """List the task's prediction columns (between the entity key and the model columns)."""
        if self.task == REGRESSION:
            return [pa.field(self.value, pa.float64())]
        if self.task == BINARY:
            return [
                pa.field(self.value, pa.float64()),
                pa.field(self.class_column, pa.int32()),
                pa.field("risk_level", pa.string()),
            ]
        return [
            pa.field(self.class_column, pa.string()),
            *(pa.field(self.probability_column(c), pa.float64()) for c in classes),
        ]

    def monitored(self, classes: Sequence[Any] = ()) -> dict[str, str]:
        """Map monitored prediction columns to their reference profile (``prediction`` or ``class:<label>``)."""
        if self.task == MULTICLASS:
            return {self.probability_column(c): f"class:{c}" for c in classes}
        return {self.value: "prediction"}

    def schema(
        self, keys: Sequence[tuple[str, pa.DataType]], classes: Sequence[Any] = (), timestamp: str | None = None
    ) -> pa.Schema:
        """Columns of the predictions table: keys, (the event timestamp), predictions, model, time and date."""
        stamp = [pa.field(timestamp, pa.timestamp("us", tz="UTC"))] if timestamp else []
        return pa.schema(
            [
                *(pa.field(name, kind) for name, kind in keys),
                *stamp,
                *self.prediction_fields(classes),
                pa.field("model_name", pa.string()),
                pa.field("model_version", pa.string()),
                pa.field("scored_at", pa.timestamp("us", tz="UTC")),
                pa.field("as_of_date", pa.date32()),
            ]
        )

    def problems(self) -> list[str]:
        """Column names that collide (with each other or the columns every predictions table has)."""
        names = [f.name for f in self.prediction_fields()]
        taken = {"model_name", "model_version", "scored_at", "as_of_date"}
        return [
            f"prediction column {n!r} is used twice or is reserved" for n in names if n in taken or names.count(n) > 1
        ]


@dataclass(frozen=True)
class Entities:
    """The rows a run scores: entity keys, ``event_timestamp`` and a row id; plus the keys' Arrow types."""

    frame: Any
    key_types: tuple[tuple[str, pa.DataType], ...]
    scope: str


def select_entities(
    table: Any,
    keys: Sequence[str],
    timestamp_field: str,
    scope: str,
    as_of: date,
    interval: tuple[datetime, datetime] | None = None,
    row_filter: str | None = None,
) -> Entities:
    """Pick the rows of ``table`` (a pyiceberg table) to score.

    ``latest``: each entity's latest row at or before the end of ``as_of`` (one score per entity);
    ``new_events``: every row whose timestamp is in ``interval`` = [start, end) (the run's new events);
    ``all``: every row of the table. Rows without a key or timestamp are left out, and so are rows outside
    ``row_filter`` (an Iceberg filter such as ``category = 'fresh'``), when given.
    """
    import pandas as pd
    import pyarrow.compute as pc

    if scope not in SCOPES:
        raise InferenceError(f"predict.scope {scope!r} is not one of {', '.join(SCOPES)}")
    try:
        rows = {"row_filter": row_filter} if row_filter else {}
        data = table.scan(selected_fields=(*keys, timestamp_field), **rows).to_arrow()
    except ValueError as exc:
        raise InferenceError(
            f"cannot read {', '.join(keys)} and {timestamp_field} from the entity table: {exc}"
        ) from exc
    missing = [c for c in (*keys, timestamp_field) if c not in data.column_names]
    if missing:
        raise InferenceError(f"the entity table has no column(s) {', '.join(missing)}")
    key_types = tuple((k, data.schema.field(k).type) for k in keys)
    frame = data.to_pandas().dropna(subset=[*keys, timestamp_field])
    stamps = pd.to_datetime(frame[timestamp_field], utc=True)
    if scope == "latest":
        end = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
        frame = frame[stamps < end]
        if frame.empty:
            latest = pc.max(data.column(timestamp_field)).as_py() if data.num_rows else None
            raise InferenceError(
                f"no rows with {timestamp_field} on or before {as_of} (latest: {latest or 'none, the table is empty'})"
            )
        frame = frame.groupby(list(keys), as_index=False)[timestamp_field].max()
    elif scope == "new_events":
        if interval is None:
            raise InferenceError("predict.scope new_events needs the run's data interval")
        start, stop = (
            pd.Timestamp(t).tz_convert(UTC) if pd.Timestamp(t).tzinfo else pd.Timestamp(t, tz=UTC) for t in interval
        )
        frame = frame[(stamps >= start) & (stamps < stop)]
    frame = frame.rename(columns={timestamp_field: EVENT_TIMESTAMP}).sort_values([*keys, EVENT_TIMESTAMP])
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    frame = frame.reset_index(drop=True)
    frame[ROW_ID] = np.arange(len(frame), dtype="int64")
    return Entities(frame, key_types, scope)


@dataclass
class ScoringTally:
    """What scoring saw, accumulated batch by batch: stats per feature and prediction column, class counts."""

    stats: dict[str, RunningStats]
    levels: dict[str, int] = field(default_factory=lambda: {"high": 0, "medium": 0, "low": 0, "positive": 0})
    rows: int = 0


@dataclass(frozen=True)
class ModelStamp:
    """Who scored and when: written on every prediction row."""

    model_name: str
    model_version: str
    as_of: date
    scored_at: datetime


class BatchScorer:
    """Score an :class:`Entities` frame with one model, batch by batch, into Arrow tables of :meth:`schema`.

    :param model: a fitted scikit-learn estimator that fits ``columns.task`` (checked here).
    :param fetch: features for a batch of entity rows (keys, ``event_timestamp``, row id) -> a frame holding
        the row id and the feature columns, e.g. a Feast point-in-time join.
    """

    def __init__(
        self,
        model: Any,
        columns: PredictionColumns,
        feature_columns: Sequence[str],
        fetch: Callable[[Any], Any],
        stamp: ModelStamp,
        *,
        keep_timestamp: str | None = None,
    ) -> None:
        try:
            check_model(model, columns.task)
        except ModelTaskError as exc:
            raise InferenceError(f"{stamp.model_name} version {stamp.model_version}: {exc}") from None
        self.model = model
        self.columns = columns
        self.feature_columns = list(feature_columns)
        self.fetch = fetch
        self.stamp = stamp
        self.keep_timestamp = keep_timestamp
        self.classes = tuple(getattr(model, "classes_", ())) if columns.task != REGRESSION else ()
        names = [f.name for f in columns.prediction_fields(self.classes)]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise InferenceError(
                f"{stamp.model_name} version {stamp.model_version}: classes {list(self.classes)} give the same "
                f"prediction column(s) {', '.join(clashes)}; change predict.probability_prefix or the labels"
            )

    def schema(self, entities: Entities) -> pa.Schema:
        """Columns of the predictions table for these entities."""
        return self.columns.schema(entities.key_types, self.classes, self.keep_timestamp)

    def tally(self, reference: Mapping[str, Any]) -> ScoringTally:
        """Empty stats binned like the reference profiles (``features`` and prediction profiles)."""
        features = reference.get("features", {})
        stats = {c: RunningStats(features.get(c, {}).get("edges", [])) for c in self.feature_columns}
        for column, ref_key in self.columns.monitored(self.classes).items():
            stats[column] = RunningStats(reference_profile(reference, ref_key).get("edges", []))
        return ScoringTally(stats)

    def batches(self, entities: Entities, batch_size: int, tally: ScoringTally) -> Iterator[pa.Table]:
        """Yield scored batches; raise (aborting the write) unless every row is scored exactly once."""
        if batch_size <= 0:
            raise InferenceError(f"batch_size must be positive, got {batch_size}")
        schema = self.schema(entities)
        frame = entities.frame
        for start in range(0, len(frame), batch_size):
            chunk = frame.iloc[start : start + batch_size]
            try:
                features = self.fetch(chunk)
            except FeatureStoreError as exc:
                raise InferenceError(f"feature retrieval failed: {exc}") from exc
            features = features.drop_duplicates(subset=[ROW_ID])[[ROW_ID, *self.feature_columns]]
            joined = chunk.merge(features, on=ROW_ID, how="left", validate="one_to_one")
            yield self._table(joined, schema, tally, [name for name, _ in entities.key_types])
        if tally.rows != len(frame):
            raise InferenceError(f"scored {tally.rows} rows for {len(frame)} entity rows; nothing written")

    def _table(self, joined: Any, schema: pa.Schema, tally: ScoringTally, keys: list[str]) -> pa.Table:
        data = joined[self.feature_columns].astype("float64")
        try:
            columns = self._predict(data, tally)
        except Exception as exc:
            raise InferenceError(
                f"{self.stamp.model_name} version {self.stamp.model_version} failed to score: {exc}"
            ) from exc
        for column in self.feature_columns:
            tally.stats[column].add(data[column].to_numpy())
        n = len(joined)
        tally.rows += n
        arrays = {name: joined[name].to_numpy() for name in keys}
        if self.keep_timestamp:
            arrays[self.keep_timestamp] = joined[EVENT_TIMESTAMP].to_numpy()
        arrays |= columns
        arrays |= {
            "model_name": [self.stamp.model_name] * n,
            "model_version": [self.stamp.model_version] * n,
            "scored_at": [self.stamp.scored_at] * n,
            "as_of_date": [self.stamp.as_of] * n,
        }
        return pa.Table.from_arrays([pa.array(arrays[f.name], type=f.type) for f in schema], schema=schema)

    def _predict(self, data: Any, tally: ScoringTally) -> dict[str, Any]:
        """Prediction columns of one batch; counts into ``tally``."""
        task, spec = self.columns.task, self.columns
        if task == REGRESSION:
            values = np.asarray(self.model.predict(data), dtype="float64")
            tally.stats[spec.value].add(values)
            return {spec.value: values}
        proba = np.asarray(self.model.predict_proba(data), dtype="float64")
        if task == BINARY:
            positive = proba[:, [float(c) for c in self.classes].index(1.0)]
            levels = [risk_level(p, *spec.thresholds) for p in positive.tolist()]
            predicted = (positive >= spec.decision_threshold).astype(np.int32)
            tally.stats[spec.value].add(positive)
            for level in ("high", "medium", "low"):
                tally.levels[level] += levels.count(level)
            tally.levels["positive"] += int(predicted.sum())
            return {spec.value: positive, spec.class_column: predicted, "risk_level": levels}
        out: dict[str, Any] = {
            spec.class_column: [str(c) for c in np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]]
        }
        for i, label in enumerate(self.classes):
            column = spec.probability_column(label)
            out[column] = proba[:, i]
            tally.stats[column].add(proba[:, i])
        return out


@dataclass(frozen=True)
class ScoringSpec:
    """One batch-inference run: the model, the rows ``scope`` selects, the output and monitoring tables.

    ``as_of`` is a date (``YYYY-MM-DD``, a longer ISO timestamp is cut), ``interval_start``/``interval_end`` the
    run's data interval (ISO timestamps; only ``new_events`` needs them). ``monitoring_table`` defaults to
    ``<output_table>_monitoring``; ``run_id`` is recorded on both tables' snapshots. ``feature_views`` describe
    the views ``feature_refs`` come from (:meth:`ViewSource.to_dict`; the factory passes the pipeline's), so
    Feast is not imported; without them the views are looked up in the Feast registry.
    """

    model_name: str
    feature_refs: Sequence[str]
    entity_table: str
    entity_keys: Sequence[str]
    timestamp_field: str
    output_table: str
    as_of: str
    scope: str = "latest"
    interval_start: str = ""
    interval_end: str = ""
    task: str = BINARY
    prediction_column: str | None = None
    class_column: str = "prediction"
    probability_prefix: str = "probability_"
    model_alias: str = "champion"
    model_version: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RISK_THRESHOLDS))
    decision_threshold: float = DECISION_THRESHOLD
    batch_size: int = 50_000
    monitoring_table: str | None = None
    monitor: bool = True
    drift_threshold: float = DRIFT_THRESHOLD
    task_id: str = "batch_inference"
    run_id: str = ""
    #: Iceberg filter on the entity rows (``category = 'fresh'``: the rows of one partition's model).
    row_filter: str | None = None
    feature_views: Sequence[Mapping[str, Any]] = ()

    def columns(self) -> PredictionColumns:
        """Return the prediction columns (checks task and scope)."""
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

    def as_of_date(self) -> date:
        """``as_of`` as a date."""
        text = str(self.as_of).strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise InferenceError(f"as_of {self.as_of!r} is not a date (YYYY-MM-DD)") from None

    def interval(self) -> tuple[datetime, datetime] | None:
        """Return the data interval, or ``None`` when it is not given (refused for ``new_events``)."""
        try:
            return datetime.fromisoformat(str(self.interval_start)), datetime.fromisoformat(str(self.interval_end))
        except ValueError:
            if self.scope == "new_events":
                raise InferenceError(
                    f"scope new_events needs the data interval; got {self.interval_start!r} .. {self.interval_end!r}"
                ) from None
            return None

    @property
    def monitoring(self) -> str:
        """The monitoring table's name."""
        return self.monitoring_table or monitoring_table(self.output_table)


@dataclass(frozen=True)
class ScoringOutcome:
    """A finished batch inference: rows written, the model version used, the snapshot and the monitoring."""

    table: str
    rows_written: int
    snapshot_id: int | None
    model_name: str
    model_version: str
    as_of: date
    scope: str
    tracking_uri: str
    monitoring: MonitoringOutcome | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the task's result (XCom)."""
        return {
            "rows": self.rows_written,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "as_of_date": self.as_of.isoformat(),
            "scope": self.scope,
            "monitoring": self.monitoring.as_dict() if self.monitoring else {},
        }

    def event_extra(self) -> dict[str, Any]:
        """Return the predictions table's asset-event extra."""
        return {
            "snapshot_id": self.snapshot_id,
            "rows_written": self.rows_written,
            "as_of_date": self.as_of.isoformat(),
            "model_version": self.model_version,
            **(self.monitoring.event_extra() if self.monitoring else {}),
        }


def score(spec: ScoringSpec, stores: Stores, log: logging.Logger = _LOG) -> ScoringOutcome:
    """Score the rows ``spec.scope`` selects, replace the ``as_of`` date's predictions and monitoring rows."""
    as_of, columns = spec.as_of_date(), spec.columns()
    if spec.batch_size <= 0:
        raise InferenceError(f"batch_size must be positive, got {spec.batch_size}")
    if not spec.feature_refs:
        raise InferenceError(f"no feature_refs given to score {spec.model_name!r}")
    mlflow = MLflowStore(stores.mlflow)
    version = mlflow.version_for(
        spec.model_name, alias=None if spec.model_version else spec.model_alias, version=spec.model_version
    )
    model = mlflow.load_sklearn_model(spec.model_name, version)
    catalog = open_catalog(stores.catalog)
    entities = _entities(spec, catalog, as_of, log)
    views = _views(spec, stores)
    with ExitStack() as stack:
        try:
            features = stack.enter_context(PointInTimeJoin(catalog, views, ROW_ID, EVENT_TIMESTAMP))
        except FeatureStoreError as exc:
            raise InferenceError(f"feature views of {spec.task_id}: {exc}") from exc
        scorer = BatchScorer(
            model,
            columns,
            model_columns(model, spec.feature_refs, f"{spec.model_name} version {version}"),
            features.fetch,
            ModelStamp(spec.model_name, str(version), as_of, datetime.now(UTC)),
            keep_timestamp=None if spec.scope == "latest" else spec.timestamp_field,
        )
        return _score_with(spec, catalog, mlflow, scorer, entities, log)


def _views(spec: ScoringSpec, stores: Stores) -> list[ViewSource]:
    """Return the views ``spec.feature_refs`` come from: as described (no Feast import), else from the registry."""
    try:
        if spec.feature_views:
            return requested_views(map(ViewSource.from_dict, spec.feature_views), spec.feature_refs)
        return view_sources(FeastStore(stores.feast, stores.catalog).store, spec.feature_refs)
    except FeatureStoreError as exc:
        raise InferenceError(f"feature views of {spec.task_id}: {exc}") from exc


def _score_with(
    spec: ScoringSpec, catalog: Any, mlflow: MLflowStore, scorer: BatchScorer, entities: Entities, log: logging.Logger
) -> ScoringOutcome:
    """Score ``entities`` batch by batch, write the predictions and monitoring rows on the run's branch, publish."""
    as_of, version = scorer.stamp.as_of, scorer.stamp.model_version
    log.info(
        "scoring %d rows (scope %s) of %s as of %s with %s version %s",
        len(entities.frame),
        spec.scope,
        spec.entity_table,
        as_of,
        spec.model_name,
        version,
    )
    reference = load_reference(mlflow, spec.model_name, version, log) if spec.monitor else {}
    tally = scorer.tally(reference)
    properties = {"asgard.model": f"{spec.model_name}/{version}", "asgard.as_of": as_of.isoformat()}
    properties["airflow.run_id"] = spec.run_id
    try:
        written = write_batches(
            catalog,
            spec.output_table,
            scorer.batches(entities, spec.batch_size, tally),
            mode="overwrite",
            overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
            partition_by=["as_of_date"],
            schema=scorer.schema(entities),
            snapshot_properties=properties,
            run_id=spec.run_id,
        )
    except CatalogError as exc:
        raise InferenceError(f"writing predictions to {spec.output_table} failed: {exc}") from exc
    rows, table, snapshot = written.rows_written, written.table, written.snapshot_id
    log.info("wrote %s predictions for %s to %s (snapshot %s)", rows, as_of, table, snapshot)
    monitoring = _monitor(spec, catalog, scorer, tally, reference, properties, log) if spec.monitor else None
    written, monitoring = _publish(catalog, spec.run_id, written, monitoring)
    return ScoringOutcome(
        table=written.table,
        rows_written=written.rows_written,
        snapshot_id=written.snapshot_id,
        model_name=spec.model_name,
        model_version=str(version),
        as_of=as_of,
        scope=spec.scope,
        tracking_uri=mlflow.tracking_uri(),
        monitoring=monitoring,
    )


def model_columns(model: Any, feature_refs: Sequence[str], what: str) -> list[str]:
    """Feature columns in the order the model was fitted with; all must be among ``feature_refs``."""
    available = [ref.split(":", 1)[-1] for ref in feature_refs]
    fitted = [str(c) for c in getattr(model, "feature_names_in_", [])]
    missing = [c for c in fitted if c not in available]
    if missing:
        raise InferenceError(
            f"{what} was trained on {', '.join(missing)}, which feature_refs ({', '.join(feature_refs)}) do not provide"
        )
    return fitted or available


def _entities(spec: ScoringSpec, catalog: Any, as_of: date, log: logging.Logger) -> Entities:
    """Select the rows ``scope`` picks, sorted by key and timestamp."""
    try:
        table = load_table(catalog, spec.entity_table)
    except CatalogError as exc:
        raise InferenceError(f"cannot read entities from {spec.entity_table}: {exc}") from exc
    try:
        entities = select_entities(
            table, spec.entity_keys, spec.timestamp_field, spec.scope, as_of, spec.interval(), spec.row_filter
        )
    except InferenceError as exc:
        raise InferenceError(f"{spec.entity_table}: {exc}") from None
    if entities.frame.empty:
        log.warning("%s: scope %s selects no rows for %s", spec.entity_table, spec.scope, as_of)
    return entities


def _monitor(
    spec: ScoringSpec,
    catalog: Any,
    scorer: BatchScorer,
    tally: ScoringTally,
    reference: Mapping[str, Any],
    properties: dict[str, str],
    log: logging.Logger,
) -> MonitoringOutcome:
    """Write this date's monitoring rows (replacing earlier ones) and return them with the summary."""
    as_of, model = scorer.stamp.as_of, (spec.model_name, scorer.stamp.model_version)
    report = monitoring_report(
        tally.stats,
        scorer.columns.monitored(scorer.classes),
        tally.levels if spec.task == BINARY else None,
        reference,
        as_of=as_of,
        model=model,
        computed_at=datetime.now(UTC),
        drift_threshold=spec.drift_threshold,
    )
    try:
        written = write_batches(
            catalog,
            spec.monitoring,
            [report.table()],
            mode="overwrite",
            overwrite_filter=f"as_of_date == '{as_of.isoformat()}'",
            partition_by=["as_of_date"],
            schema=report.table().schema,
            snapshot_properties=properties,
            run_id=spec.run_id,
        )
    except CatalogError as exc:
        raise InferenceError(f"writing monitoring stats to {spec.monitoring} failed: {exc}") from exc
    log_drift(report, as_of, model, spec.drift_threshold, log)
    log.info(
        "monitoring for %s written to %s (snapshot %s): prediction %s, feature PSI %s",
        as_of,
        written.table,
        written.snapshot_id,
        report.prediction,
        {k: None if v is None else round(v, 4) for k, v in report.feature_psi.items()},
    )
    return MonitoringOutcome(written.table, written.snapshot_id, len(tally.stats), report)


def _publish(
    catalog: Any, run_id: str, written: WriteResult, monitoring: MonitoringOutcome | None
) -> tuple[WriteResult, MonitoringOutcome | None]:
    """Publish the run's branch of the predictions and monitoring tables; return them with main's snapshots.

    Both were written on the run's branch (write-audit-publish); main of each moves only now, after every row
    was scored exactly once and both writes committed. Without a run id they were written to main.
    """
    tables = [written.table, *([monitoring.table] if monitoring is not None else [])]
    moved = wap.publish_run(catalog, tables, run_id)
    if written.table in moved:
        written = dataclasses.replace(written, snapshot_id=moved[written.table].snapshot_id)
    if monitoring is not None and monitoring.table in moved:
        monitoring = dataclasses.replace(monitoring, snapshot_id=moved[monitoring.table].snapshot_id)
    return written, monitoring
