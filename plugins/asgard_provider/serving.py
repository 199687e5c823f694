"""Score one entity online: features from the Feast online store, prediction from the registered model.

:class:`OnlineScorer` loads ``models:/<model>@champion`` and opens the feature store once; each
:meth:`OnlineScorer.score` call is then one online-store read (SQLite embedded, Redis in production, as
configured by the ``asgard_feast_default`` connection) plus one prediction on that row, as the pipeline's
``train.task`` says (a probability and risk level, a class and its probabilities, or a number). The online
store holds what ``FeastMaterializeOperator`` materialized (``features.materialize: true``).

Command line (``asgard score`` and ``asgard serve`` are the same commands); ``--key`` names the entity by its
join key(s), ``col=value``; a composite key takes one ``--key`` per column (or ``,`` between them), and a column
given again starts the next entity::

    python -m asgard_provider.serving score --pipeline my_pipeline --key account_id=1001
    python -m asgard_provider.serving score --pipeline my_pipeline --key store_id=1 --key sku_id=7
    python -m asgard_provider.serving serve --pipeline my_pipeline --port 8090   # the Asgard HTTP API on uvicorn
    python -m asgard_provider.serving features --model my_model --key account_id=1001 --format mlflow

See docs/ml.md ("Online scoring").
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asgard_provider.evaluation import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    TASK_TYPES,
    check_model,
    risk_level,
    risk_thresholds,
)
from asgard_provider.exceptions import (
    AsgardError,
    EntityNotFoundError,
    InferenceError,
    InvalidEntityIdError,
    InvalidFeaturesError,
    ModelNotFoundError,
    ModelTaskError,
)

#: Port of ``serve`` unless ``--port`` is given.
DEFAULT_PORT = 8090

#: Run tag (written by MLflowTrainOperator) listing the Feast feature refs a model was trained on.
FEATURES_TAG = "asgard.features"

#: Feast online store types whose client is thread-safe (a connection pool): reads need no lock.
THREAD_SAFE_STORES = ("redis",)

#: Bounds of the integer Feast value types: an id outside them is invalid input, not a store error.
_INTEGER_BOUNDS = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one feature row, as its task type gives it.

    ``value``: the probability of class 1 (binary) or the predicted number (regression); ``None`` for
    multiclass. ``prediction``: the 0/1 decision, the predicted class, or the number again. ``risk_level``
    (binary only) and ``probabilities`` (per class, classification only).
    """

    value: float | None
    prediction: int | str | float
    risk_level: str | None = None
    probabilities: dict[str, float] | None = None


