"""dbt-duckdb plugin: read Iceberg sources and commit ``materialized='external'`` models to Iceberg.

Declared in a profile as ``plugins: [{module: asgard_provider.dbt.duckdb_plugin, alias: asgard_iceberg}]``.

* Sources whose ``meta.plugin`` is the alias are scanned with pyiceberg (``meta.iceberg_table`` names the table,
  default ``<schema>.<identifier>``; ``meta.row_filter`` / ``meta.selected_fields`` narrow the scan).
* Models with ``config(materialized='external', plugin='asgard_iceberg', iceberg_table=...)``: after dbt-duckdb
  writes the model's Parquet file, :meth:`Plugin.store` commits it to the Iceberg table in one snapshot.
  ``iceberg_replace_column`` replaces only the partitions (values of that column) present in the output, so
  a rerun replaces what it rebuilt and never duplicates rows; without it the whole table is replaced.
* Write-audit-publish: when the task's environment names the Airflow run (``ASGARD_WAP_RUN_ID``) and the table
  is one of ``ASGARD_WAP_TABLES``, the commit goes to the run's branch, not main; the stage's checks publish it
  after the model's dbt tests (which read the staged Parquet file) and the checks pass. The replaced slice is
  recorded in the snapshot (:data:`~asgard_provider.engines.wap.REPLACE_PROPERTY`), so a run that another run
  overtook can still publish by replaying it onto the new main.

The catalog is the one behind the Airflow connection ``iceberg_conn_id`` (embedded catalog by default).
"""

from __future__ import annotations

import contextlib
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig

from asgard_provider.dbt.cosmos import WAP_RETENTION_ENV, WAP_RUN_ENV, WAP_TABLES_ENV
from asgard_provider.engines import wap
from asgard_provider.exceptions import TransformError

_SCAN_KEYS = ("row_filter", "selected_fields", "snapshot_id", "limit")
#: Parquet files a model run wrote before committing them to Iceberg are kept this long (for debugging).
SCRATCH_KEEP_SECONDS = 24 * 3600.0


