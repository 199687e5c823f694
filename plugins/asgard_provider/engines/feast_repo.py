"""Feast definitions over Iceberg tables: validate, apply, materialize (no Airflow).

A feature view reads its Gold Iceberg table in place through the shared catalog. Declared features are checked
against the table's schema before anything is applied, so a typo fails with the column's name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from asgard_provider.catalog import CATALOG_NAME, CatalogSettings, export_catalog_password, split_table_name
from asgard_provider.engines.feature_batches import MATERIALIZE_BATCH_ROWS, latest_rows
from asgard_provider.engines.iceberg_tables import load_table
from asgard_provider.exceptions import CatalogError, FeatureStoreError

#: Declared feature dtype -> Iceberg column types it may be read from.
COMPATIBLE_TYPES: dict[str, tuple[str, ...]] = {
    "int32": ("int",),
    "int64": ("int", "long"),
    "float32": ("float", "double"),
    "float64": ("float", "double", "decimal"),
    "string": ("string", "uuid"),
    "bool": ("boolean",),
    "unix_timestamp": ("timestamp", "timestamptz"),
}

_JOIN_KEY_TYPES = {"int": "INT32", "long": "INT64", "string": "STRING", "uuid": "STRING"}
#: Feast value type of a join key -> the config dtype of its schema field.
_KEY_DTYPES = {"INT32": "int32", "INT64": "int64", "STRING": "string"}
_STORE_SECRET = re.compile(r"(access-key|secret|session-token|token)", re.I)
_LOG = logging.getLogger(__name__)


class FeatureStore(Protocol):
    """What the engine needs of a Feast store (:class:`~asgard_provider.hooks.feast.FeastHook` provides it)."""

    @property
    def project(self) -> str:
        """Feast project name."""

    def apply(self, objects: Sequence[Any]) -> None:
        """Register entities, feature views and services."""

    def materialize(self, start: datetime, end: datetime, feature_views: Sequence[str] | None = None) -> None:
        """Load feature values with timestamps in [start, end] into the online store."""

    def get_store(self) -> Any:
        """Return the ``feast.FeatureStore``."""


@dataclass(frozen=True)
class FeatureViewSpec:
    """An entity, a feature view over an Iceberg table and (optionally) a feature service.

    ``features`` are ``{"name": ..., "dtype": ...}`` mappings; ``join_keys`` the entity's key columns (several
    for a composite key such as ``[store_id, sku_id]``).
    """

    feature_view: str
    entity: str
    join_keys: list[str]
    source_table: str
    timestamp_field: str
    features: list[dict[str, str]]
    ttl_days: int = 90
    tags: dict[str, str] = field(default_factory=dict)
    feature_service: str | None = None
    #: registered views the feature service spans beside this one (the views before it in its feature set)
    service_views: tuple[str, ...] = ()

    def feature_refs(self) -> list[str]:
        """Return ``view:feature`` references of every declared feature."""
        return [f"{self.feature_view}:{f['name']}" for f in self.features]

    def entity_names(self) -> list[str]:
        """Name the Feast entity of each key column: ``entity`` itself, or ``<entity>_<key>`` for a composite key.

        Feast gives an entity one join key, so a composite key is one entity per column, all on the view.
        """
        if len(self.join_keys) == 1:
            return [self.entity]
        return [f"{self.entity}_{key}" for key in self.join_keys]


@dataclass(frozen=True)
class Materialized:
    """One materialization: the window loaded into the online store and the entities it holds."""

    feature_view: str
    rows: int | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Registration:
    """What :func:`register` applied, with the source table's column types and the materialization (if any)."""

    project: str
    spec: FeatureViewSpec
    columns: dict[str, str]
    materialized: Materialized | None

    def as_dict(self) -> dict[str, Any]:
        """Return the plain mapping the register task returns (XCom)."""
        result: dict[str, Any] = {
            "project": self.project,
            "entity": self.spec.entity,
            "feature_view": self.spec.feature_view,
            "feature_service": self.spec.feature_service,
            "features": self.spec.feature_refs(),
            "source_table": self.spec.source_table,
            "materialized_rows": None,
        }
        if self.materialized is not None:
            result["materialized_rows"] = self.materialized.rows
            result["materialized_until"] = self.materialized.end.isoformat()
        return result

    def view_fields(self) -> list[tuple[str, str]]:
        """Return (name, type) of the view's join keys and features (its lineage schema)."""
        keys = [(key, self.columns[key]) for key in self.spec.join_keys]
        return keys + [(f["name"], f["dtype"]) for f in self.spec.features]


