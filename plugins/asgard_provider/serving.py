"""Score one customer online: features from the Feast online store, probability from the registered model.

:class:`OnlineScorer` loads ``models:/<model>@champion`` and opens the feature store once; each
:meth:`OnlineScorer.score` call is then one online-store read (SQLite embedded, Redis in production, as
configured by the ``asgard_feast_default`` connection) plus one ``predict_proba`` on that row. The online
store holds what ``FeastMaterializeOperator`` materialized (``features.materialize: true``).

Command line (``asgard score`` and ``asgard serve`` are the same commands)::

    python -m asgard_provider.serving score --customer-id 1001
    python -m asgard_provider.serving serve --port 8090       # GET /score/1001, POST /score, GET /health
    python -m asgard_provider.serving features --customer-id 1001 --format mlflow   # body for `mlflow models serve`

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
from urllib.parse import parse_qs

from asgard_provider.evaluation import risk_level, risk_thresholds
from asgard_provider.exceptions import AsgardError, InferenceError

#: Registered model scored when neither ``--model`` nor ``--pipeline`` says otherwise.
DEFAULT_MODEL = "customer_churn_predictor"

#: Port of ``serve`` unless ``--port`` is given.
DEFAULT_PORT = 8090

#: Run tag (written by MLflowTrainOperator) listing the Feast feature refs a model was trained on.
FEATURES_TAG = "asgard.features"

_INTEGER_TYPES = ("INT32", "INT64")


class CustomerNotFoundError(InferenceError):
    """The online store holds no features for the requested entity."""


class InvalidEntityIdError(InferenceError):
    """The requested id cannot be a value of the join key (e.g. ``abc`` for an integer key)."""


@dataclass(frozen=True)
class Score:
    """One online prediction."""

    entity_key: str
    entity_id: Any
    churn_probability: float
    prediction: int
    risk_level: str
    model_name: str
    model_version: str
    #: Latest event timestamp of the features used (ISO 8601, UTC): how fresh the online row is.
    feature_timestamp: str | None
    features: dict[str, float | None]
    scored_at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"customer_id": 1001, "churn_probability": ..., ...}``."""
        data = asdict(self)
        return {data.pop("entity_key"): data.pop("entity_id"), **data}