class Plugin(BasePlugin):
    """Iceberg reader and writer for dbt-duckdb."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """Remember the Airflow connection of the catalog; nothing is opened until a source or model needs it."""
        self._conn_id = str(plugin_config.get("iceberg_conn_id") or "asgard_iceberg_default")
        self._hook: Any = None
        root = getattr(self.creds, "external_root", None)
        if root and "://" not in root:
            _prepare_scratch(Path(root))

    @property
    def hook(self) -> Any:
        """The :class:`~asgard_provider.hooks.iceberg.IcebergHook` of the configured connection."""
        if self._hook is None:
            from asgard_provider.hooks.iceberg import IcebergHook

            self._hook = IcebergHook(self._conn_id)
        return self._hook

    def load(self, source_config: SourceConfig) -> pa.Table | pa.RecordBatchReader:
        """Scan the source's Iceberg table into Arrow.

        A source materialized as a table (``meta.materialization``, dbt-duckdb's default) is streamed in record
        batches, which DuckDB copies within its memory limit; a view needs the whole Arrow table (re-scanned).
        """
        name = source_config.get("iceberg_table") or f"{source_config.schema}.{source_config.identifier}"
        scan = {key: source_config[key] for key in _SCAN_KEYS if key in source_config}
        if "selected_fields" in scan:
            scan["selected_fields"] = tuple(scan["selected_fields"])
        try:
            table = self.hook.load_table(name)
            materialization = source_config.meta.get("materialization", self.default_materialization())
            rows = table.scan(**scan)
            return rows.to_arrow_batch_reader() if materialization == "table" else rows.to_arrow()
        except TransformError:
            raise
        except Exception as exc:
            raise TransformError(
                f"dbt source {source_config.schema}.{source_config.identifier}: cannot read Iceberg table {name}: {exc}"
            ) from exc

    def store(self, target_config: TargetConfig) -> None:
        """Commit the model's Parquet output to its Iceberg table (see the module docstring for the options)."""
        config = target_config.config
        relation = target_config.relation
        model = f"{relation.schema}.{relation.identifier}"
        name = _config_get(config, "iceberg_table") or model
        if target_config.location is None:
            raise TransformError(f"dbt model {model}: dbt-duckdb passed no output location to store")
        data = _drop_placeholder_row(pq.read_table(target_config.location.path))
        replace_column = _config_get(config, "iceberg_replace_column")
        overwrite_filter = None
        if replace_column:
            if replace_column not in data.column_names:
                raise TransformError(
                    f"dbt model {model}: iceberg_replace_column {replace_column!r} is not one of its columns "
                    f"{data.column_names}"
                )
            values = pc.unique(data[replace_column]).to_pylist()
            if not values:
                raise TransformError(
                    f"dbt model {model} produced no rows, so there is no {replace_column} partition to replace in "
                    f"{name}; check the model's inputs and vars"
                )
            if any(v is None for v in values):
                raise TransformError(f"dbt model {model}: {replace_column} is NULL in some rows")
            overwrite_filter = _in_filter(replace_column, values)
        partition_by = _config_get(config, "iceberg_partition_by") or []
        if isinstance(partition_by, str):
            partition_by = [partition_by]
        props = {"asgard.writer": "dbt", "asgard.dbt_model": model}
        branch, run_id, retain_days = run_target(name)
        if branch:
            props[wap.RUN_PROPERTY] = run_id
        if branch and overwrite_filter:
            props[wap.REPLACE_PROPERTY] = overwrite_filter
        result = self.hook.write(
            name,
            [data],
            mode="overwrite",
            overwrite_filter=overwrite_filter,
            partition_by=list(partition_by),
            snapshot_properties=props,
            branch=branch,
            branch_retention_days=retain_days,
        )
        from dbt.adapters.events.logging import AdapterLogger

        AdapterLogger("asgard").info(
            f"committed {result['rows_written']} rows of {model} to Iceberg {result['table']} "
            f"{'branch ' + branch if branch else 'main'} (snapshot {result['snapshot_id']}, replaced "
            f"{overwrite_filter or 'whole table'})"
        )

    def default_materialization(self) -> str:
        """Register loaded sources as views over the Arrow data (no copy into DuckDB)."""
        return "view"


def run_target(table: str) -> tuple[str | None, str, int]:
    """Return the branch a store of ``table`` commits on (``None``: main), the run id and the branch retention."""
    import os

    from asgard_provider.catalog import split_table_name

    run_id = os.environ.get(WAP_RUN_ENV, "")
    tables = {".".join(split_table_name(t)) for t in os.environ.get(WAP_TABLES_ENV, "").split(",") if t.strip()}
    days = int(os.environ.get(WAP_RETENTION_ENV) or wap.BRANCH_RETENTION_DAYS)
    if not run_id or ".".join(split_table_name(table)) not in tables:
        return None, run_id, days
    return wap.run_branch(run_id), run_id, days


def _prepare_scratch(root: Path, keep_seconds: float = SCRATCH_KEEP_SECONDS) -> None:
    """Create the Parquet scratch folder and drop files earlier runs left there (committed long ago)."""
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep_seconds
    for path in root.glob("*.parquet"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _config_get(config: Any, key: str) -> Any:
    """Read a model config value from dbt's config object or a plain dict."""
    if isinstance(config, dict):
        return config.get(key)
    getter = getattr(config, "get", None)
    return getter(key) if getter else None


def _drop_placeholder_row(data: pa.Table) -> pa.Table:
    """dbt-duckdb writes one all-NULL row when a model is empty; that row is not data."""
    if data.num_rows != 1:
        return data
    if all(data.column(i).null_count == 1 for i in range(data.num_columns)):
        return data.slice(0, 0)
    return data


def _literal(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _in_filter(column: str, values: list[Any]) -> str:
    """Iceberg filter expression ``column IN (...)`` for the given values."""
    return f"{column} IN ({', '.join(_literal(v) for v in sorted(values))})"
