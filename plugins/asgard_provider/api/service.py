"""What the API serves: scorers loaded once per model version, and the read-only views of Feast, MLflow, Iceberg."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asgard_provider.exceptions import ModelNotFoundError
from asgard_provider.serving import ModelScorer, OnlineScorer, pipeline_options

#: Scorers kept loaded at once (each holds a model and, for online scoring, a feature store).
MAX_LOADED = 8

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_PAIR = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=[^,\s&]+")


def public(message: str) -> str:
    """Strip URL credentials (``scheme://user:pw@``) and ``password=...`` pairs from a message."""
    return _SECRET_PAIR.sub(r"\1=***", _USERINFO.sub("***@", message))


class AsgardService:
    """Scorers and read-only views behind the API; models load on first use and stay loaded.

    :param pipeline: take the default model, alias, features and thresholds from this pipeline's YAML.
    :param options: :class:`~asgard_provider.serving.OnlineScorer` keyword arguments (``model_name``...).
    """

    def __init__(self, pipeline: str | None = None, base_dir: Path | None = None, **options: Any) -> None:
        self.pipeline, self.base_dir = pipeline, base_dir
        self.options = {k: v for k, v in options.items() if v is not None}
        self._loaded: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def _defaults(self) -> dict[str, Any]:
        if self.pipeline:
            return pipeline_options(self.pipeline, self.base_dir, **self.options)
        if "model_name" not in self.options:
            raise ModelNotFoundError("the server has no default model: start it with --pipeline or --model")
        return dict(self.options)

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            scorer = build()
            self._loaded[key] = scorer
            if len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
            return scorer

    def online(self, model: str | None = None, alias: str | None = None, version: int | None = None) -> OnlineScorer:
        """Online scorer of ``model`` (default: the server's) at ``version`` or ``@alias``."""
        kwargs = self._defaults()
        if model and model != kwargs["model_name"]:
            kwargs = {"model_name": model, **{k: v for k, v in self.options.items() if k != "feature_refs"}}
        if version is not None:
            kwargs["model_version"] = str(version)
        elif alias:
            kwargs.update(model_alias=alias, model_version=None)
        key = ("online", kwargs["model_name"], kwargs.get("model_alias"), kwargs.get("model_version"))
        return self._cached(key, lambda: OnlineScorer(**kwargs))

    def model(self, name: str, alias: str, version: int | None) -> ModelScorer:
        """Scorer of feature rows for ``name`` at ``version`` or ``@alias`` (thresholds as the server's)."""
        defaults = self._defaults()
        kwargs: dict[str, Any] = {k: defaults[k] for k in ("thresholds", "mlflow_conn_id") if k in defaults}
        key = ("model", name, None if version else alias, version)
        return self._cached(
            key,
            lambda: ModelScorer(
                name, model_alias=alias, model_version=None if version is None else str(version), **kwargs
            ),
        )


def feature_views(feast_conn_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Feast project and each feature view with its features, source table snapshot and materialization time."""
    from asgard_provider.hooks.feast import FeastHook

    hook = FeastHook(feast_conn_id) if feast_conn_id else FeastHook()
    views = sorted(hook.get_store().list_feature_views(), key=lambda v: v.name)
    return hook.project, [_view_info(view) for view in views]


def _view_info(view: Any) -> dict[str, Any]:
    source = view.batch_source
    namespace, table = getattr(source, "namespace", None), getattr(source, "iceberg_table", None)
    source_table = f"{namespace}.{table}" if namespace and table else None
    snapshot = _snapshot(source_table) if source_table else None
    until = view.materialization_intervals[-1][1] if view.materialization_intervals else None
    now = datetime.now(UTC)
    return {
        "name": view.name,
        "join_keys": [c.name for c in view.entity_columns],
        "features": [{"name": f.name, "dtype": str(getattr(f.dtype, "name", f.dtype))} for f in view.features],
        "ttl_seconds": view.ttl.total_seconds() if view.ttl else None,
        "source_table": source_table,
        "source_snapshot_id": snapshot[0] if snapshot else None,
        "source_committed_at": snapshot[1] if snapshot else None,
        "materialized_until": _iso(until),
        "staleness_seconds": (now - _aware(until)).total_seconds() if until else None,
        "tags": dict(view.tags),
    }


def _snapshot(table: str) -> tuple[int, str] | None:
    from asgard_provider.hooks.iceberg import IcebergHook

    current = IcebergHook().load_table(table).current_snapshot()
    if current is None:
        return None
    return int(current.snapshot_id), _iso(datetime.fromtimestamp(current.timestamp_ms / 1000, UTC)) or ""


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _iso(stamp: datetime | None) -> str | None:
    return _aware(stamp).isoformat() if stamp else None


def registered_models(mlflow_conn_id: str | None = None) -> list[dict[str, Any]]:
    """Every registered model with its aliases and latest version."""
    client = _mlflow(mlflow_conn_id).client()
    return [_summary(m) for m in sorted(client.search_registered_models(), key=lambda m: m.name)]


def _summary(model: Any) -> dict[str, Any]:
    versions = [int(v.version) for v in (model.latest_versions or [])]
    return {
        "name": model.name,
        "aliases": {str(k): str(v) for k, v in (model.aliases or {}).items()},
        "latest_version": str(max(versions)) if versions else None,
    }


def model_detail(name: str, mlflow_conn_id: str | None = None) -> dict[str, Any]:
    """One registered model: every version with aliases, ``asgard.*`` tags and run metrics; 404 if absent."""
    from mlflow.exceptions import MlflowException

    hook = _mlflow(mlflow_conn_id)
    client = hook.client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(f"no registered model {name!r}") from None
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # e.g. a ':' or '/': no model can have that name
            raise ModelNotFoundError(f"no registered model {name!r} ({exc.message})") from None
        raise
    versions = client.search_model_versions(f"name = '{name}'")
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(str(alias))
    infos = [_version_info(client, v, by_version) for v in versions]
    return {
        **_summary(model),
        "latest_version": str(max(int(v.version) for v in versions)) if versions else None,
        "versions": sorted(infos, key=lambda v: -int(v["version"])),
    }


def _version_info(client: Any, version: Any, aliases: dict[str, list[str]]) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in client.get_run(version.run_id).data.metrics.items()} if version.run_id else {}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC) if version.creation_timestamp else None
    return {
        "version": str(version.version),
        "aliases": sorted(aliases.get(str(version.version), [])),
        "status": str(version.status) if version.status else None,
        "run_id": version.run_id or None,
        "created_at": _iso(created),
        "tags": {k: str(v) for k, v in (version.tags or {}).items() if k.startswith("asgard.")},
        "metrics": metrics,
    }


def _mlflow(conn_id: str | None) -> Any:
    from asgard_provider.hooks.mlflow import MLflowHook

    return MLflowHook(conn_id) if conn_id else MLflowHook()


def health(mlflow_conn_id: str | None = None, feast_conn_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Whether the Iceberg catalog, MLflow and the Feast registry and online store answer."""
    return {
        "catalog": _probe(_catalog_probe),
        "mlflow": _probe(lambda: _mlflow_probe(mlflow_conn_id)),
        "feast_online_store": _probe(lambda: _online_probe(feast_conn_id)),
    }


def _probe(check: Callable[[], str]) -> dict[str, Any]:
    try:
        return {"ok": True, "detail": check()}
    except Exception as exc:
        return {"ok": False, "detail": public(f"{type(exc).__name__}: {exc}")[:500]}


def _catalog_probe() -> str:
    from asgard_provider.hooks.iceberg import IcebergHook

    namespaces = IcebergHook().catalog.list_namespaces()
    return f"{len(namespaces)} namespaces"


def _mlflow_probe(conn_id: str | None) -> str:
    models = _mlflow(conn_id).client().search_registered_models(max_results=100)
    return f"{len(models)} registered models"


def _online_probe(conn_id: str | None) -> str:
    from asgard_provider.hooks.feast import FeastHook

    hook = FeastHook(conn_id) if conn_id else FeastHook()
    store = hook.get_store()
    views = store.list_feature_views()
    kind = store.config.online_store.type
    if views:
        view = views[0]
        keys = {c.name: 0 for c in view.entity_columns}
        store.get_online_features(features=[f"{view.name}:{view.features[0].name}"], entity_rows=[keys])
    return f"{kind} online store answered; {len(views)} feature views in project {hook.project!r}"
