"""The stores an engine talks to (Iceberg catalog, MLflow, Feast) as plain settings, opened without Airflow.

A hook turns its Airflow connection into these settings (:func:`catalog_settings`, :func:`mlflow_settings`,
:func:`feast_settings` read any record with ``host``, ``port``, ``login``, ``password`` and ``extra_dejson``); a
task pod, which has no Airflow, reads the same ``AIRFLOW_CONN_*`` variables with :func:`env_connection`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import yaml

from asgard_provider.catalog import CATALOG_NAME, CatalogSettings, export_catalog_password
from asgard_provider.exceptions import AsgardError, CatalogError, FeatureStoreError, TrainingError
from asgard_provider.settings import asgard_home

#: Feast project used when the connection does not name one.
DEFAULT_PROJECT = "asgard"
#: ``type:`` of the embedded online store: Feast's SQLite store with a batched write
#: (:mod:`asgard_provider.engines.feast_online`).
BULK_SQLITE_TYPE = "asgard_provider.engines.feast_online.BulkSqliteOnlineStore"
#: Online store types that keep their rows in the SQLite file at ``path``.
SQLITE_TYPES = ("sqlite", BULK_SQLITE_TYPE)
#: Prefix of the environment variables Airflow (and a task pod) reads connections from.
CONN_ENV_PREFIX = "AIRFLOW_CONN_"
#: Default connection ids; when one is not defined, the embedded store under ``$ASGARD_HOME`` is used.
ICEBERG_CONN_ID = "asgard_iceberg_default"
MLFLOW_CONN_ID = "asgard_mlflow_default"
FEAST_CONN_ID = "asgard_feast_default"
#: Trino connection of production: dbt-trino's Gold engine, and ``/query``'s engine when it is defined.
TRINO_CONN_ID = "asgard_trino"

_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


class ConnectionLike(Protocol):
    """What the settings functions read from an Airflow ``Connection`` (or a :class:`ConnectionRecord`)."""

    @property
    def host(self) -> str | None:
        """Host (or URL)."""

    @property
    def port(self) -> int | None:
        """Port."""

    @property
    def login(self) -> str | None:
        """User name."""

    @property
    def password(self) -> str | None:
        """Password."""

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """The connection's extra as a dict."""


@dataclass(frozen=True)
class ConnectionRecord:
    """A connection read without Airflow (from an ``AIRFLOW_CONN_*`` variable in JSON form)."""

    conn_id: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """The connection's extra (a dict, as Airflow's ``Connection.extra_dejson``)."""
        return dict(self.extra)


def env_connection(conn_id: str, environ: Mapping[str, str] | None = None) -> ConnectionRecord | None:
    """Read connection ``conn_id`` from ``$AIRFLOW_CONN_<ID>`` (JSON form); ``None`` when it is not set."""
    name = CONN_ENV_PREFIX + conn_id.upper()
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):  # the value may hold a password: never quote it
        raise AsgardError(f"${name} is not a JSON connection object (a task pod reads connections in JSON form only)")
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            raise AsgardError(f"the extra of ${name} is not a JSON object") from None
    port = data.get("port")
    return ConnectionRecord(
        conn_id=conn_id,
        host=data.get("host"),
        port=int(str(port)) if port not in (None, "") else None,
        login=data.get("login"),
        password=data.get("password"),
        extra=dict(extra),
    )


# Iceberg


def catalog_settings(conn: ConnectionLike) -> CatalogSettings:
    """Catalog settings of an ``asgard_iceberg`` connection (login and password go into a SQL catalog's URI)."""
    extra = conn.extra_dejson
    uri = conn.host or ""
    if conn.login and "://" in uri and "@" not in uri:
        scheme, rest = uri.split("://", 1)
        auth = conn.login + (f":{conn.password}" if conn.password else "")
        uri = f"{scheme}://{auth}@{rest}"
    return CatalogSettings(
        type=extra.get("catalog_type", "sql"),
        uri=uri,
        warehouse=extra.get("warehouse", ""),
        properties={k: str(v) for k, v in (extra.get("properties") or {}).items()},
    )


def open_catalog(settings: CatalogSettings, label: str = CATALOG_NAME) -> Any:
    """Open the pyiceberg catalog (creating a local ``file://`` warehouse folder); ``label`` names it in errors."""
    from pyiceberg.catalog import load_catalog

    props = settings.pyiceberg_properties()
    if props.get("warehouse", "").startswith("file://"):
        Path(props["warehouse"][len("file://") :]).mkdir(parents=True, exist_ok=True)
    try:
        return load_catalog(CATALOG_NAME, **props)
    except Exception as exc:
        raise CatalogError(f"cannot open Iceberg catalog {label!r}: {exc}") from exc


# MLflow


def embedded_mlflow_dir() -> Path:
    """Folder holding the embedded tracking database and artifacts: ``$ASGARD_HOME/mlflow``."""
    return asgard_home() / "mlflow"


@dataclass(frozen=True)
class MLflowSettings:
    """Where MLflow tracks (also the registry) and keeps new experiments' artifacts, and its credentials."""

    tracking_uri: str
    artifact_root: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def embedded(cls) -> MLflowSettings:
        """``sqlite:///$ASGARD_HOME/mlflow/mlflow.db`` with artifacts under ``$ASGARD_HOME/mlflow/artifacts``."""
        home = embedded_mlflow_dir()
        return cls(f"sqlite:///{home / 'mlflow.db'}", (home / "artifacts").as_uri())

    def env(self) -> dict[str, str]:
        """Environment variables that point an MLflow client (e.g. a training subprocess) at this server."""
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_REGISTRY_URI": self.tracking_uri}
        if self.username:
            env["MLFLOW_TRACKING_USERNAME"] = self.username
        if self.password:
            env["MLFLOW_TRACKING_PASSWORD"] = self.password
        return env


