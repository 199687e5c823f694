"""Hook for the Feast feature store: one ``feature_store.yaml`` rendered from an Airflow connection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from airflow.sdk import BaseHook

from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.library_logs import quiet_library_logs
from asgard_provider.settings import asgard_home

#: Feast project used when the connection does not name one.
DEFAULT_PROJECT = "asgard"

_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


def embedded_feast_dir() -> Path:
    """Folder holding the embedded registry, online store and repo: ``$ASGARD_HOME/feast``."""
    return asgard_home() / "feast"


def registry_config(registry: str | dict[str, Any]) -> dict[str, Any]:
    """Turn a registry setting into Feast's ``registry:`` block.

    A database URL (``postgresql+psycopg2://user:pw@host/db``) becomes a SQL registry; anything else is a
    registry file (local path or object-store URI). A mapping is passed through unchanged.
    """
    if isinstance(registry, dict):
        return dict(registry)
    scheme = urlsplit(registry).scheme.split("+")[0]
    if scheme in _SQL_SCHEMES:
        return {
            "registry_type": "sql",
            "path": registry,
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        }
    return {"registry_type": "file", "path": registry, "cache_ttl_seconds": 60}


def online_store_config(online_store: str | dict[str, Any]) -> dict[str, Any]:
    """Turn an online-store setting into Feast's ``online_store:`` block.

    ``redis://[:password@]host:port[/db]`` and Feast's own ``host:port,db=0`` form select Redis;
    ``sqlite:///path/online.db`` or a path ending in ``.db`` select SQLite. A mapping is passed through.
    """
    if isinstance(online_store, dict):
        return dict(online_store)
    if online_store.startswith(("redis://", "rediss://")):
        parts = urlsplit(online_store)
        conn = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        db = parts.path.strip("/")
        if db:
            conn += f",db={db}"
        if parts.password:
            conn += f",password={unquote(parts.password)}"
        if parts.scheme == "rediss":
            conn += ",ssl=true"
        return {"type": "redis", "connection_string": conn}
    if online_store.startswith("sqlite:///"):
        return {"type": "sqlite", "path": online_store[len("sqlite:///") :]}
    if online_store.endswith(".db"):
        return {"type": "sqlite", "path": online_store}
    return {"type": "redis", "connection_string": online_store}


def build_feature_store_config(
    *,
    project: str = DEFAULT_PROJECT,
    registry: str | dict[str, Any] | None = None,
    online_store: str | dict[str, Any] | None = None,
    offline_store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Contents of ``feature_store.yaml``; unset parts fall back to the embedded files under ``$ASGARD_HOME``."""
    home = embedded_feast_dir()
    return {
        "project": project,
        "provider": "local",
        "registry": registry_config(registry if registry is not None else str(home / "registry.db")),
        "online_store": online_store_config(online_store if online_store is not None else str(home / "online.db")),
        "offline_store": dict(offline_store or {"type": "duckdb"}),
        "entity_key_serialization_version": 3,
    }


class FeastHook(BaseHook):
    """Access the Feast feature store described by an Airflow connection of type ``asgard_feast``.

    Connection fields: ``host``/``port``/``password`` name a Redis online store; extra
    ``{"project": "asgard", "registry": "postgresql+psycopg2://...", "online_store": "redis://..." or {...},
    "offline_store": {"type": "duckdb"}, "repo_path": "/opt/feast/repo"}``. When the default connection is
    not defined, the embedded store is used: registry ``$ASGARD_HOME/feast/registry.db``, SQLite online store
    ``$ASGARD_HOME/feast/online.db`` and the DuckDB offline store (which reads Iceberg through pyiceberg).
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "asgard_feast_default"
    conn_type = "asgard_feast"
    hook_name = "Feast feature store (Asgard)"

    def __init__(self, feast_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.feast_conn_id = feast_conn_id
        quiet_library_logs()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic connection form for a feature store."""
        from asgard_provider.connections import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def _settings(self) -> tuple[dict[str, Any], Path]:
        try:
            conn = self.get_connection(self.feast_conn_id)
        except Exception as exc:
            if self.feast_conn_id == self.default_conn_name:
                return build_feature_store_config(), embedded_feast_dir() / "repo"
            raise FeatureStoreError(f"Airflow connection {self.feast_conn_id!r} is not defined") from exc
        extra = conn.extra_dejson
        online = extra.get("online_store")
        if online is None and conn.host:
            online = f"{conn.host}:{conn.port or 6379}" + (f",password={conn.password}" if conn.password else "")
        try:
            config = build_feature_store_config(
                project=extra.get("project", DEFAULT_PROJECT),
                registry=extra.get("registry"),
                online_store=online,
                offline_store=extra.get("offline_store"),
            )
        except (TypeError, ValueError) as exc:
            raise FeatureStoreError(f"invalid Feast settings in connection {self.feast_conn_id!r}: {exc}") from exc
        return config, Path(extra.get("repo_path") or embedded_feast_dir() / "repo")

    @property
    def config(self) -> dict[str, Any]:
        """The ``feature_store.yaml`` contents this hook uses."""
        return self._settings[0]

    @property
    def project(self) -> str:
        """Feast project name."""
        return str(self.config["project"])

    def repo_path(self) -> Path:
        """Write ``feature_store.yaml`` into the repo folder (if changed) and return the folder.

        Scripts open the same store with ``feast.FeatureStore(repo_path=...)``. The file may hold registry or
        Redis credentials, so it is readable by its owner only.
        """
        config, repo = self._settings
        text = yaml.safe_dump(config, sort_keys=False)
        path = repo / "feature_store.yaml"
        try:
            repo.mkdir(parents=True, exist_ok=True)
            registry, online = config["registry"], config["online_store"]
            if registry.get("registry_type") == "file" and "://" not in registry.get("path", "://"):
                Path(registry["path"]).parent.mkdir(parents=True, exist_ok=True)
            if online.get("type") == "sqlite" and online.get("path"):
                Path(online["path"]).parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".yaml.tmp")
                tmp.write_text(text)
                os.chmod(tmp, 0o600)
                tmp.replace(path)
        except OSError as exc:
            raise FeatureStoreError(f"cannot write Feast repo config {path}: {exc}") from exc
        return repo

    @cached_property
    def store(self) -> Any:
        """The ``feast.FeatureStore`` (created once per hook)."""
        from feast import FeatureStore

        from asgard_provider.catalog import export_catalog_password
        from asgard_provider.hooks.iceberg import IcebergHook

        repo = self.repo_path()
        # Iceberg sources in the registry hold the catalog URI without its password (see iceberg_source).
        export_catalog_password(IcebergHook().settings)
        try:
            return FeatureStore(repo_path=str(repo))
        except Exception as exc:
            raise FeatureStoreError(f"cannot open Feast store from {repo / 'feature_store.yaml'}: {exc}") from exc

    def get_store(self) -> Any:
        """Return the ``feast.FeatureStore``."""
        return self.store

    def get_conn(self) -> Any:
        """Return the ``feast.FeatureStore``."""
        return self.store

    def apply(self, objects: Sequence[Any]) -> None:
        """Register entities, feature views and services (re-applying the same definitions is a no-op)."""
        try:
            self.store.apply(list(objects))
        except Exception as exc:
            names = ", ".join(getattr(o, "name", str(o)) for o in objects)
            raise FeatureStoreError(f"Feast apply of {names} to project {self.project!r} failed: {exc}") from exc

    def materialize(self, start: datetime, end: datetime, feature_views: Sequence[str] | None = None) -> None:
        """Load the latest feature values with timestamps in [start, end] into the online store."""
        try:
            self.store.materialize(start, end, feature_views=list(feature_views) if feature_views else None)
        except Exception as exc:
            raise FeatureStoreError(
                f"materializing {', '.join(feature_views or ['all feature views'])} from {start} to {end} failed: {exc}"
            ) from exc

    def historical_features(
        self, entity_df: Any, features: Sequence[str] | Any, *, full_feature_names: bool = False
    ) -> Any:
        """Point-in-time join of ``features`` (refs like ``view:feature`` or a FeatureService) onto ``entity_df``.

        ``entity_df`` is a pandas DataFrame with the join key(s) and an ``event_timestamp`` column; each row
        gets the latest feature values at or before its timestamp (within the view's TTL). Row order is
        not preserved.
        """
        refs = features if not isinstance(features, (list, tuple)) else list(features)
        try:
            return self.store.get_historical_features(
                entity_df=entity_df, features=refs, full_feature_names=full_feature_names
            ).to_df()
        except Exception as exc:
            raise FeatureStoreError(f"historical retrieval of {refs} failed: {exc}") from exc

    def online_features(
        self, features: Sequence[str] | Any, entity_rows: Sequence[dict[str, Any]], *, full_feature_names: bool = False
    ) -> dict[str, list[Any]]:
        """Latest materialized values of ``features`` for ``entity_rows``, each naming every join key column.

        E.g. ``[{"account_id": 1}]``, or ``[{"store_id": 1, "sku_id": "sku7"}]`` for a composite key.
        """
        refs = features if not isinstance(features, (list, tuple)) else list(features)
        try:
            response = self.store.get_online_features(
                features=refs, entity_rows=list(entity_rows), full_feature_names=full_feature_names
            )
            return dict(response.to_dict())
        except Exception as exc:
            raise FeatureStoreError(f"online retrieval of {refs} failed: {exc}") from exc

    def test_connection(self) -> tuple[bool, str]:
        """List feature views to prove the registry answers."""
        try:
            views = self.store.list_feature_views()
        except Exception as exc:
            return False, str(exc)
        return True, f"registry reachable, {len(views)} feature views in project {self.project!r}"
