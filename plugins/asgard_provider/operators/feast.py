"""Register a Feast feature view over a Gold Iceberg table and materialize it to the online store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.catalog import export_catalog_password
from asgard_provider.engines import feast_repo
from asgard_provider.engines.feast_repo import FeatureViewSpec
from asgard_provider.exceptions import FeatureStoreError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.lineage import LineageMixin, feast_namespace
from asgard_provider.publishing import Dataset, publish_outcome


def interval_end(context: Context) -> datetime:
    """Return the run's ``data_interval_end`` (else the logical date, else now) as an aware UTC datetime."""
    for key in ("data_interval_end", "logical_date"):
        value: Any = context.get(key)
        if value is not None:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else value
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return datetime.now(UTC)


def key_columns(join_keys: Sequence[str] | None, join_key: str | None, task_id: str) -> list[str]:
    """Return the entity's key columns from ``join_keys`` or its one-column shorthand ``join_key``."""
    if (join_keys is None) == (join_key is None):
        raise FeatureStoreError(f"task {task_id}: give the entity key as join_key or join_keys (exactly one of them)")
    keys = [join_key] if join_key is not None else list(join_keys or [])
    if not keys or len(set(keys)) != len(keys):
        raise FeatureStoreError(f"task {task_id}: join_keys {keys} must name at least one column, each once")
    return [str(key) for key in keys]


class FeastRegisterOperator(LineageMixin, BaseOperator):
    """Register an entity, a feature view over an Iceberg table and (optionally) a feature service.

    The view reads ``source_table`` in place through the shared Iceberg catalog. Declared features are
    checked against the table's schema before anything is applied, so a typo fails with the column's name.
    With ``materialize=True`` the latest values with timestamps in ``[data_interval_end - ttl,
    data_interval_end]`` are loaded into the online store (:func:`asgard_provider.engines.feast_repo.register`).

    :param join_keys: the entity's key columns (``["store_id", "sku_id"]`` for a composite key);
        ``join_key="col"`` is the shorthand of one.
    :param features: ``[{"name": "total_purchases", "dtype": "int64"}, ...]``.
    :param service_views: registered views the ``feature_service`` spans beside this one (the views before it
        in its feature set, registered by earlier tasks).
    """

    template_fields: Sequence[str] = ("source_table",)
    ui_color = "#7b68ee"

    def __init__(
        self,
        *,
        feature_view: str,
        entity: str,
        join_keys: Sequence[str] | None = None,
        join_key: str | None = None,
        source_table: str,
        timestamp_field: str,
        features: Sequence[dict[str, str]],
        ttl_days: int = 90,
        tags: dict[str, str] | None = None,
        feature_service: str | None = None,
        service_views: Sequence[str] = (),
        materialize: bool = True,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_view = feature_view
        self.entity = entity
        self.join_keys = key_columns(join_keys, join_key, self.task_id)
        self.source_table = source_table
        self.timestamp_field = timestamp_field
        self.features = [dict(f) for f in features]
        self.ttl_days = ttl_days
        self.tags = dict(tags or {})
        self.feature_service = feature_service
        self.service_views = list(service_views)
        self.materialize = materialize
        self.iceberg_conn_id = iceberg_conn_id
        self.feast_conn_id = feast_conn_id

    def view_spec(self) -> FeatureViewSpec:
        """Describe the definitions for the engine (``source_table`` as rendered)."""
        return FeatureViewSpec(
            feature_view=self.feature_view,
            entity=self.entity,
            join_keys=self.join_keys,
            source_table=self.source_table,
            timestamp_field=self.timestamp_field,
            features=self.features,
            ttl_days=self.ttl_days,
            tags=self.tags,
            feature_service=self.feature_service,
            service_views=tuple(self.service_views),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate against the table, apply the definitions, materialize; return names and row count."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        feast = FeastHook(self.feast_conn_id)
        until = interval_end(context) if self.materialize else None
        done = feast_repo.register(feast, iceberg.catalog, iceberg.settings, self.view_spec(), until, self.log)
        rows = done.materialized.rows if done.materialized is not None else None
        view = Dataset(self.feature_view, namespace=feast_namespace(done.project), rows=rows, fields=done.view_fields())
        publish_outcome(self, context, read=[Dataset(self.source_table)], wrote=[view], iceberg=iceberg)
        return done.as_dict()


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
        timestamp_field: str,
        join_keys: Sequence[str] | None = None,
        join_key: str | None = None,
        ttl_days: int = 90,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_view = feature_view
        self.source_table = source_table
        self.join_keys = key_columns(join_keys, join_key, self.task_id)
        self.timestamp_field = timestamp_field
        self.ttl_days = ttl_days
        self.iceberg_conn_id = iceberg_conn_id
        self.feast_conn_id = feast_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Materialize the view for this run's window; return the window and the entities it holds."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        feast = FeastHook(self.feast_conn_id)
        export_catalog_password(iceberg.settings)  # the registry stores the catalog URI without it
        feast_repo.check_registered(feast, self.feature_view)
        spec = FeatureViewSpec(
            self.feature_view, "", self.join_keys, self.source_table, self.timestamp_field, [], self.ttl_days
        )
        done = feast_repo.materialize(feast, iceberg.catalog, spec, interval_end(context), self.log)
        online = Dataset(f"{self.feature_view}.online", namespace=feast_namespace(feast.project), rows=done.rows)
        publish_outcome(self, context, read=[Dataset(self.source_table)], wrote=[online], iceberg=iceberg)
        return {
            "project": feast.project,
            "feature_view": self.feature_view,
            "materialized_rows": done.rows,
            "materialized_from": done.start.isoformat(),
            "materialized_until": done.end.isoformat(),
        }