def mlflow_settings(conn: ConnectionLike, conn_id: str) -> MLflowSettings:
    """Read an ``asgard_mlflow`` connection: ``host`` is the tracking URL, login/password its basic auth."""
    if not conn.host:
        raise TrainingError(f"connection {conn_id!r} has no host (the MLflow tracking URI)")
    uri = conn.host if "://" in conn.host else f"http://{conn.host}"
    if conn.port and urlport(uri) is None:
        uri = f"{uri.rstrip('/')}:{conn.port}"
    return MLflowSettings(
        tracking_uri=uri,
        artifact_root=conn.extra_dejson.get("artifact_location"),
        username=conn.login or None,
        password=conn.password or None,
    )


def urlport(uri: str) -> int | None:
    """Port of a URL, or ``None`` when it has none."""
    try:
        return urlsplit(uri).port
    except ValueError:
        return None


# Feast


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
    ``sqlite:///path/online.db`` or a path ending in ``.db`` select SQLite (:data:`BULK_SQLITE_TYPE`). A mapping is
    passed through.
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
        return {"type": BULK_SQLITE_TYPE, "path": online_store[len("sqlite:///") :]}
    if online_store.endswith(".db"):
        return {"type": BULK_SQLITE_TYPE, "path": online_store}
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


@dataclass(frozen=True)
class FeastSettings:
    """The ``feature_store.yaml`` contents and the repo folder it is written to."""

    config: dict[str, Any] = field(repr=False)
    repo: Path

    @classmethod
    def embedded(cls) -> FeastSettings:
        """Use the embedded store under ``$ASGARD_HOME/feast``."""
        return cls(build_feature_store_config(), embedded_feast_dir() / "repo")

    @property
    def project(self) -> str:
        """Feast project name."""
        return str(self.config["project"])


def feast_settings(conn: ConnectionLike, conn_id: str) -> FeastSettings:
    """Read an ``asgard_feast`` connection (host/port/password: a Redis online store; the rest in extra)."""
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
        raise FeatureStoreError(f"invalid Feast settings in connection {conn_id!r}: {exc}") from exc
    return FeastSettings(config, Path(extra.get("repo_path") or embedded_feast_dir() / "repo"))


class FeastStore:
    """The Feast store of :class:`FeastSettings`; ``catalog`` supplies the password Iceberg sources omit."""

    def __init__(self, settings: FeastSettings, catalog: CatalogSettings | None = None) -> None:
        self.settings = settings
        self.catalog = catalog

    def repo_path(self) -> Path:
        """Write ``feature_store.yaml`` into the repo folder (if changed, owner-readable only); return the folder."""
        config, repo = self.settings.config, self.settings.repo
        text = yaml.safe_dump(config, sort_keys=False)
        path = repo / "feature_store.yaml"
        try:
            repo.mkdir(parents=True, exist_ok=True)
            registry, online = config["registry"], config["online_store"]
            if registry.get("registry_type") == "file" and "://" not in registry.get("path", "://"):
                Path(registry["path"]).parent.mkdir(parents=True, exist_ok=True)
            if online.get("type") in SQLITE_TYPES and online.get("path"):
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
        """The ``feast.FeatureStore`` (created once)."""
        from feast import FeatureStore

        repo = self.repo_path()
        if self.catalog is not None:  # Iceberg sources in the registry hold the catalog URI without its password
            export_catalog_password(self.catalog)
        try:
            return FeatureStore(repo_path=str(repo))
        except Exception as exc:
            raise FeatureStoreError(f"cannot open Feast store from {repo / 'feature_store.yaml'}: {exc}") from exc

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


@dataclass(frozen=True)
class Stores:
    """Everything a training or scoring engine opens: catalog, MLflow and Feast settings."""

    catalog: CatalogSettings
    mlflow: MLflowSettings
    feast: FeastSettings


def env_stores(
    iceberg_conn_id: str = ICEBERG_CONN_ID,
    mlflow_conn_id: str = MLFLOW_CONN_ID,
    feast_conn_id: str = FEAST_CONN_ID,
    environ: Mapping[str, str] | None = None,
) -> Stores:
    """Resolve the three connections from ``AIRFLOW_CONN_*`` variables, as a task pod does (no Airflow there).

    An undefined default connection means the embedded store; any other undefined connection is an error.
    """

    def conn(conn_id: str, default: str) -> ConnectionRecord | None:
        found = env_connection(conn_id, environ)
        if found is None and conn_id != default:
            raise AsgardError(f"connection {conn_id!r} is not defined (${CONN_ENV_PREFIX}{conn_id.upper()})")
        return found

    catalog = conn(iceberg_conn_id, ICEBERG_CONN_ID)
    mlflow = conn(mlflow_conn_id, MLFLOW_CONN_ID)
    feast = conn(feast_conn_id, FEAST_CONN_ID)
    return Stores(
        catalog=catalog_settings(catalog) if catalog else CatalogSettings.embedded(),
        mlflow=mlflow_settings(mlflow, mlflow_conn_id) if mlflow else MLflowSettings.embedded(),
        feast=feast_settings(feast, feast_conn_id) if feast else FeastSettings.embedded(),
    )