class OnlineScorer:
    """Serve churn probabilities for single entities from online features.

    :param model_name: registered MLflow model.
    :param model_alias: alias to load (``champion``); ignored when ``model_version`` is given.
    :param feature_refs: Feast refs (``view:feature``) to read; default: the ``asgard.features`` tag of the
        run that produced the model version, i.e. exactly what it was trained on.
    :param thresholds: ``{"high": 0.7, "medium": 0.4}`` risk level cut-offs.
    :param decision_threshold: probability at or above which ``prediction`` is 1.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        model_alias: str = "champion",
        model_version: str | None = None,
        feature_refs: Sequence[str] | None = None,
        thresholds: dict[str, float] | None = None,
        decision_threshold: float = 0.5,
        mlflow_conn_id: str | None = None,
        feast_conn_id: str | None = None,
    ) -> None:
        from asgard_provider.hooks.feast import FeastHook
        from asgard_provider.hooks.mlflow import MLflowHook

        self.high, self.medium = risk_thresholds(thresholds)
        self.decision_threshold = decision_threshold
        self.model_name = model_name
        mlflow = MLflowHook(mlflow_conn_id) if mlflow_conn_id else MLflowHook()
        self.model_version = mlflow.version_for(
            model_name, alias=None if model_version else model_alias, version=model_version
        )
        self.model = mlflow.load_sklearn_model(model_name, self.model_version)
        if not hasattr(self.model, "predict_proba"):
            raise InferenceError(
                f"{model_name} version {self.model_version} ({type(self.model).__name__}) has no predict_proba"
            )
        if getattr(self.model, "n_jobs", None) not in (None, 1):
            # A thread pool per one-row prediction costs more than the prediction itself.
            self.model.n_jobs = 1
        classes = [int(c) for c in getattr(self.model, "classes_", [0, 1])]
        if 1 not in classes:
            raise InferenceError(f"{model_name} version {self.model_version} has no positive class 1 ({classes})")
        self._positive = classes.index(1)
        self._trees = _forest_trees(self.model)
        refs = list(feature_refs) if feature_refs else self._trained_refs(mlflow)
        self.columns, self.feature_refs = self._model_columns(refs)
        feast = FeastHook(feast_conn_id) if feast_conn_id else FeastHook()
        self.store = feast.get_store()
        self.project = feast.project
        self.entity_key, self._key_type = self._join_key()

    @classmethod
    def from_pipeline(cls, pipeline: str, base_dir: Path | None = None, **overrides: Any) -> OnlineScorer:
        """Build a scorer from ``include/pipelines/<pipeline>.yaml``: its model, alias, features and thresholds."""
        from asgard_provider.pipeline.config import discover_pipelines, load_pipeline_config

        paths = [p for p in discover_pipelines(base_dir) if p.stem == pipeline]
        if not paths:
            known = ", ".join(p.stem for p in discover_pipelines(base_dir)) or "none"
            raise InferenceError(f"no pipeline {pipeline!r} in include/pipelines/ (pipelines: {known})")
        cfg = load_pipeline_config(paths[0], base_dir=base_dir)
        if cfg.train is None or cfg.features is None:
            raise InferenceError(f"pipeline {pipeline!r} ({paths[0]}) has no features/train stage to score with")
        kwargs: dict[str, Any] = {
            "model_name": cfg.train.registered_model,
            "feature_refs": [f"{cfg.features.feature_view}:{f.name}" for f in cfg.features.features],
        }
        if cfg.predict is not None:
            kwargs["model_alias"] = cfg.predict.model_alias
            kwargs["thresholds"] = dict(cfg.predict.thresholds)
        given = {k: v for k, v in overrides.items() if v is not None}
        if "thresholds" in given:
            given["thresholds"] = {**kwargs.get("thresholds", {}), **given["thresholds"]}
        kwargs.update(given)
        return cls(**kwargs)

    def _trained_refs(self, mlflow: Any) -> list[str]:
        run_id = mlflow.version_run_id(self.model_name, self.model_version)
        tag = None
        if run_id is not None:
            try:
                tag = mlflow.client().get_run(run_id).data.tags.get(FEATURES_TAG)
            except Exception as exc:
                raise InferenceError(f"cannot read run {run_id} of {self.model_name}: {exc}") from exc
        if not tag:
            raise InferenceError(
                f"{self.model_name} version {self.model_version} has no {FEATURES_TAG} run tag (it was not trained by "
                "MLflowTrainOperator): pass the Feast feature refs (feature_refs / --pipeline)"
            )
        return [ref for ref in str(tag).split(",") if ref]

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

    def _join_key(self) -> tuple[str, str]:
        """Return the one join key of the feature views read and its Feast value type name."""
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
        if len(keys) != 1:
            raise InferenceError(
                f"online scoring needs exactly one join key across {', '.join(self.feature_refs)}; found "
                f"{', '.join(keys) or 'none'}"
            )
        return next(iter(keys.items()))

    def entity_value(self, raw: Any) -> Any:
        """Convert an id from a URL or the command line to the join key's type (``"1001"`` -> ``1001``)."""
        if self._key_type in _INTEGER_TYPES:
            if isinstance(raw, bool):
                raise InvalidEntityIdError(f"{self.entity_key} must be an integer, got {raw!r}")
            try:
                return int(str(raw).strip())
            except ValueError:
                raise InvalidEntityIdError(f"{self.entity_key} must be an integer, got {raw!r}") from None
        return str(raw)

    def features(self, entity_id: Any) -> tuple[dict[str, float | None], str | None]:
        """Online feature values of one entity (model column order) and their latest event timestamp."""
        key = self.entity_value(entity_id)
        try:
            response = self.store.get_online_features(
                features=self.feature_refs, entity_rows=[{self.entity_key: key}]
            ).to_dict(include_event_timestamps=True)
        except Exception as exc:
            raise InferenceError(
                f"online feature read for {self.entity_key}={key} from Feast project {self.project!r} failed: {exc}"
            ) from exc
        values = {c: response[c][0] for c in self.columns}
        if all(v is None for v in values.values()):
            views = ", ".join(sorted({ref.split(":", 1)[0] for ref in self.feature_refs}))
            raise CustomerNotFoundError(
                f"{self.entity_key} {key} has no online features in feature view {views} (Feast project "
                f"{self.project!r}): the id is unknown, or its features were not materialized within the view's ttl; "
                "materialize them with the pipeline's materialize_features task (features.materialize: true)"
            )
        stamps = [response.get(f"{c}__ts", [0])[0] or 0 for c in self.columns]
        newest = max(_epoch_seconds(s) for s in stamps)
        stamp = datetime.fromtimestamp(newest, UTC).isoformat() if newest > 0 else None
        return {c: None if v is None else float(v) for c, v in values.items()}, stamp

    def probability(self, values: dict[str, float | None]) -> float:
        """Churn probability of one feature row (``{column: value}``; ``None`` is a missing value).

        Equal to ``model.predict_proba`` on that row. For a random forest / extra-trees model and a row without
        missing values, the trees are evaluated directly, in the forest's own order and arithmetic: scikit-learn's
        per-tree job dispatch costs about ten times the prediction of a single row.
        """
        import numpy as np

        row = np.array([[np.nan if values[c] is None else values[c] for c in self.columns]], dtype="float64")
        if self._trees is not None and not np.isnan(row).any():
            data = row.astype(np.float32)
            total = np.zeros((1, len(self.model.classes_)), dtype="float64")
            for tree in self._trees:
                total += tree.predict_proba(data, check_input=False)
            total /= len(self._trees)
            return float(total[0, self._positive])
        import pandas as pd

        frame = pd.DataFrame(row, columns=self.columns)
        return float(self.model.predict_proba(frame)[0, self._positive])

    def score(self, entity_id: Any) -> Score:
        """Read one entity's online features and return its churn probability and risk level."""
        values, stamp = self.features(entity_id)
        try:
            probability = self.probability(values)
        except Exception as exc:
            missing = [c for c, v in values.items() if v is None]
            hint = f" (no online value for {', '.join(missing)})" if missing else ""
            raise InferenceError(
                f"{self.model_name} version {self.model_version} failed to score {self.entity_key} "
                f"{self.entity_value(entity_id)}{hint}: {exc}"
            ) from exc
        return Score(
            entity_key=self.entity_key,
            entity_id=self.entity_value(entity_id),
            churn_probability=probability,
            prediction=int(probability >= self.decision_threshold),
            risk_level=risk_level(probability, self.high, self.medium),
            model_name=self.model_name,
            model_version=str(self.model_version),
            feature_timestamp=stamp,
            features={c: None if v is None or math.isnan(v) else v for c, v in values.items()},
            scored_at=datetime.now(UTC).isoformat(),
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
            "feature_refs": self.feature_refs,
            "feast_project": self.project,
            "thresholds": {"high": self.high, "medium": self.medium},
        }


