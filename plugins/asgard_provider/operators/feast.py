"""Register a Feast feature view over a Gold Iceberg table and materialize it to the online store."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.catalog import CATALOG_NAME, CatalogSettings, export_catalog_password, split_table_name
from asgard_provider.exceptions import CatalogError, FeatureStoreError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.lineage import LineageMixin, feast_namespace

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


_STORE_SECRET = re.compile(r"(access-key|secret|session-token|token)", re.I)


def interval_end(context: Context) -> datetime:
    """Return the run's ``data_interval_end`` (else the logical date, else now) as an aware UTC datetime."""
    for key in ("data_interval_end", "logical_date"):
        value: Any = context.get(key)
        if value is not None:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else value
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return datetime.now(UTC)


class FeastRegisterOperator(LineageMixin, BaseOperator):
    """Register an entity, a feature view over an Iceberg table and (optionally) a feature service.

    The view reads ``source_table`` in place through the shared Iceberg catalog. Declared features are
    checked against the table's schema before anything is applied, so a typo fails with the column's name.
    With ``materialize=True`` the latest values with timestamps in ``[data_interval_end - ttl,
    data_interval_end]`` are loaded into the online store.

    :param features: ``[{"name": "total_purchases", "dtype": "int64"}, ...]``.
    """

    template_fields: Sequence[str] = ("source_table",)
    ui_color = "#7b68ee"

    def __init__(
        self,
        *,
        feature_view: str,
        entity: str,
        join_key: str,
        source_table: str,
        timestamp_field: str,
        features: Sequence[dict[str, str]],
        ttl_days: int = 90,
        tags: dict[str, str] | None = None,
        feature_service: str | None = None,
        materialize: bool = True,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_view = feature_view
        self.entity = entity
        self.join_key = join_key
        self.source_table = source_table
        self.timestamp_field = timestamp_field
        self.features = [dict(f) for f in features]
        self.ttl_days = ttl_days
        self.tags = dict(tags or {})
        self.feature_service = feature_service
        self.materialize = materialize
        self.iceberg_conn_id = iceberg_conn_id
        self.feast_conn_id = feast_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate against the table, apply the definitions, materialize; return names and row count."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        export_catalog_password(iceberg.settings)  # the registry stores the catalog URI without it
        columns = self._validate(iceberg)
        objects = self._definitions(iceberg.settings, columns)
        feast = FeastHook(self.feast_conn_id)
        feast.apply(objects)
        self.log.info("registered %s in Feast project %r", ", ".join(o.name for o in objects), feast.project)
        self.lineage_input(self.source_table, table=iceberg.load_table(self.source_table))
        result: dict[str, Any] = {
            "project": feast.project,
            "entity": self.entity,
            "feature_view": self.feature_view,
            "feature_service": self.feature_service,
            "features": [f"{self.feature_view}:{f['name']}" for f in self.features],
            "source_table": self.source_table,
            "materialized_rows": None,
        }
        if self.materialize:
            rows, _, end = materialize_window(
                feast,
                iceberg,
                self.feature_view,
                self.source_table,
                self.join_key,
                self.timestamp_field,
                self.ttl_days,
                context,
                self.log,
            )
            result["materialized_rows"] = rows
            result["materialized_until"] = end.isoformat()
        self.lineage_output(
            self.feature_view,
            namespace=feast_namespace(feast.project),
            rows=result["materialized_rows"],
            fields=[(self.join_key, columns[self.join_key])] + [(f["name"], f["dtype"]) for f in self.features],
        )
        return result

    def _validate(self, iceberg: IcebergHook) -> dict[str, str]:
        """Return {column: iceberg type}; raise naming the table and the missing or mistyped column."""
        if not self.features:
            raise FeatureStoreError(f"feature view {self.feature_view!r} declares no features")
        try:
            table = iceberg.load_table(self.source_table)
        except CatalogError as exc:
            raise FeatureStoreError(
                f"source table {self.source_table} of feature view {self.feature_view!r} is unavailable: {exc}"
            ) from exc
        columns = {f.name: str(f.field_type).split("(")[0].lower() for f in table.schema().fields}
        problems = []
        for required, role in ((self.join_key, "join key"), (self.timestamp_field, "timestamp field")):
            if required not in columns:
                problems.append(f"{role} column {required!r} is missing")
        if self.timestamp_field in columns and columns[self.timestamp_field] not in ("timestamp", "timestamptz"):
            problems.append(
                f"timestamp field {self.timestamp_field!r} has type {columns[self.timestamp_field]}, not timestamp"
            )
        for feature in self.features:
            name, dtype = feature.get("name", ""), feature.get("dtype", "")
            feast_type(dtype)
            if name not in columns:
                problems.append(f"feature column {name!r} is missing")
            elif columns[name] not in COMPATIBLE_TYPES[dtype]:
                problems.append(f"feature column {name!r} has type {columns[name]}, which cannot hold dtype {dtype}")
        if problems:
            raise FeatureStoreError(
                f"feature view {self.feature_view!r} does not match Iceberg table {self.source_table}: "
                + "; ".join(problems)
                + f" (table columns: {', '.join(columns)})"
            )
        return columns

    def _definitions(self, settings: CatalogSettings, columns: dict[str, str]) -> list[Any]:
        from feast import Entity, FeatureService, FeatureView, Field, ValueType

        key_type = _JOIN_KEY_TYPES.get(columns[self.join_key])
        entity = Entity(
            name=self.entity,
            join_keys=[self.join_key],
            value_type=getattr(ValueType, key_type) if key_type else None,
            tags=self.tags,
        )
        view = FeatureView(
            name=self.feature_view,
            entities=[entity],
            ttl=timedelta(days=self.ttl_days),
            schema=[Field(name=f["name"], dtype=feast_type(f["dtype"])) for f in self.features],
            source=iceberg_source(settings, self.source_table, self.timestamp_field),
            online=True,
            tags={**self.tags, "asgard.source_table": self.source_table},
        )
        objects: list[Any] = [entity, view]
        if self.feature_service:
            objects.append(FeatureService(name=self.feature_service, features=[view], tags=self.tags))
        return objects


def materialize_window(
    feast: FeastHook,
    iceberg: IcebergHook,
    feature_view: str,
    table: str,
    join_key: str,
    timestamp_field: str,
    ttl_days: int,
    context: Context,
    log: Any,
) -> tuple[int | None, datetime, datetime]:
    """Materialize ``[data_interval_end - ttl, data_interval_end]``; return the entities loaded and the window."""
    end = interval_end(context)
    start = end - timedelta(days=ttl_days)
    feast.materialize(start, end, [feature_view])
    rows = _entities_in_window(iceberg, table, join_key, timestamp_field, start, end, log)
    log.info("materialized %s entities of %s from %s to %s", rows, feature_view, start, end)
    return rows, start, end


def _entities_in_window(
    iceberg: IcebergHook, table: str, join_key: str, timestamp_field: str, start: datetime, end: datetime, log: Any
) -> int | None:
    """Count entities of ``table`` with a row whose timestamp is in [start, end] (``None`` if unreadable)."""
    import pyarrow.compute as pc

    try:
        data = iceberg.load_table(table).scan(selected_fields=(join_key, timestamp_field)).to_arrow()
    except Exception as exc:  # the count is informative only; materialization already succeeded
        log.warning("could not count materialized rows of %s: %s", table, exc)
        return None
    ts = data.column(timestamp_field)
    if ts.type.tz is None:  # type: ignore[attr-defined]
        bounds = (start.replace(tzinfo=None), end.replace(tzinfo=None))
    else:
        bounds = (start, end)
    mask = pc.and_(pc.greater_equal(ts, bounds[0]), pc.less_equal(ts, bounds[1]))
    return len(pc.unique(data.filter(mask).column(join_key)))


class FeastMaterializeOperator(LineageMixin, BaseOperator):
    """Load a registered feature view's latest values into the online store.

    Materializes timestamps in ``[data_interval_end - ttl, data_interval_end]``. The batch path (training,
    batch inference) reads the offline store, so the factory runs this task beside training, not before it.
    """

    template_fields: Sequence[str] = ("source_table",)
    ui_color = "#9b88ff"

    def __init__(
        self,
        *,
        feature_view: str,
        source_table: str,
        join_key: str,
        timestamp_field: str,
        ttl_days: int = 90,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_view = feature_view
        self.source_table = source_table
        self.join_key = join_key
        self.timestamp_field = timestamp_field
        self.ttl_days = ttl_days
        self.iceberg_conn_id = iceberg_conn_id
        self.feast_conn_id = feast_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Materialize the view for this run's window; return the window and the entities it holds."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        export_catalog_password(iceberg.settings)  # the registry stores the catalog URI without it
        feast = FeastHook(self.feast_conn_id)
        try:
            feast.get_store().get_feature_view(self.feature_view)
        except Exception as exc:
            raise FeatureStoreError(
                f"feature view {self.feature_view!r} is not registered in Feast project {feast.project!r}: "
                "run the register_features task first"
            ) from exc
        rows, start, end = materialize_window(
            feast,
            iceberg,
            self.feature_view,
            self.source_table,
            self.join_key,
            self.timestamp_field,
            self.ttl_days,
            context,
            self.log,
        )
        self.lineage_input(self.source_table, table=iceberg.load_table(self.source_table))
        self.lineage_output(f"{self.feature_view}.online", namespace=feast_namespace(feast.project), rows=rows)
        return {
            "project": feast.project,
            "feature_view": self.feature_view,
            "materialized_rows": rows,
            "materialized_from": start.isoformat(),
            "materialized_until": end.isoformat(),
        }
