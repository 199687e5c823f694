"""Hook for the shared Iceberg catalog."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseHook

from asgard_provider.catalog import CatalogSettings, split_table_name
from asgard_provider.engines import iceberg_tables
from asgard_provider.engines.iceberg_tables import parse_partition_expression, write_batches
from asgard_provider.engines.stores import ICEBERG_CONN_ID, catalog_settings, open_catalog
from asgard_provider.exceptions import CatalogError

__all__ = ["IcebergHook", "parse_partition_expression"]


class IcebergHook(BaseHook):
    """Access the Iceberg catalog named by an Airflow connection of type ``asgard_iceberg``.

    Connection fields: ``host`` holds the catalog URI (SQLAlchemy URL of a SQL catalog, or REST URL),
    extra ``{"catalog_type": "sql"|"rest", "warehouse": "...", "properties": {...}}``; login/password,
    when set, are the credentials of a PostgreSQL SQL catalog. When the default connection is not
    defined, the embedded catalog under ``$ASGARD_HOME`` is used.
    """

    conn_name_attr = "iceberg_conn_id"
    default_conn_name = ICEBERG_CONN_ID
    conn_type = "asgard_iceberg"
    hook_name = "Iceberg catalog (Asgard)"

    def __init__(self, iceberg_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.iceberg_conn_id = iceberg_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic connection form for a catalog."""
        from asgard_provider.connections import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def settings(self) -> CatalogSettings:
        """Catalog settings from the connection (or the embedded default)."""
        try:
            conn = self.get_connection(self.iceberg_conn_id)
        except Exception as exc:
            if self.iceberg_conn_id == self.default_conn_name:
                return CatalogSettings.embedded()
            raise CatalogError(f"Airflow connection {self.iceberg_conn_id!r} is not defined") from exc
        return catalog_settings(conn)

    @cached_property
    def catalog(self) -> Any:
        """The pyiceberg catalog (``pyiceberg.catalog.Catalog``)."""
        return open_catalog(self.settings, self.iceberg_conn_id)

    def get_conn(self) -> Any:
        """Return the pyiceberg catalog."""
        return self.catalog

    def ensure_namespace(self, namespace: str) -> None:
        """Create the namespace if it does not exist.

        Tasks that start at once (three ingests into ``bronze``) race between the catalog's existence check and
        its insert; the loser's error (an ``IntegrityError`` from a SQL catalog) means the namespace now exists.
        """
        iceberg_tables.ensure_namespace(self.catalog, namespace)

    def load_table(self, name: str) -> Any:
        """Load ``namespace.table``; raise :class:`CatalogError` naming the table if it is missing."""
        return iceberg_tables.load_table(self.catalog, name)

    def table_exists(self, name: str) -> bool:
        """Whether ``namespace.table`` exists."""
        return bool(self.catalog.table_exists(split_table_name(name)))

    def test_connection(self) -> tuple[bool, str]:
        """List namespaces to prove the catalog answers."""
        try:
            namespaces = self.catalog.list_namespaces()
        except Exception as exc:
            return False, str(exc)
        return True, f"catalog reachable, {len(namespaces)} namespaces"

    def write(
        self,
        name: str,
        batches: Iterable[pa.RecordBatch | pa.Table],
        *,
        mode: str = "overwrite",
        overwrite_filter: str | None = None,
        partition_by: Sequence[str] = (),
        schema: pa.Schema | None = None,
        snapshot_properties: dict[str, str] | None = None,
        branch: str | None = None,
        branch_retention_days: int | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Write Arrow batches to ``namespace.table`` in ONE Iceberg commit; return rows and snapshot id.

        See :func:`asgard_provider.engines.iceberg_tables.write_batches` for the modes, schema evolution and
        ``branch``/``run_id`` (write-audit-publish: the commit goes to the run's branch, main is untouched).
        """
        return write_batches(
            self.catalog,
            name,
            batches,
            mode=mode,
            overwrite_filter=overwrite_filter,
            partition_by=partition_by,
            schema=schema,
            snapshot_properties=snapshot_properties,
            branch=branch,
            branch_retention_days=branch_retention_days,
            run_id=run_id,
        ).as_dict()