@dataclass(frozen=True)
class Score:
    """One online prediction; ``prediction_column`` names ``value`` as the pipeline's predictions table does.

    ``keys`` is ``{join key: value}`` of every key column; ``entity_key``/``entity_id`` are the key's name and
    value, for a composite key the names and values joined by ``,`` (``store_id,sku_id`` and ``1,7``).
    """

    entity_key: str
    entity_id: Any
    prediction_column: str
    value: float | None
    prediction: int | str | float
    risk_level: str | None
    probabilities: dict[str, float] | None
    model_name: str
    model_version: str
    #: Latest event timestamp of the features used (ISO 8601, UTC): how fresh the online row is.
    feature_timestamp: str | None
    features: dict[str, float | None]
    scored_at: str
    keys: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"<join key>": 1001, "<prediction_column>": 0.83, "prediction": 1, ...}``."""
        data = asdict(self)
        keys, column, value = (data.pop(k) for k in ("keys", "prediction_column", "value"))
        del data["entity_key"], data["entity_id"]
        return {**keys, **({column: value} if value is not None else {}), **data}


class ModelScorer:
    """One registered model version, loaded once, scoring feature rows given by the caller.

    :param model_name: registered MLflow model.
    :param model_alias: alias to load (``champion``); ignored when ``model_version`` is given.
    :param task: the pipeline's ``train.task``; the model must fit it.
    :param prediction_column: name of the probability (binary) or value (regression) in answers.
    :param thresholds: ``{"high": 0.7, "medium": 0.4}`` risk level cut-offs (binary).
    :param decision_threshold: probability at or above which ``prediction`` is 1 (binary).
    """

    def __init__(
        self,
        model_name: str,
        *,
        model_alias: str = "champion",
        model_version: str | None = None,
        task: str = BINARY,
        prediction_column: str | None = None,
        thresholds: dict[str, float] | None = None,
        decision_threshold: float = 0.5,
        mlflow_conn_id: str | None = None,
    ) -> None:
        from asgard_provider.engines.onnx_forest import forest_session
        from asgard_provider.engines.scoring import DEFAULT_VALUE_COLUMN
        from asgard_provider.hooks.mlflow import MLflowHook

        self.high, self.medium = risk_thresholds(thresholds)
        self.decision_threshold = decision_threshold
        self.model_name = model_name
        self.task = task
        self.prediction_column = prediction_column or DEFAULT_VALUE_COLUMN.get(task, "prediction")
        self.mlflow = MLflowHook(mlflow_conn_id) if mlflow_conn_id else MLflowHook()
        self.model_version = resolve_version(self.mlflow, model_name, model_alias, model_version)
        self.model = self.mlflow.load_sklearn_model(model_name, self.model_version)
        try:
            check_model(self.model, task)
        except ModelTaskError as exc:
            raise InferenceError(f"{model_name} version {self.model_version}: {exc}") from None
        if getattr(self.model, "n_jobs", None) not in (None, 1):
            # A thread pool per one-row prediction costs more than the prediction itself.
            self.model.n_jobs = 1
        self.classes = list(getattr(self.model, "classes_", [])) if task != REGRESSION else []
        self._positive = [float(c) for c in self.classes].index(1.0) if task == BINARY else 0
        self._onnx = forest_session(self.model) if task != REGRESSION else None
        fitted = [str(c) for c in getattr(self.model, "feature_names_in_", [])]
        self.columns = fitted or [ref.split(":", 1)[-1] for ref in self._trained_refs()]

    def _trained_refs(self) -> list[str]:
        run_id = self.mlflow.version_run_id(self.model_name, self.model_version)
        tag = None
        if run_id is not None:
            try:
                tag = self.mlflow.client().get_run(run_id).data.tags.get(FEATURES_TAG)
            except Exception as exc:
                raise InferenceError(f"cannot read run {run_id} of {self.model_name}: {exc}") from exc
        if not tag:
            raise InferenceError(
                f"{self.model_name} version {self.model_version} has no {FEATURES_TAG} run tag (it was not trained by "
                "MLflowTrainOperator): pass the Feast feature refs (feature_refs / --pipeline)"
            )
        return [ref for ref in str(tag).split(",") if ref]

    def row(self, values: dict[str, Any]) -> dict[str, float | None]:
        """Check a caller's feature row against the model's columns; return it as floats in column order."""
        missing = [c for c in self.columns if c not in values]
        unknown = sorted(set(values) - set(self.columns))
        if missing or unknown:
            parts = [
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            ]
            raise InvalidFeaturesError(
                f"{self.model_name} version {self.model_version} takes {', '.join(self.columns)}: "
                + "; ".join(p for p in parts if p)
            )
        row: dict[str, float | None] = {}
        for column in self.columns:
            value = values[column]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidFeaturesError(f"feature {column} must be a number or null, got {value!r}")
            row[column] = None if value is None else float(value)
        return row

    def probability(self, values: dict[str, float | None]) -> float:
        """Probability of class 1 of one feature row (``{column: value}``; ``None`` is a missing value)."""
        return float(self._proba(values)[self._positive])

    def _proba(self, values: dict[str, float | None]) -> Any:
        """Class probabilities of one feature row, as ``model.predict_proba`` gives them (to 1e-6).

        A random forest's row without missing values is scored by ONNX Runtime
        (:mod:`~asgard_provider.engines.onnx_forest`): scikit-learn's per-tree job dispatch costs about 500 times
        the prediction of a single row. A missing value takes scikit-learn's path (NaN routed as it was fitted).
        """
        import numpy as np

        if self._onnx is not None:
            row = np.array([[np.nan if values[c] is None else values[c] for c in self.columns]], dtype="float64")
            if not np.isnan(row).any():
                return self._onnx.predict_proba(row)[0]
        return self.model.predict_proba(self._frame(values))[0]

    def _frame(self, values: dict[str, float | None]) -> Any:
        import numpy as np
        import pandas as pd

        row = np.array([[np.nan if values[c] is None else values[c] for c in self.columns]], dtype="float64")
        return pd.DataFrame(row, columns=self.columns)

    def predict(self, values: dict[str, float | None]) -> Prediction:
        """Answer for one feature row as the task gives it: probability, decision and risk; class; or number."""
        if self.task == REGRESSION:
            number = float(self.model.predict(self._frame(values))[0])
            return Prediction(value=number, prediction=number)
        if self.task == MULTICLASS:
            proba = self._proba(values)
            by_class = {str(c): float(p) for c, p in zip(self.classes, proba, strict=True)}
            return Prediction(value=None, prediction=max(by_class, key=by_class.__getitem__), probabilities=by_class)
        probability = self.probability(values)
        return Prediction(
            value=probability,
            prediction=int(probability >= self.decision_threshold),
            risk_level=risk_level(probability, self.high, self.medium),
            probabilities=None,
        )


def resolve_version(mlflow: Any, name: str, alias: str | None, version: str | None) -> str:
    """Version number of ``name`` at ``version`` or ``@alias``; :class:`ModelNotFoundError` if the registry has none."""
    try:
        return mlflow.version_for(name, alias=None if version else alias, version=version)
    except InferenceError as exc:
        code = getattr(exc.__cause__, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise ModelNotFoundError(str(exc)) from exc.__cause__
        raise


class OnlineScorer(ModelScorer):
    """Serve predictions for single entities from online features.

    :param model_name: registered MLflow model.
    :param model_alias: alias to load (``champion``); ignored when ``model_version`` is given.
    :param feature_refs: Feast refs (``view:feature``) to read; default: the ``asgard.features`` tag of the
        run that produced the model version, i.e. exactly what it was trained on.
    :param thresholds: ``{"high": 0.7, "medium": 0.4}`` risk level cut-offs.
    :param decision_threshold: probability at or above which ``prediction`` is 1.
    """

    def __init__(
        self,
        model_name: str,
        *,
        model_alias: str = "champion",
        model_version: str | None = None,
        feature_refs: Sequence[str] | None = None,
        task: str = BINARY,
        prediction_column: str | None = None,
        thresholds: dict[str, float] | None = None,
        decision_threshold: float = 0.5,
        mlflow_conn_id: str | None = None,
        feast_conn_id: str | None = None,
    ) -> None:
        import contextlib
        import threading

        from asgard_provider.hooks.feast import FeastHook

        super().__init__(
            model_name,
            model_alias=model_alias,
            model_version=model_version,
            task=task,
            prediction_column=prediction_column,
            thresholds=thresholds,
            decision_threshold=decision_threshold,
            mlflow_conn_id=mlflow_conn_id,
        )
        refs = list(feature_refs) if feature_refs else self._trained_refs()
        self.columns, self.feature_refs = self._model_columns(refs)
        feast = FeastHook(feast_conn_id) if feast_conn_id else FeastHook()
        self.store = feast.get_store()
        self.project = feast.project
        self._key_types = self._join_keys()
        self.entity_keys = list(self._key_types)
        #: The join key's name; a composite key's names joined by ``,``.
        self.entity_key = ",".join(self.entity_keys)
        # The SQLite online store shares one connection between threads: one read at a time (well under 1 ms).
        # Redis's client is a thread-safe pool: a lock held over its network round trips would queue a worker's
        # concurrent requests behind each other.
        safe = str(getattr(self.store.config.online_store, "type", "")).lower() in THREAD_SAFE_STORES
        self._read_lock: Any = contextlib.nullcontext() if safe else threading.Lock()

    @classmethod
    def from_pipeline(cls, pipeline: str, base_dir: Path | None = None, **overrides: Any) -> OnlineScorer:
        """Build a scorer from ``include/pipelines/<pipeline>.yaml``: its model, alias, features and thresholds."""
        return cls(**pipeline_options(pipeline, base_dir, **overrides))

    def _model_columns(self, refs: list[str]) -> tuple[list[str], list[str]]:
        """Columns in the model's fitted order and the refs to read for them."""
        by_column = {ref.split(":", 1)[-1]: ref for ref in refs}
        fitted = [str(c) for c in getattr(self.model, "feature_names_in_", [])] or list(by_column)
        missing = [c for c in fitted if c not in by_column]
        if missing:
            raise InferenceError(
                f"{self.model_name} version {self.model_version} was trained on {', '.join(missing)}, which the "
                f"feature refs ({', '.join(refs)}) do not provide"
            )
        return fitted, [by_column[c] for c in fitted]

    def _join_keys(self) -> dict[str, str]:
        """Return the join keys of the feature views read (in their order) and their Feast value type names."""
        keys: dict[str, str] = {}
        for view_name in sorted({ref.split(":", 1)[0] for ref in self.feature_refs}):
            try:
                view = self.store.get_feature_view(view_name)
            except Exception as exc:
                raise InferenceError(
                    f"feature view {view_name!r} is not registered in Feast project {self.project!r}: run the "
                    f"pipeline's register_features task first ({exc})"
                ) from exc
            for column in view.entity_columns:
                keys[column.name] = str(getattr(column.dtype, "name", column.dtype)).upper()
        if not keys:
            raise InferenceError(f"online scoring needs a join key; {', '.join(self.feature_refs)} have none")
        return keys

    def entity_row(self, raw: Any) -> dict[str, Any]:
        """``{join key: value}`` of one entity, each value converted to its key's type (``"1001"`` -> ``1001``).

        ``raw`` is one id (a single key only) or ``{join key: value}`` naming every key column, as ``--key
        col=value`` and the API give it; a missing or unknown column is an error naming the entity's keys.
        """
        if not isinstance(raw, dict):
            if len(self.entity_keys) > 1:
                raise InvalidEntityIdError(
                    f"the entity key is composite ({self.entity_key}): give every column, e.g. "
                    + ",".join(f"{k}=..." for k in self.entity_keys)
                    + f"; got {raw!r}"
                )
            raw = {self.entity_key: raw}
        if set(raw) != set(self.entity_keys):
            raise InvalidEntityIdError(
                f"the entity key is {self.entity_key}; got {', '.join(sorted(map(str, raw))) or 'no column'}"
            )
        return {key: self._key_value(key, raw[key]) for key in self.entity_keys}

    def entity_value(self, raw: Any) -> Any:
        """Return the key value (a single key) or ``{join key: value}`` (a composite key), see :meth:`entity_row`."""
        row = self.entity_row(raw)
        return row[self.entity_key] if len(row) == 1 else row

    def _key_value(self, key: str, raw: Any) -> Any:
        """Convert one key column's value from a URL or the command line to its Feast type."""
        key_type = self._key_types[key]
        bounds = _INTEGER_BOUNDS.get(key_type)
        if bounds is None:
            return str(raw)
        try:
            if isinstance(raw, bool | float):
                raise ValueError
            value = int(str(raw).strip())
        except ValueError:
            raise InvalidEntityIdError(f"{key} must be an integer, got {raw!r}") from None
        if not bounds[0] <= value <= bounds[1]:
            raise InvalidEntityIdError(f"{key} must be between {bounds[0]} and {bounds[1]} ({key_type}), got {value}")
        return value

    def features(self, entity_id: Any) -> tuple[dict[str, float | None], str | None]:
        """Online feature values of one entity (model column order) and their latest event timestamp."""
        row = self.entity_row(entity_id)
        try:
            with self._read_lock:
                response = self.store.get_online_features(features=self.feature_refs, entity_rows=[row]).to_dict(
                    include_event_timestamps=True
                )
        except Exception as exc:
            raise InferenceError(
                f"online feature read for {_pairs(row)} from Feast project {self.project!r} failed: {exc}"
            ) from exc
        values = {c: response[c][0] for c in self.columns}
        if all(v is None for v in values.values()):
            views = ", ".join(sorted({ref.split(":", 1)[0] for ref in self.feature_refs}))
            raise EntityNotFoundError(
                f"{_label(row)} has no online features in feature view {views} (Feast project "
                f"{self.project!r}): the id is unknown, or its features were not materialized within the view's ttl; "
                "materialize them with the pipeline's materialize_features task (features.materialize: true)"
            )
        stamps = [response.get(f"{c}__ts", [0])[0] or 0 for c in self.columns]
        newest = max(_epoch_seconds(s) for s in stamps)
        stamp = datetime.fromtimestamp(newest, UTC).isoformat() if newest > 0 else None
        return {c: None if v is None else float(v) for c, v in values.items()}, stamp

    def score(self, entity_id: Any) -> Score:
        """Read one entity's online features and return the model's prediction for it."""
        row = self.entity_row(entity_id)
        values, stamp = self.features(row)
        try:
            result = self.predict(values)
        except Exception as exc:
            missing = [c for c, v in values.items() if v is None]
            hint = f" (no online value for {', '.join(missing)})" if missing else ""
            raise InferenceError(
                f"{self.model_name} version {self.model_version} failed to score {_label(row)}{hint}: {exc}"
            ) from exc
        return Score(
            entity_key=self.entity_key,
            entity_id=next(iter(row.values())) if len(row) == 1 else ",".join(str(v) for v in row.values()),
            prediction_column=self.prediction_column,
            value=result.value,
            prediction=result.prediction,
            risk_level=result.risk_level,
            probabilities=result.probabilities,
            model_name=self.model_name,
            model_version=str(self.model_version),
            feature_timestamp=stamp,
            features={c: None if v is None or math.isnan(v) else v for c, v in values.items()},
            scored_at=datetime.now(UTC).isoformat(),
            keys=row,
        )

    def mlflow_payload(self, entity_ids: Iterable[Any]) -> dict[str, Any]:
        """Request body for MLflow's scoring server (``POST /invocations``) with these entities' online features."""
        rows = []
        for entity_id in entity_ids:
            values, _ = self.features(entity_id)
            rows.append([v for v in values.values()])
        return {"dataframe_split": {"columns": self.columns, "data": rows}}

    def describe(self) -> dict[str, Any]:
        """Describe what this scorer serves (``GET /health``)."""
        return {
            "status": "ok",
            "model_name": self.model_name,
            "model_version": str(self.model_version),
            "entity_key": self.entity_key,
            "entity_keys": self.entity_keys,
            "feature_refs": self.feature_refs,
            "feast_project": self.project,
            "task": self.task,
            "prediction_column": self.prediction_column,
            "thresholds": {"high": self.high, "medium": self.medium} if self.task == BINARY else None,
        }


