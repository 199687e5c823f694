"""Hook for the shared Iceberg catalog."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseHook

from asgard_provider.arrow_utils import normalise, normalise_schema
from asgard_provider.catalog import IDENTIFIER_PATTERN, CatalogSettings, split_table_name
from asgard_provider.exceptions import CatalogError

# Asgard's writes replace what a run owns; on a first run that slice is empty, which pyiceberg warns about.
warnings.filterwarnings("ignore", message="Delete operation did not match any records", category=UserWarning)


class IcebergHook(BaseHook):
    """Access the Iceberg catalog named by an Airflow connection of type ``asgard_iceberg``.

    Connection fields: ``host`` holds the catalog URI (SQLAlchemy URL of a SQL catalog, or REST URL),
    extra ``{"catalog_type": "sql"|"rest", "warehouse": "...", "properties": {...}}``; login/password,
    when set, are the credentials of a PostgreSQL SQL catalog. When the default connection is not
    defined, the embedded catalog under ``$ASGARD_HOME`` is used.
    """

    conn_name_attr = "iceberg_conn_id"
    default_conn_name = "asgard_iceberg_default"
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

    @cached_property
    def catalog(self) -> Any:
        """The pyiceberg catalog (``pyiceberg.catalog.Catalog``)."""
        from pyiceberg.catalog import load_catalog

        from asgard_provider.catalog import CATALOG_NAME

        props = self.settings.pyiceberg_properties()
        if props.get("warehouse", "").startswith("file://"):
            from pathlib import Path

            Path(props["warehouse"][len("file://") :]).mkdir(parents=True, exist_ok=True)
        try:
            return load_catalog(CATALOG_NAME, **props)
        except Exception as exc:
            raise CatalogError(f"cannot open Iceberg catalog {self.iceberg_conn_id!r}: {exc}") from exc

    def get_conn(self) -> Any:
        """Return the pyiceberg catalog."""
        return self.catalog

    def ensure_namespace(self, namespace: str) -> None:
        """Create the namespace if it does not exist.

        Tasks that start at once (three ingests into ``bronze``) race between the catalog's existence check and
        its insert; the loser's error (an ``IntegrityError`` from a SQL catalog) means the namespace now exists.
        """
        try:
            self.catalog.create_namespace_if_not_exists(namespace)
        except Exception:
            if not self.catalog.namespace_exists(namespace):
                raise

    def load_table(self, name: str) -> Any:
        """Load ``namespace.table``; raise :class:`CatalogError` naming the table if it is missing."""
        from pyiceberg.exceptions import NoSuchTableError

        namespace, table = split_table_name(name)
        try:
            return self.catalog.load_table((namespace, table))
        except NoSuchTableError as exc:
            raise CatalogError(f"Iceberg table {namespace}.{table} does not exist") from exc

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
    ) -> dict[str, Any]:
        """Write Arrow batches to ``namespace.table`` in ONE Iceberg commit; return rows and snapshot id.

        ``mode="overwrite"`` replaces the whole table, or only rows matching ``overwrite_filter`` (an
        Iceberg filter expression such as ``"as_of_date == '2025-11-11'"``); ``mode="append"`` adds rows.
        New source columns and widened types evolve the table schema; incompatible changes raise
        :class:`CatalogError`. Batches are written to data files as they arrive, so memory stays bounded by
        one batch; nothing becomes visible unless the whole write commits.
        """
        from pyiceberg.exceptions import CommitFailedException, ValidationError

        if mode not in ("overwrite", "append"):
            raise CatalogError(f"unknown write mode {mode!r} for {name} (use 'overwrite' or 'append')")
        namespace, table_name = split_table_name(name)
        it = iter(batches)
        first = next(it, None)
        if first is None and schema is None and not self.table_exists(name):
            raise CatalogError(f"nothing to write to new table {name}: the input had no rows and no schema")
        first_table = normalise(first) if first is not None else None
        if first_table is not None:
            arrow_schema = first_table.schema
        elif schema is not None:
            arrow_schema = normalise_schema(schema)
        else:  # no rows for an existing table: keep its schema (an overwrite then only deletes)
            arrow_schema = self.load_table(name).schema().as_arrow()
        table = self._create_or_load(namespace, table_name, arrow_schema, partition_by)
        props = snapshot_properties or {}
        rows = 0
        try:
            txn = table.transaction()
            self._evolve(txn, arrow_schema, name)
            if mode == "overwrite":
                if overwrite_filter:
                    txn.delete(overwrite_filter, snapshot_properties=props)
                elif first_table is None or first_table.num_rows == 0:
                    txn.delete("True", snapshot_properties=props)
            for position, batch in enumerate(_chain(first_table, it)):
                data = normalise(batch)
                if position > 0 and data.schema != arrow_schema:
                    self._evolve(txn, data.schema, name)
                if data.num_rows == 0:
                    continue
                if mode == "overwrite" and not overwrite_filter and rows == 0:
                    txn.overwrite(data, snapshot_properties=props)
                else:
                    txn.append(data, snapshot_properties=props)
                rows += data.num_rows
            txn.commit_transaction()
        except ValidationError as exc:
            raise CatalogError(f"incompatible schema change for {name}: {exc}") from exc
        except CommitFailedException as exc:
            raise CatalogError(f"concurrent commit to {name} conflicted; retry the task: {exc}") from exc
        table = table.refresh()
        snapshot = table.current_snapshot()
        return {
            "table": f"{namespace}.{table_name}",
            "rows_written": rows,
            "snapshot_id": snapshot.snapshot_id if snapshot else None,
        }

    def _create_or_load(self, namespace: str, table_name: str, schema: pa.Schema, partition_by: Sequence[str]) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        self.ensure_namespace(namespace)
        try:
            return self.catalog.load_table((namespace, table_name))
        except NoSuchTableError:
            pass
        table = self.catalog.create_table_if_not_exists((namespace, table_name), schema=schema)
        if partition_by and table.spec().is_unpartitioned():
            with table.update_spec() as spec:
                for expr in partition_by:
                    column, transform = parse_partition_expression(expr)
                    if column not in schema.names:
                        raise CatalogError(
                            f"partition_by {expr!r} names column {column!r}, which {namespace}.{table_name} lacks"
                        )
                    spec.add_field(column, transform, f"{column}_{transform}".replace("identity", "part"))
            table = table.refresh()
        return table

    @staticmethod
    def _evolve(txn: Any, schema: pa.Schema, name: str) -> None:
        current = txn.table_metadata.schema().as_arrow()
        missing = [f for f in schema if f.name not in current.names]
        changed = [f for f in schema if f.name in current.names and current.field(f.name).type != f.type]
        if not missing and not changed:
            return
        with txn.update_schema() as update:
            update.union_by_name(schema)


def _chain(first: pa.Table | None, rest: Iterator[pa.RecordBatch | pa.Table]) -> Iterator[pa.RecordBatch | pa.Table]:
    if first is not None:
        yield first
    yield from rest


def parse_partition_expression(expr: str) -> tuple[str, Any]:
    """Parse ``col``, ``months(col)``, ``days(col)``, ``bucket(16, col)``… into (column, pyiceberg transform)."""
    from pyiceberg.transforms import (
        BucketTransform,
        DayTransform,
        HourTransform,
        IdentityTransform,
        MonthTransform,
        TruncateTransform,
        YearTransform,
    )

    text = expr.strip()
    match = _PARTITION_EXPR.match(text)
    if not match:
        raise CatalogError(
            f"invalid partition expression {expr!r}: use col, years(col), months(col), "
            "days(col), hours(col), bucket(N, col) or truncate(N, col)"
        )
    func, arg_n, column = match.group("func"), match.group("n"), match.group("col")
    simple = {"years": YearTransform, "months": MonthTransform, "days": DayTransform, "hours": HourTransform}
    if func is None:
        return column, IdentityTransform()
    if func in simple and arg_n is None:
        return column, simple[func]()
    if func == "bucket" and arg_n is not None:
        return column, BucketTransform(int(arg_n))
    if func == "truncate" and arg_n is not None:
        return column, TruncateTransform(int(arg_n))
    raise CatalogError(f"invalid partition expression {expr!r}")


_PARTITION_EXPR = re.compile(
    r"^(?:(?P<func>years|months|days|hours|bucket|truncate)\(\s*(?:(?P<n>\d+)\s*,\s*)?)?"
    rf"(?P<col>{IDENTIFIER_PATTERN})\s*\)?$"
)