def _forest_trees(model: Any) -> list[Any] | None:
    """Fitted trees of a single-output scikit-learn random forest or extra-trees classifier, else ``None``."""
    try:
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    except ImportError:
        return None
    if not isinstance(model, RandomForestClassifier | ExtraTreesClassifier):
        return None
    if getattr(model, "n_outputs_", 1) != 1 or not getattr(model, "estimators_", None):
        return None
    return list(model.estimators_)


def _epoch_seconds(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return float(stamp or 0)


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def make_app(scorer: OnlineScorer) -> Callable[[dict[str, Any], StartResponse], list[bytes]]:
    """WSGI app over ``scorer``: ``GET /score/<id>``, ``GET /score?<key>=<id>``, ``POST /score`` and ``GET /health``.

    Answers are JSON; an unknown id is 404, a malformed one 400, a scoring failure 500, each with
    ``{"error": "..."}``. Any WSGI server can host it (``wsgiref`` in :func:`serve`, gunicorn, ...).
    """

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        try:
            if path == "/health" and method == "GET":
                return _reply(start_response, "200 OK", scorer.describe())
            if path == "/score" or path.startswith("/score/"):
                entity_id = _requested_id(environ, method, path, scorer.entity_key)
                return _reply(start_response, "200 OK", scorer.score(entity_id).to_dict())
            return _reply(start_response, "404 Not Found", {"error": f"no route {method} {path}"})
        except CustomerNotFoundError as exc:
            return _reply(start_response, "404 Not Found", {"error": str(exc)})
        except (_BadRequestError, InvalidEntityIdError) as exc:
            return _reply(start_response, "400 Bad Request", {"error": str(exc)})
        except InferenceError as exc:
            return _reply(start_response, "500 Internal Server Error", {"error": str(exc)})

    return app


def create_app(
    pipeline: str | None = None, model: str = DEFAULT_MODEL, **options: Any
) -> Callable[[dict[str, Any], StartResponse], list[bytes]]:
    """Build the WSGI app for servers given a factory: ``gunicorn 'asgard_provider.serving:create_app()'``.

    ``pipeline`` takes model, alias, features and thresholds from ``include/pipelines/<pipeline>.yaml``;
    ``options`` are :class:`OnlineScorer` keyword arguments (``model_alias``, ``feast_conn_id``...).
    """
    scorer = OnlineScorer.from_pipeline(pipeline, **options) if pipeline else OnlineScorer(model, **options)
    return make_app(scorer)


class _BadRequestError(AsgardError):
    """The HTTP request does not name an entity."""


def _requested_id(environ: dict[str, Any], method: str, path: str, key: str) -> Any:
    if path.startswith("/score/") and method == "GET":
        return path[len("/score/") :]
    if method == "GET":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        for name in (key, "id"):
            if query.get(name):
                return query[name][0]
        raise _BadRequestError(f"name the entity: GET /score/<{key}> or GET /score?{key}=<id>")
    if method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except (ValueError, KeyError) as exc:
            raise _BadRequestError(f"POST /score needs a JSON body like {{{key!r}: 1001}}: {exc}") from exc
        if not isinstance(body, dict) or key not in body:
            raise _BadRequestError(f'POST /score needs a JSON body like {{"{key}": 1001}}')
        return body[key]
    raise _BadRequestError(f"{method} is not supported on /score (use GET or POST)")


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def serve(scorer: OnlineScorer, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve :func:`make_app` with the standard library's single-threaded WSGI server until interrupted."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class _Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    with make_server(host, port, make_app(scorer), handler_class=_Handler) as server:
        print(f"serving {scorer.model_name} version {scorer.model_version} on http://{host}:{server.server_port}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def _scorer(args: argparse.Namespace) -> OnlineScorer:
    overrides: dict[str, Any] = {
        "model_alias": args.alias,
        "model_version": args.version,
        "mlflow_conn_id": args.mlflow_conn_id,
        "feast_conn_id": args.feast_conn_id,
    }
    if args.high is not None or args.medium is not None:
        overrides["thresholds"] = {k: v for k, v in (("high", args.high), ("medium", args.medium)) if v is not None}
    if args.pipeline:
        if args.model:
            overrides["model_name"] = args.model
        base = Path(args.include_dir).resolve() if args.include_dir else None
        return OnlineScorer.from_pipeline(args.pipeline, base, **overrides)
    return OnlineScorer(args.model or DEFAULT_MODEL, **{k: v for k, v in overrides.items() if v is not None})


def _score_cmd(args: argparse.Namespace) -> int:
    scorer = _scorer(args)
    for entity_id in args.customer_id:
        result = scorer.score(entity_id)
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            print(
                f"{result.entity_key}={result.entity_id}  churn_probability={result.churn_probability:.4f}  "
                f"risk={result.risk_level}  model={result.model_name}/{result.model_version}  "
                f"features_at={result.feature_timestamp}"
            )
    return 0


def _serve_cmd(args: argparse.Namespace) -> int:
    serve(_scorer(args), args.host, args.port)
    return 0


def _features_cmd(args: argparse.Namespace) -> int:
    scorer = _scorer(args)
    if args.format == "mlflow":
        print(json.dumps(scorer.mlflow_payload(args.customer_id)))
        return 0
    for entity_id in args.customer_id:
        values, stamp = scorer.features(entity_id)
        print(json.dumps({scorer.entity_key: scorer.entity_value(entity_id), "feature_timestamp": stamp, **values}))
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
    parser.add_argument("--model", help=f"registered MLflow model (default: {DEFAULT_MODEL}, or the pipeline's)")
    parser.add_argument("--alias", help="model alias (default: champion, or the pipeline's predict.model_alias)")
    parser.add_argument("--version", help="pin a model version instead of the alias")
    parser.add_argument("--pipeline", help="take model, alias, features and thresholds from this pipeline's YAML")
    parser.add_argument("--include-dir", help="the bundle's include/ folder (default: $ASGARD_INCLUDE_DIR or repo's)")
    parser.add_argument("--high", type=float, help="probability at or above which risk is high (default 0.7)")
    parser.add_argument("--medium", type=float, help="probability at or above which risk is medium (default 0.4)")
    parser.add_argument("--mlflow-conn-id", help="Airflow connection of MLflow (default: asgard_mlflow_default)")
    parser.add_argument("--feast-conn-id", help="Airflow connection of Feast (default: asgard_feast_default)")


def add_commands(sub: Any) -> None:
    """Add ``score``, ``serve`` and ``features`` to an ``argparse`` sub-command set (also used by ``asgard``)."""
    score = sub.add_parser("score", help="churn probability and risk level of customers from online features")
    score.add_argument("--customer-id", action="append", required=True, help="id to score (repeatable)")
    score.add_argument("--json", action="store_true", help="one JSON object per id")
    _common(score)
    score.set_defaults(func=_guarded(_score_cmd))

    serve_cmd = sub.add_parser("serve", help="HTTP endpoint: GET /score/<id>, POST /score, GET /health")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    _common(serve_cmd)
    serve_cmd.set_defaults(func=_guarded(_serve_cmd))

    features = sub.add_parser("features", help="a customer's online features (or an MLflow model-server request)")
    features.add_argument("--customer-id", action="append", required=True, help="id to read (repeatable)")
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