def pipeline_options(pipeline: str, base_dir: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """:class:`OnlineScorer` arguments from ``include/pipelines/<pipeline>.yaml``, with non-None ``overrides``."""
    from asgard_provider.pipeline.config import discover_pipelines, load_pipeline_config

    paths = [p for p in discover_pipelines(base_dir) if p.stem == pipeline]
    if not paths:
        known = ", ".join(p.stem for p in discover_pipelines(base_dir)) or "none"
        raise InferenceError(f"no pipeline {pipeline!r} in include/pipelines/ (pipelines: {known})")
    from asgard_provider.pipeline.graph import PipelineGraph, stages_of
    from asgard_provider.stages.features import feature_refs, feature_set
    from asgard_provider.stages.predict import PredictStage

    cfg = load_pipeline_config(paths[0], base_dir=base_dir)
    graph = PipelineGraph(cfg, paths[0].parent.parent)
    name, train = _scored_model(pipeline, paths[0], graph.nodes, overrides.get("model_name"))
    kwargs: dict[str, Any] = {
        "model_name": name,
        "feature_refs": feature_refs([view.config for view in feature_set(train.inputs["features"])]),
        "task": train.config.task,
    }
    predicts = stages_of(cfg, PredictStage)
    if predicts:
        kwargs["model_alias"] = predicts[0].model_alias
        kwargs["prediction_column"] = predicts[0].prediction_column
        if predicts[0].thresholds is not None:
            kwargs["thresholds"] = dict(predicts[0].thresholds)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "thresholds" in given:
        given["thresholds"] = {**kwargs.get("thresholds", {}), **given["thresholds"]}
    kwargs.update(given)
    return kwargs


def _scored_model(pipeline: str, path: Path, nodes: list[Any], wanted: str | None) -> tuple[str, Any]:
    """Return the registered model to score with and its train stage's node (``wanted``, or the only model)."""
    models = {one.registered_model: node for node in nodes if node.kind.key == "train" for one in node.config.models()}
    if not models:
        raise InferenceError(f"pipeline {pipeline!r} ({path}) has no features/train stage to score with")
    if wanted is None and len(models) > 1:
        raise InferenceError(
            f"pipeline {pipeline!r} trains {len(models)} models: name one with --model ({', '.join(models)})"
        )
    name = wanted or next(iter(models))
    return name, models.get(name, next(iter(models.values())))


def _pairs(row: dict[str, Any]) -> str:
    """``store_id=1, sku_id=7``: an entity's key columns and values."""
    return ", ".join(f"{key}={value}" for key, value in row.items())


def _label(row: dict[str, Any]) -> str:
    """Name an entity in a message: ``account_id 1001``, or ``store_id=1, sku_id=7`` for a composite key."""
    if len(row) == 1:
        key, value = next(iter(row.items()))
        return f"{key} {value}"
    return _pairs(row)


def _epoch_seconds(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return float(stamp or 0)


def _scorer(args: argparse.Namespace) -> OnlineScorer:
    return OnlineScorer(**_scorer_options(args))


def _scorer_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`OnlineScorer` keyword arguments from the command line (``--pipeline``, ``--model``, ...)."""
    overrides: dict[str, Any] = {
        "model_alias": args.alias,
        "model_version": args.version,
        "mlflow_conn_id": args.mlflow_conn_id,
        "feast_conn_id": args.feast_conn_id,
        "task": args.task,
        "prediction_column": args.prediction_column,
    }
    if args.high is not None or args.medium is not None:
        overrides["thresholds"] = {k: v for k, v in (("high", args.high), ("medium", args.medium)) if v is not None}
    if args.pipeline:
        if args.model:
            overrides["model_name"] = args.model
        base = Path(args.include_dir).resolve() if args.include_dir else None
        return pipeline_options(args.pipeline, base, **overrides)
    if not args.model:
        raise InferenceError("name the model to score with: --model <registered model> or --pipeline <pipeline>")
    return {"model_name": args.model, **{k: v for k, v in overrides.items() if v is not None}}


def _positive(text: str) -> int:
    """``argparse`` type of a count: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_key(text: str) -> dict[str, str]:
    """``--key`` value ``col=value[,col=value]`` as ``{col: value}``; raise naming the option on bad input."""
    pairs = [part.partition("=") for part in text.split(",")]
    if not pairs or any(not col.strip() or not sep for col, sep, _ in pairs):
        raise InvalidEntityIdError(f"--key {text!r}: write the entity's join key as col=value (e.g. account_id=1001)")
    return {col.strip(): value.strip() for col, _, value in pairs}


def entities(texts: Sequence[str]) -> list[dict[str, str]]:
    """Group ``--key`` values into entities: columns add up until one is given again, which starts the next.

    ``--key store_id=1 --key sku_id=7`` is one entity; ``--key account_id=1 --key account_id=2`` two.
    """
    groups: list[dict[str, str]] = []
    for text in texts:
        pairs = parse_key(text)
        if groups and not set(pairs) & set(groups[-1]):
            groups[-1].update(pairs)
        else:
            groups.append(pairs)
    return groups


def _answer(result: Score) -> str:
    """One line for ``score``: entity, prediction (named as in the predictions table), model, freshness."""
    shown = (
        f"{result.prediction_column}={result.value:.4f}"
        if result.value is not None and result.risk_level is not None
        else f"{result.prediction_column}={result.value:.6g}"
        if result.value is not None
        else f"prediction={result.prediction}"
    )
    extra = f"  risk={result.risk_level}" if result.risk_level else ""
    if result.probabilities:
        extra = "  " + " ".join(f"p({c})={p:.4f}" for c, p in result.probabilities.items())
    keys = " ".join(f"{key}={value}" for key, value in result.keys.items())
    return (
        f"{keys}  {shown}{extra}  model={result.model_name}/{result.model_version}  "
        f"features_at={result.feature_timestamp}"
    )


def _score_cmd(args: argparse.Namespace) -> int:
    scorer = _scorer(args)
    for entity in entities(args.key):
        result = scorer.score(entity)
        print(json.dumps(result.to_dict()) if args.json else _answer(result))
    return 0


def _serve_cmd(args: argparse.Namespace) -> int:
    from asgard_provider.api.server import serve

    serve(_scorer_options(args), host=args.host, port=args.port, auth=not args.no_auth, workers=args.workers)
    return 0


def _features_cmd(args: argparse.Namespace) -> int:
    scorer = _scorer(args)
    if args.format == "mlflow":
        print(json.dumps(scorer.mlflow_payload(entities(args.key))))
        return 0
    for entity in entities(args.key):
        values, stamp = scorer.features(entity)
        print(json.dumps({**scorer.entity_row(entity), "feature_timestamp": stamp, **values}))
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print ``FAIL <message>`` and return 1 on an Asgard error instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        # Feast logs registry refreshes at INFO on stdout; keep stdout for results (JSON lines, request bodies).
        logging.getLogger("feast").setLevel(logging.WARNING)
        try:
            return command(args)
        except AsgardError as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            return 1

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="registered MLflow model (default: the --pipeline's train.registered_model)")
    parser.add_argument("--alias", help="model alias (default: champion, or the pipeline's predict.model_alias)")
    parser.add_argument("--version", help="pin a model version instead of the alias")
    parser.add_argument("--pipeline", help="take model, alias, features and thresholds from this pipeline's YAML")
    parser.add_argument("--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or repo's)")
    parser.add_argument(
        "--task", choices=TASK_TYPES, help="the model's train.task (default: the pipeline's, else binary)"
    )
    parser.add_argument("--prediction-column", help="name of the value in answers (default: the pipeline's)")
    parser.add_argument("--high", type=float, help="probability at or above which risk is high (default 0.7)")
    parser.add_argument("--medium", type=float, help="probability at or above which risk is medium (default 0.4)")
    parser.add_argument("--mlflow-conn-id", help="Airflow connection of MLflow (default: asgard_mlflow_default)")
    parser.add_argument("--feast-conn-id", help="Airflow connection of Feast (default: asgard_feast_default)")


#: Help of ``--key``.
KEY_HELP = (
    "entity to score as join key col=value, e.g. account_id=1001; a composite key one --key per column "
    "(store_id=1 --key sku_id=7) or col=value,col=value; a column given again starts the next entity"
)


def add_commands(sub: Any) -> None:
    """Add ``score``, ``serve`` and ``features`` to an ``argparse`` sub-command set (also used by ``asgard``)."""
    score = sub.add_parser("score", help="the model's prediction for entities, from their online features")
    score.add_argument("--key", action="append", required=True, help=KEY_HELP)
    score.add_argument("--json", action="store_true", help="one JSON object per id")
    _common(score)
    score.set_defaults(func=_guarded(_score_cmd))

    serve_cmd = sub.add_parser("serve", help="the Asgard HTTP API on uvicorn (scoring, features, models, SQL)")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve_cmd.add_argument(
        "--workers",
        type=_positive,
        help="uvicorn worker processes, each with its own copy of the model (default: CPUs, at most 4)",
    )
    serve_cmd.add_argument(
        "--no-auth", action="store_true", help="serve without Airflow's token check (a trusted network only)"
    )
    _common(serve_cmd)
    serve_cmd.set_defaults(func=_guarded(_serve_cmd))

    features = sub.add_parser("features", help="an entity's online features (or an MLflow model-server request)")
    features.add_argument("--key", action="append", required=True, help=KEY_HELP)
    features.add_argument(
        "--format", choices=("json", "mlflow"), default="json", help="mlflow: body for POST /invocations"
    )
    _common(features)
    features.set_defaults(func=_guarded(_features_cmd))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m asgard_provider.serving``."""
    parser = argparse.ArgumentParser(prog="python -m asgard_provider.serving", description="Asgard online scoring")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