def feast_type(dtype: str) -> Any:
    """Map a config dtype (``int64``, ``float64``, ``string``…) to a Feast type."""
    from feast import types

    mapping = {
        "int32": types.Int32,
        "int64": types.Int64,
        "float32": types.Float32,
        "float64": types.Float64,
        "string": types.String,
        "bool": types.Bool,
        "unix_timestamp": types.UnixTimestamp,
    }
    if dtype not in mapping:
        raise FeatureStoreError(f"unknown feature dtype {dtype!r} (use one of {', '.join(mapping)})")
    return mapping[dtype]


def iceberg_source(settings: CatalogSettings, table: str, timestamp_field: str) -> Any:
    """Build an ``IcebergSource`` reading ``namespace.table`` through the shared catalog (no copy of the data)."""
    from feast.infra.data_sources.contrib.iceberg_catalog.iceberg_source import IcebergSource

    namespace, name = split_table_name(table)
    common: dict[str, Any] = {
        "name": f"{namespace}_{name}",
        "namespace": namespace,
        "table": name,
        "warehouse": settings.warehouse,
        "timestamp_field": timestamp_field,
        # The SQL catalog keys tables by catalog name: Feast must use the same one as every other engine.
        "catalog_name": CATALOG_NAME,
    }
    if settings.type == "rest":
        return IcebergSource(catalog_type="rest", endpoint=settings.uri, **common)
    # The source is stored in the Feast registry: object-store keys stay out of it, and readers take them from
    # the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, e.g. a Kubernetes Secret).
    # A PostgreSQL catalog's password is kept out of it too: readers take it from PGPASSWORD.
    props = {k: v for k, v in settings.pyiceberg_properties().items() if k != "type" and not _STORE_SECRET.search(k)}
    props["uri"] = settings.split_password()[0]
    return IcebergSource(catalog_type=settings.type, catalog_properties=props, **common)


def register(
    store: FeatureStore,
    catalog: Any,
    settings: CatalogSettings,
    spec: FeatureViewSpec,
    materialize_until: datetime | None = None,
    log: logging.Logger = _LOG,
) -> Registration:
    """Validate ``spec`` against its table, apply the definitions, then materialize up to ``materialize_until``."""
    export_catalog_password(settings)  # the registry stores the catalog URI without it
    columns = validate(catalog, spec)
    objects = definitions(settings, spec, columns, registered_views(store, spec))
    store.apply(objects)
    log.info("registered %s in Feast project %r", ", ".join(o.name for o in objects), store.project)
    done = None
    if materialize_until is not None:
        done = materialize(store, catalog, spec, materialize_until, log)
    return Registration(store.project, spec, columns, done)


def validate(catalog: Any, spec: FeatureViewSpec) -> dict[str, str]:
    """Return {column: iceberg type}; raise naming the table and the missing or mistyped column."""
    if not spec.features:
        raise FeatureStoreError(f"feature view {spec.feature_view!r} declares no features")
    try:
        table = load_table(catalog, spec.source_table)
    except CatalogError as exc:
        raise FeatureStoreError(
            f"source table {spec.source_table} of feature view {spec.feature_view!r} is unavailable: {exc}"
        ) from exc
    columns = {f.name: str(f.field_type).split("(")[0].lower() for f in table.schema().fields}
    problems = _column_problems(spec, columns)
    if problems:
        raise FeatureStoreError(
            f"feature view {spec.feature_view!r} does not match Iceberg table {spec.source_table}: "
            + "; ".join(problems)
            + f" (table columns: {', '.join(columns)})"
        )
    return columns


def _column_problems(spec: FeatureViewSpec, columns: dict[str, str]) -> list[str]:
    problems = []
    required = [*((key, "join key") for key in spec.join_keys), (spec.timestamp_field, "timestamp field")]
    for column, role in required:
        if column not in columns:
            problems.append(f"{role} column {column!r} is missing")
        elif role == "join key" and columns[column] not in _JOIN_KEY_TYPES:
            problems.append(
                f"join key column {column!r} has type {columns[column]}; a key is one of "
                f"{', '.join(sorted(_JOIN_KEY_TYPES))}"
            )
    if spec.timestamp_field in columns and columns[spec.timestamp_field] not in ("timestamp", "timestamptz"):
        problems.append(
            f"timestamp field {spec.timestamp_field!r} has type {columns[spec.timestamp_field]}, not timestamp"
        )
    for feature in spec.features:
        name, dtype = feature.get("name", ""), feature.get("dtype", "")
        feast_type(dtype)
        if name not in columns:
            problems.append(f"feature column {name!r} is missing")
        elif columns[name] not in COMPATIBLE_TYPES[dtype]:
            problems.append(f"feature column {name!r} has type {columns[name]}, which cannot hold dtype {dtype}")
    return problems


