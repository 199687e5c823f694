"""Maintain every Iceberg table of the catalog: expire snapshots, compact data files, remove orphan files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.engines.maintenance import MaintenancePolicy, maintain
from asgard_provider.exceptions import CatalogError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook, local_spark_pool
from asgard_provider.lineage import LineageMixin
from asgard_provider.publishing import Dataset, publish_outcome


class IcebergMaintenanceOperator(LineageMixin, BaseOperator):
    """Run :func:`asgard_provider.engines.maintenance.maintain` on each table of ``namespaces`` (default: all).

    Tables are listed when the task runs, so a table created since the DAG was parsed is maintained too. A table
    whose maintenance fails (a concurrent commit, an unreadable file) does not stop the others; the task fails
    at the end naming every such table. Each table's footprint before and after is logged and returned.
    """

    template_fields: Sequence[str] = ("namespaces",)
    ui_color = "#b0c4de"

    def __init__(
        self,
        *,
        namespaces: Sequence[str] = (),
        policy: MaintenancePolicy | None = None,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        spark_conn_id: str = SparkHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", local_spark_pool())
        super().__init__(**kwargs)
        self.namespaces = list(namespaces)
        self.policy = policy or MaintenancePolicy()
        self.iceberg_conn_id = iceberg_conn_id
        self.spark_conn_id = spark_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Maintain every table; return ``{table: {before, after, rewritten_files, ...}}``."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        catalog = iceberg.catalog
        namespaces = [(ns,) for ns in self.namespaces] or sorted(catalog.list_namespaces())
        tables = [".".join(ident) for ns in namespaces for ident in sorted(catalog.list_tables(ns))]
        spark = SparkHook(self.spark_conn_id).get_session(iceberg.settings)
        now = datetime.now(UTC)
        results: dict[str, Any] = {}
        failed: list[str] = []
        for name in tables:
            try:
                done = maintain(spark, catalog, name, self.policy, now, self.log)
            except CatalogError as exc:
                self.log.error("%s", exc)
                failed.append(str(exc))
                continue
            results[name] = asdict(done)
        publish_outcome(self, context, read=[Dataset(name) for name in results], iceberg=iceberg)
        if failed:
            raise CatalogError(f"maintenance failed for {len(failed)} of {len(tables)} tables: " + "; ".join(failed))
        return results
