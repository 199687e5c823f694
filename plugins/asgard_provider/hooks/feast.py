"""Hook for the Feast feature store: one ``feature_store.yaml`` rendered from an Airflow connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from asgard_provider.engines.stores import (
    DEFAULT_PROJECT,
    FEAST_CONN_ID,
    FeastSettings,
    FeastStore,
    build_feature_store_config,
    embedded_feast_dir,
    feast_settings,
    online_store_config,
    registry_config,
)
from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.library_logs import quiet_library_logs

# The store's settings live in engines.stores (no Airflow there); these names stay importable from here.
__all__ = [
    "DEFAULT_PROJECT",
    "FeastHook",
    "build_feature_store_config",
    "embedded_feast_dir",
    "online_store_config",
    "registry_config",
]


class FeastHook(BaseHook):
    """Access the Feast feature store described by an Airflow connection of type ``asgard_feast``.

    Connection fields: ``host``/``port``/``password`` name a Redis online store; extra
    ``{"project": "asgard", "registry": "postgresql+psycopg2://...", "online_store": "redis://..." or {...},
    "offline_store": {"type": "duckdb"}, "repo_path": "/opt/feast/repo"}``. When the default connection is
    not defined, the embedded store is used: registry ``$ASGARD_HOME/feast/registry.db``, SQLite online store
    ``$ASGARD_HOME/feast/online.db`` and the DuckDB offline store (which reads Iceberg through pyiceberg).
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = FEAST_CONN_ID
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
    def _settings(self) -> FeastSettings:
        try:
            conn = self.get_connection(self.feast_conn_id)
        except Exception as exc:
            if self.feast_conn_id == self.default_conn_name:
                return FeastSettings.embedded()
            raise FeatureStoreError(f"Airflow connection {self.feast_conn_id!r} is not defined") from exc
        return feast_settings(conn, self.feast_conn_id)

    @cached_property
    def _access(self) -> FeastStore:
        from asgard_provider.hooks.iceberg import IcebergHook

        return FeastStore(self._settings, IcebergHook().settings)

    def settings(self) -> FeastSettings:
        """Feature-store config and repo folder from the connection (or the embedded default)."""
        return self._settings

    @property
    def config(self) -> dict[str, Any]:
        """The ``feature_store.yaml`` contents this hook uses."""
        return self._settings.config

    @property
    def project(self) -> str:
        """Feast project name."""
        return self._settings.project

    def repo_path(self) -> Path:
        """Write ``feature_store.yaml`` into the repo folder (if changed) and return the folder.

        Scripts open the same store with ``feast.FeatureStore(repo_path=...)``. The file may hold registry or
        Redis credentials, so it is readable by its owner only.
        """
        return self._access.repo_path()

    @property
    def store(self) -> Any:
        """The ``feast.FeatureStore`` (created once per hook)."""
        return self._access.store

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
        """See :meth:`asgard_provider.engines.stores.FeastStore.historical_features`."""
        return self._access.historical_features(entity_df, features, full_feature_names=full_feature_names)

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