def registered_views(store: FeatureStore, spec: FeatureViewSpec) -> list[Any]:
    """Return the registered views ``spec``'s service spans beside its own; raise naming a missing one."""
    views = []
    for name in spec.service_views:
        try:
            views.append(store.get_store().get_feature_view(name))
        except Exception as exc:
            raise FeatureStoreError(
                f"feature service {spec.feature_service!r} of view {spec.feature_view!r} spans feature view "
                f"{name!r}, which is not registered in Feast project {store.project!r}: register it first"
            ) from exc
    return views


def definitions(
    settings: CatalogSettings, spec: FeatureViewSpec, columns: dict[str, str], service_views: Sequence[Any] = ()
) -> list[Any]:
    """Build the Feast entity, feature view and (optional) feature service of ``spec`` (over ``service_views`` too)."""
    from feast import Entity, FeatureService, FeatureView, Field, ValueType

    entities = [
        Entity(name=name, join_keys=[key], value_type=getattr(ValueType, _JOIN_KEY_TYPES[columns[key]]), tags=spec.tags)
        for name, key in zip(spec.entity_names(), spec.join_keys, strict=True)
    ]
    keys = [Field(name=key, dtype=feast_type(_KEY_DTYPES[_JOIN_KEY_TYPES[columns[key]]])) for key in spec.join_keys]
    view = FeatureView(
        name=spec.feature_view,
        entities=entities,
        ttl=timedelta(days=spec.ttl_days),
        schema=keys + [Field(name=f["name"], dtype=feast_type(f["dtype"])) for f in spec.features],
        source=iceberg_source(settings, spec.source_table, spec.timestamp_field),
        online=True,
        tags={**spec.tags, "asgard.source_table": spec.source_table},
    )
    objects: list[Any] = [*entities, view]
    if spec.feature_service:
        objects.append(FeatureService(name=spec.feature_service, features=[*service_views, view], tags=spec.tags))
    return objects


def check_registered(store: FeatureStore, feature_view: str) -> None:
    """Raise :class:`FeatureStoreError` unless ``feature_view`` is registered in the store's project."""
    try:
        store.get_store().get_feature_view(feature_view)
    except Exception as exc:
        raise FeatureStoreError(
            f"feature view {feature_view!r} is not registered in Feast project {store.project!r}: "
            "run the register_features task first"
        ) from exc


def materialize(
    store: FeatureStore,
    catalog: Any,
    spec: FeatureViewSpec,
    end: datetime,
    log: logging.Logger = _LOG,
    batch_rows: int = MATERIALIZE_BATCH_ROWS,
) -> Materialized:
    """Materialize ``[end - ttl, end]`` of ``spec``'s view; return the window and the entities it loaded.

    As ``feast materialize`` does, each entity's latest row in the window goes to the online store and the window
    is recorded in the registry; but the rows stream from the Iceberg table in batches of ``batch_rows``
    (deduplicated in a bounded DuckDB, :func:`~asgard_provider.engines.feature_batches.latest_rows`), so memory
    stays bounded whatever the table's size. Only the view's name, source table, join keys, timestamp field and
    TTL are read from ``spec``; the features are the registered view's.
    """
    start = end - timedelta(days=spec.ttl_days)
    fs = store.get_store()
    view = fs.get_feature_view(spec.feature_view)
    features = [f.name for f in view.features]  # the registered view's: the operator's spec lists none
    rows = 0
    window = (start, end)
    for batch in latest_rows(
        catalog, spec.source_table, spec.join_keys, spec.timestamp_field, features, window, batch_rows
    ):
        try:
            fs.write_to_online_store(spec.feature_view, df=batch.to_pandas(), transform_on_write=False)
        except Exception as exc:
            raise FeatureStoreError(f"writing {spec.feature_view} to the online store failed: {exc}") from exc
        rows += batch.num_rows
    fs.registry.apply_materialization(view, fs.project, start, end)
    log.info("materialized %s entities of %s from %s to %s", rows, spec.feature_view, start, end)
    return Materialized(spec.feature_view, rows, start, end)
