"""What a training script receives from :class:`~asgard_provider.operators.mlflow.MLflowTrainOperator`.

A training script is normal scikit-learn + MLflow code. The operator starts the MLflow run and points the
script at it (``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``), so ``with mlflow.start_run():`` logs into that
run. The rest comes from a JSON file named by ``ASGARD_TRAINING_CONTEXT``::

    ctx = TrainingContext.from_env()
    frame = ctx.training_frame()          # entity key, event_timestamp, features..., label
    train, holdout = ctx.split(frame)     # deterministic: an entity is always on the same side
    with mlflow.start_run():
        ...fit on train[ctx.feature_columns], train[ctx.label_column]...
        ctx.log_datasets(train, holdout)  # the holdout the operator compares models on + drift reference
        mlflow.sklearn.log_model(model, name=ctx.model_artifact_path)

The script must not register the model: the operator registers it after checking the metric gates, so a
failing script registers nothing. The full contract is in docs/ml.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgard_provider.exceptions import FeatureStoreError, TrainingError

if TYPE_CHECKING:
    from asgard_provider.engines.feature_batches import ViewSource

#: Environment variable naming the context file.
CONTEXT_ENV = "ASGARD_TRAINING_CONTEXT"

#: Name of the timestamp column of the entity frame handed to Feast.
EVENT_TIMESTAMP = "event_timestamp"

#: Run artifact holding the holdout rows (keys, timestamp, features, label) the operator evaluates models on.
HOLDOUT_ARTIFACT = "asgard/holdout.parquet"

#: Run artifact holding the training-set profile of every feature (drift reference for batch inference).
PROFILE_ARTIFACT = "asgard/reference_profile.json"

#: Default share of entities held out by :meth:`TrainingContext.split`.
HOLDOUT_FRACTION = 0.2

#: Row id column the point-in-time join matches entity rows by (dropped from the training frame).
_ROW_ID = "__asgard_row"


@dataclass(frozen=True)
class TrainingContext:
    """Everything a training script needs to build its training set and log its model."""

    feast_repo_path: str
    features: list[str]
    label_table: str
    label_column: str
    entity_key: str
    timestamp_field: str
    catalog: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    model_artifact_path: str = "model"
    registered_model_name: str = ""
    experiment_name: str = ""
    #: Iceberg snapshot of ``label_table`` read for the labels (pinned by the operator; ``None``: current).
    label_snapshot_id: int | None = None
    #: Every key column of the entity (``[entity_key]`` unless the key is composite, e.g. store and SKU).
    entity_keys: list[str] = field(default_factory=list)
    #: ML task type of the pipeline (``train.task``): what the logged model must be able to predict.
    task: str = "binary_classification"
    #: Iceberg row filter on the label table (e.g. ``category = 'fresh'``: one model per partition value).
    row_filter: str | None = None
    #: Iceberg tag the run trains on (``train.as_of_tag``; ``None``: the tables as they are).
    as_of_tag: str | None = None
    #: Feature view -> Iceberg snapshot id of its source table read for the features (empty: current data).
    feature_snapshots: dict[str, int] = field(default_factory=dict)
    #: Every feature view the features come from, as :meth:`ViewSource.to_dict
    #: <asgard_provider.engines.feature_batches.ViewSource.to_dict>` describes it (table, keys, timestamp, TTL).
    views: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> TrainingContext:
        """Read the context file named by ``$ASGARD_TRAINING_CONTEXT``."""
        path = os.environ.get(CONTEXT_ENV)
        if not path:
            raise TrainingError(f"{CONTEXT_ENV} is not set: run training scripts through MLflowTrainOperator")
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingContext:
        """Read a context file written by :meth:`write`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise TrainingError(f"invalid training context file {path}: {exc}") from exc

    def write(self, path: str | Path) -> Path:
        """Write the context as JSON (done by the operator)."""
        target = Path(path)
        target.write_text(json.dumps(asdict(self), indent=2, default=str))
        return target

    @property
    def keys(self) -> list[str]:
        """The entity's key columns (``entity_keys``, or ``[entity_key]``)."""
        return list(self.entity_keys) or [self.entity_key]

    @property
    def feature_columns(self) -> list[str]:
        """Feature column names in the training frame (``view:feature`` refs without the view)."""
        return [ref.split(":", 1)[-1] for ref in self.features]

    def feature_store(self) -> Any:
        """Open the ``feast.FeatureStore`` the pipeline registered the features in."""
        from feast import FeatureStore

        return FeatureStore(repo_path=self.feast_repo_path)

    def entity_df(self) -> Any:
        """Labelled rows of the label table: entity key(s), ``event_timestamp`` (= the timestamp field), label.

        Rows whose label is NULL (e.g. the latest snapshot, whose future is unknown) are left out.
        """
        import pandas as pd

        try:
            table = self._table(self.label_table)
            data = table.scan(
                row_filter=f"{self.label_column} IS NOT NULL"
                + (f" AND ({self.row_filter})" if self.row_filter else ""),
                selected_fields=(*self.keys, self.timestamp_field, self.label_column),
                snapshot_id=self.label_snapshot_id,
            ).to_pandas()
        except Exception as exc:
            raise TrainingError(f"cannot read labels {self.label_column!r} from {self.label_table}: {exc}") from exc
        frame = data.rename(columns={self.timestamp_field: EVENT_TIMESTAMP})
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
        return frame[[*self.keys, EVENT_TIMESTAMP, self.label_column]]

    def training_frame(self) -> Any:
        """:meth:`entity_df` joined point-in-time with the features, sorted by timestamp and entity key.

        Each row gets each view's latest values at or before its ``event_timestamp`` and within the view's TTL
        (else nulls), as Feast's ``get_historical_features`` gives them, from a bounded DuckDB join
        (:class:`~asgard_provider.engines.feature_batches.PointInTimeJoin`) that reads only the needed columns of
        each view's Iceberg table (at its pinned snapshot under ``as_of_tag``). Feast is not imported.
        """
        from asgard_provider.engines.feature_batches import PointInTimeJoin

        entities = self.entity_df()
        if entities.empty:
            raise TrainingError(f"{self.label_table} has no rows with a non-null {self.label_column!r}")
        views = self._view_sources()
        unpinned = [view.name for view in views if view.name not in self.feature_snapshots]
        if self.feature_snapshots and unpinned:
            raise TrainingError(
                f"feature view(s) {', '.join(unpinned)} have no pinned snapshot (as_of_tag {self.as_of_tag})"
            )
        rows = entities.assign(**{_ROW_ID: range(len(entities))})
        try:
            with PointInTimeJoin(self._catalog(), views, _ROW_ID, EVENT_TIMESTAMP, self.feature_snapshots) as join:
                features = join.fetch_arrow(rows).to_pandas()
        except Exception as exc:
            read = ", ".join(f"{view.name} ({view.table})" for view in views)
            raise TrainingError(f"point-in-time join of feature view(s) {read} failed: {exc}") from exc
        frame = rows.merge(features, on=_ROW_ID, how="left", validate="one_to_one").drop(columns=_ROW_ID)
        return frame.sort_values([EVENT_TIMESTAMP, *self.keys], ignore_index=True)

    def _view_sources(self) -> list[ViewSource]:
        """Return each view's :class:`~asgard_provider.engines.feature_batches.ViewSource`, with the requested features.

        They come from :attr:`views`; a context without them (written by hand) resolves them in the Feast registry.
        """
        from asgard_provider.engines.feature_batches import ViewSource, requested_views, view_sources

        try:
            if not self.views:
                return view_sources(self.feature_store(), self.features)
            return requested_views(map(ViewSource.from_dict, self.views), self.features)
        except FeatureStoreError as exc:
            raise TrainingError(f"feature views of {self.features}: {exc}") from exc

    def _catalog(self) -> Any:
        """Open the pipeline's Iceberg catalog."""
        from pyiceberg.catalog import load_catalog

        from asgard_provider.catalog import CATALOG_NAME, CatalogSettings

        settings = CatalogSettings.from_dict(self.catalog)
        return load_catalog(CATALOG_NAME, **settings.pyiceberg_properties())

    def _table(self, name: str) -> Any:
        """Load Iceberg table ``name`` through the pipeline's catalog."""
        from asgard_provider.catalog import split_table_name

        return self._catalog().load_table(split_table_name(name))

    def check_model(self, model: Any) -> None:
        """Raise :class:`~asgard_provider.exceptions.ModelTaskError` unless ``model`` fits :attr:`task`.

        The operator checks the logged model the same way before registering it; calling this before
        ``log_model`` fails the script sooner, with the same error naming ``train.task``.
        """
        from asgard_provider.evaluation import check_model

        check_model(model, self.task)

    def split(self, frame: Any, holdout_fraction: float = HOLDOUT_FRACTION, salt: str = "asgard") -> tuple[Any, Any]:
        """Split ``frame`` into (train, holdout) by a hash of the entity key (all its columns, ``|``-joined).

        An entity lands in the holdout when ``sha256(salt:key)`` falls in the lowest ``holdout_fraction`` of
        the hash range, whatever else is in the frame: every snapshot of one entity is on the same side,
        and an entity held out today was held out (never trained on) by earlier runs too, so the current
        champion can be evaluated fairly on a new run's holdout.
        """
        if not 0 < holdout_fraction < 1:
            raise TrainingError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
        cutoff = int(holdout_fraction * 2**64)
        keys = (
            frame[self.keys].astype(str).agg("|".join, axis=1)
            if len(self.keys) > 1
            else frame[self.keys[0]].astype(str)
        )
        held = keys.map(
            lambda key: int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") < cutoff
        ).astype(bool)
        return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)

    def log_sklearn_model(
        self,
        model: Any,
        inputs: Any = None,
        outputs: Any = None,
        *,
        trusted_types: Sequence[str] = (),
        predict_fn: str | None = None,
    ) -> None:
        """Log a scikit-learn ``model`` at :attr:`model_artifact_path` of the active MLflow run.

        The signature is inferred from ``inputs`` and ``outputs`` when given. skops (MLflow's safe format) loads
        only the ``trusted_types`` it does not know (a tree model's node storage). Requirements are the flavor's
        own, pinned: inferring them reloads the model in a subprocess and no input example is logged, since
        validating one reloads it too (each cost more than the training on the demo data). ``predict_fn``
        names the method MLflow's model server calls (``predict_proba`` for class probabilities).
        """
        import mlflow
        import mlflow.sklearn

        if mlflow.active_run() is None:
            raise TrainingError("log_sklearn_model must be called inside `with mlflow.start_run():`")
        options: dict[str, Any] = {"pyfunc_predict_fn": predict_fn} if predict_fn else {}
        if inputs is not None:
            from mlflow.models import infer_signature

            options["signature"] = infer_signature(inputs, outputs)
        mlflow.sklearn.log_model(
            model,
            name=self.model_artifact_path,
            skops_trusted_types=list(trusted_types) or None,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
            **options,
        )

    def log_datasets(self, train: Any, holdout: Any) -> None:
        """Log the holdout rows and the training-set feature profile into the active MLflow run.

        The operator scores the new model and the current champion on this holdout before promoting, and
        batch inference compares the features it scores with the profile (PSI per feature).
        """
        import mlflow

        from asgard_provider.engines.monitoring import frame_profile

        if mlflow.active_run() is None:
            raise TrainingError("log_datasets must be called inside `with mlflow.start_run():`")
        columns = [*self.keys, EVENT_TIMESTAMP, *self.feature_columns, self.label_column]
        missing = [c for c in columns if c not in holdout.columns]
        if missing:
            raise TrainingError(f"the holdout frame has no column(s) {', '.join(missing)}")
        if holdout.empty:
            raise TrainingError("the holdout is empty: too few entities to evaluate the model")
        reference = {
            "label_table": self.label_table,
            "label_snapshot_id": self.label_snapshot_id,
            "train_rows": len(train),
            "features": frame_profile(train, self.feature_columns),
        }
        folder, name = HOLDOUT_ARTIFACT.rsplit("/", 1)
        with tempfile.TemporaryDirectory(prefix="asgard-datasets-") as tmp:
            holdout_path = Path(tmp) / name
            holdout[columns].to_parquet(holdout_path, index=False)
            profile_path = Path(tmp) / PROFILE_ARTIFACT.rsplit("/", 1)[1]
            profile_path.write_text(json.dumps(reference, indent=1))
            mlflow.log_artifact(str(holdout_path), folder)
            mlflow.log_artifact(str(profile_path), PROFILE_ARTIFACT.rsplit("/", 1)[0])
        mlflow.log_params({"holdout_rows": len(holdout), "holdout_entities": len(holdout[self.keys].drop_duplicates())})
