"""Spark SQL transforms from Iceberg tables into Iceberg tables, with rejected rows routed to a quarantine table."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator, Context

from asgard_provider.assets import publish
from asgard_provider.catalog import CATALOG_NAME, split_table_name
from asgard_provider.catalog import IDENTIFIER as _IDENT
from asgard_provider.exceptions import TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook, SparkProgress, local_spark_pool
from asgard_provider.lineage import LineageMixin
from asgard_provider.links import SPARK_UI_XCOM, SparkUILink, push
from asgard_provider.paths import PathEscapeError, contained
from asgard_provider.settings import include_dir

if TYPE_CHECKING:
    import jinja2
    from pyspark.sql import DataFrame, SparkSession

#: Column a transform's SELECT sets to a reason string for rows that must not reach the output table.
REJECTED_REASON = "_rejected_reason"
MODES = ("overwrite", "append", "merge")

_LINE_POS = re.compile(r"line (\d+),? pos (\d+)")
# Parsed plans that Spark would execute as soon as spark.sql() is called: only queries are allowed.
_EAGER_PLAN_CLASSES = (
    "org.apache.spark.sql.catalyst.plans.logical.Command",
    "org.apache.spark.sql.catalyst.plans.logical.ParsedStatement",
)


def sql_dir() -> Path:
    """Folder that relative ``sql`` paths are resolved against: ``include/sql``."""
    return include_dir() / "sql"


class SparkIcebergTransformOperator(LineageMixin, BaseOperator):
    """Run one Spark SQL SELECT over Iceberg tables and write its result to an Iceberg table.

    Tables are addressed as ``iceberg.<namespace>.<table>`` in the SQL. When the SELECT returns a
    ``_rejected_reason`` column, rows where it is NULL go to ``output_table`` (without that column) and the
    others, reason included, go to ``quarantine_table``.

    :param sql: a ``.sql`` file (relative to ``include/sql/`` or absolute) or inline SQL; rendered with Jinja
        (Airflow context, plus ``sql_params`` as ``{{ sql_params.<name> }}``).
    :param output_table: ``namespace.table`` to write.
    :param mode: ``overwrite`` (atomic replace, table recreated with the partition spec), ``append`` or
        ``merge`` (``MERGE INTO`` on ``merge_keys``: matched rows updated, others inserted).
    :param partition_by: columns or Iceberg transforms: ``country``, ``months(transaction_date)``,
        ``days(ts)``, ``bucket(16, customer_id)``, ``truncate(4, code)``; applied when the table is created.
    :param merge_keys: columns identifying a row (required for ``merge``).
    :param quarantine_table: where rejected rows go; default ``<output_table>_quarantine``. Replaced in
        ``overwrite`` mode, appended to otherwise.
    :param sql_params: values for the SQL template (templated).
    """

    template_fields: Sequence[str] = ("sql", "output_table", "quarantine_table", "sql_params")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "sql_params": "json"}
    ui_color = "#e25a1c"
    operator_extra_links = (SparkUILink(),)

    def __init__(
        self,
        *,
        sql: str,
        output_table: str,
        mode: str = "overwrite",
        partition_by: Sequence[str] = (),
        merge_keys: Sequence[str] = (),
        quarantine_table: str | None = None,
        sql_params: dict[str, Any] | None = None,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        spark_conn_id: str = SparkHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", local_spark_pool())
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"{self.task_id}: mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "merge" and not merge_keys:
            raise ValueError(f"{self.task_id}: mode 'merge' needs merge_keys (the columns identifying a row)")
        bad_keys = [k for k in merge_keys if not _IDENT.match(k)]
        if bad_keys:
            raise ValueError(f"{self.task_id}: merge_keys {bad_keys} are not plain column names")
        self.sql = sql
        self.output_table = output_table
        self.mode = mode
        self.partition_by = list(partition_by)
        self.merge_keys = list(merge_keys)
        self.quarantine_table = quarantine_table
        self.sql_params = dict(sql_params or {})
        self.iceberg_conn_id = iceberg_conn_id
        self.spark_conn_id = spark_conn_id
        # Remember where the SQL came from: rendering replaces self.sql with the file's text.
        self.sql_source = sql.strip() if _is_sql_path(sql) else "<inline SQL>"
        self._rendered = False

    # ------------------------------------------------------------------------------------------- templating

    def get_template_env(self, dag: Any = None) -> jinja2.Environment:
        """Airflow's environment, also finding SQL files under include/sql/ and by absolute path."""
        return _with_sql_loader(super().get_template_env(dag))

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render sql_params first, then the SQL with ``sql_params`` added to the context."""
        import jinja2

        env = _with_sql_loader(jinja_env) if jinja_env is not None else self.get_template_env()
        others = [f for f in self.template_fields if f != "sql"]
        self._do_render_template_fields(self, others, context, env, set())
        sql_context = cast("Context", {**context, "sql_params": self.sql_params})
        check_sql_path(self.task_id, self.sql)
        try:
            self._do_render_template_fields(self, ["sql"], sql_context, env, set())
        except jinja2.TemplateNotFound as exc:
            raise TransformError(
                f"SQL file {self.sql_source} not found (relative paths are resolved under {sql_dir()})"
            ) from exc
        except jinja2.TemplateError as exc:
            lineno = getattr(exc, "lineno", None)
            line = f" line {lineno}" if lineno else ""
            raise TransformError(f"cannot render SQL {self.sql_source}{line}: {exc}") from exc
        self._rendered = True

    # ------------------------------------------------------------------------------------------- execution

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the SELECT, write output and quarantine tables; return table, row counts and snapshot id."""
        if not self._rendered:
            self.render_template_fields(context)
        iceberg = IcebergHook(self.iceberg_conn_id)
        started = time.monotonic()
        self.log.info("starting the Spark session (a new JVM in a fresh task process takes 10-30s)")
        spark = SparkHook(self.spark_conn_id).get_session(iceberg.settings)
        self.log.info("Spark session ready in %.1fs (%s)", time.monotonic() - started, spark.sparkContext.master)
        with SparkProgress(spark, self.sql_source, self.log):
            result = self.run_transform(spark)
        output, quarantine = result["output_table"], result["quarantine_table"]
        snapshot = iceberg.load_table(output).current_snapshot()
        result["snapshot_id"] = snapshot.snapshot_id if snapshot is not None else None
        publish(context, output, snapshot_id=result["snapshot_id"], rows_written=result["rows_written"], mode=self.mode)
        if quarantine is not None:
            publish(context, quarantine, rows_written=result["rows_quarantined"], quarantine_of=output)
        report_transform_lineage(self, iceberg, result)
        push(context, SPARK_UI_XCOM, spark.sparkContext.uiWebUrl)
        return result

    def run_transform(self, spark: SparkSession) -> dict[str, Any]:
        """Run the rendered SELECT in ``spark`` and write output and quarantine tables; return table and row counts.

        Used by :meth:`execute` and by the driver of a SparkApplication (``asgard_provider.spark_driver``).
        """
        output = ".".join(split_table_name(self.output_table))
        df = self._analyse(spark, self.sql)
        input_tables = read_tables(df)
        has_reason = REJECTED_REASON in df.columns
        quarantine = self._quarantine_name(output, has_reason)
        columns = [c for c in df.columns if c != REJECTED_REASON]
        self._check_columns(columns)
        partitions = [self._partition_sql(expr, columns) for expr in self.partition_by]

        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        # Materialise the result once, so the output and quarantine splits see the same rows.
        data = df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            if has_reason:
                counts = self._run(
                    lambda: data.agg(
                        F.count(F.when(F.col(REJECTED_REASON).isNull(), 1)).alias("ok"),
                        F.count(F.col(REJECTED_REASON)).alias("rejected"),
                    ).collect()[0],
                    f"running {self.sql_source}",
                )
                rows_written, rows_quarantined = int(counts["ok"]), int(counts["rejected"])
                out_df = data.where(F.col(REJECTED_REASON).isNull()).drop(REJECTED_REASON)
            else:
                rows_written = self._run(data.count, f"running {self.sql_source}")
                rows_quarantined = 0
                out_df = data
            if self.mode == "merge":
                self._check_unique_keys(out_df, output)
            self._ensure_namespace(spark, output)
            self._write(spark, out_df, output, self.mode, partitions, rows_written)
            if quarantine is not None:
                rejected = data.where(F.col(REJECTED_REASON).isNotNull())
                quarantine_mode = "overwrite" if self.mode == "overwrite" else "append"
                self._ensure_namespace(spark, quarantine)
                self._write(spark, rejected, quarantine, quarantine_mode, [], rows_quarantined)
        finally:
            data.unpersist()

        self.log.info(
            "%s -> %s (%s): %d rows written, %d quarantined%s",
            self.sql_source,
            output,
            self.mode,
            rows_written,
            rows_quarantined,
            f" in {quarantine}" if quarantine else "",
        )
        return {
            "output_table": output,
            "rows_written": rows_written,
            "rows_quarantined": rows_quarantined,
            "quarantine_table": quarantine,
            "input_tables": input_tables,
        }

    def _analyse(self, spark: SparkSession, sql: str) -> DataFrame:
        """Parse and analyse the query (no data is read or written); engine errors become TransformError."""
        text = sql.rstrip().rstrip(";").rstrip()
        if not text.strip():
            raise TransformError(f"SQL {self.sql_source} is empty")
        try:
            plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(text)
        except Exception as exc:
            raise TransformError(self._engine_message(exc, "syntax error in")) from exc
        kind = _eager_plan_kind(spark, plan)
        if kind:
            raise TransformError(
                f"SQL {self.sql_source} is a {kind} statement; a transform must be a single SELECT "
                "(the operator writes the output table itself)"
            )
        try:
            return spark.sql(text)
        except Exception as exc:
            raise TransformError(self._engine_message(exc, "invalid SQL in")) from exc

    def _engine_message(self, exc: BaseException, what: str) -> str:
        message = _short_message(exc)
        match = _LINE_POS.search(message)
        where = f" (line {match.group(1)}, position {match.group(2)})" if match else ""
        return f"{what} {self.sql_source}{where}: {message}"

    def _run(self, action: Any, what: str) -> Any:
        try:
            return action()
        except Exception as exc:
            raise TransformError(f"{what} failed: {_short_message(exc)}") from exc

    def _quarantine_name(self, output: str, has_reason: bool) -> str | None:
        if not has_reason:
            if self.quarantine_table:
                self.log.warning(
                    "quarantine_table %s is set but %s returns no %s column: nothing to quarantine",
                    self.quarantine_table,
                    self.sql_source,
                    REJECTED_REASON,
                )
            return None
        name = self.quarantine_table or f"{output}_quarantine"
        quarantine = ".".join(split_table_name(name))
        if quarantine == output:
            raise TransformError(f"quarantine_table {quarantine} is the output table itself")
        return quarantine

    def _check_columns(self, columns: list[str]) -> None:
        seen: dict[str, str] = {}
        for name in columns:
            if name.lower() in seen:
                raise TransformError(f"{self.sql_source} returns column {name!r} twice; alias one of them")
            seen[name.lower()] = name
        missing = [k for k in self.merge_keys if k.lower() not in seen]
        if missing:
            raise TransformError(f"merge_keys {missing} are not columns of {self.sql_source} ({', '.join(columns)})")

    def _partition_sql(self, expr: str, columns: list[str]) -> str:
        """Translate ``months(col)``, ``bucket(16, col)``… into Spark DDL, checking the column exists."""
        from pyiceberg.transforms import (
            BucketTransform,
            DayTransform,
            HourTransform,
            IdentityTransform,
            MonthTransform,
            TruncateTransform,
            YearTransform,
        )

        from asgard_provider.hooks.iceberg import parse_partition_expression

        column, transform = parse_partition_expression(expr)
        if column.lower() not in {c.lower() for c in columns}:
            raise TransformError(
                f"partition_by {expr!r} names column {column!r}, which {self.sql_source} does not return "
                f"({', '.join(columns)})"
            )
        quoted = f"`{column}`"
        if isinstance(transform, IdentityTransform):
            return quoted
        if isinstance(transform, BucketTransform):
            return f"bucket({transform.num_buckets}, {quoted})"
        if isinstance(transform, TruncateTransform):
            return f"truncate({transform.width}, {quoted})"
        names: dict[type, str] = {
            YearTransform: "years",
            MonthTransform: "months",
            DayTransform: "days",
            HourTransform: "hours",
        }
        return f"{names[type(transform)]}({quoted})"

    def _check_unique_keys(self, out_df: DataFrame, output: str) -> None:
        from pyspark.sql import functions as F

        dupes = self._run(
            lambda: out_df.groupBy(*self.merge_keys).count().where(F.col("count") > 1).limit(3).collect(),
            f"checking merge_keys of {self.sql_source}",
        )
        if dupes:
            examples = "; ".join(", ".join(f"{k}={row[k]!r}" for k in self.merge_keys) for row in dupes)
            raise TransformError(
                f"cannot merge {self.sql_source} into {output}: merge_keys {self.merge_keys} are not unique in "
                f"the output (e.g. {examples}); deduplicate in the SQL or tag extra rows with {REJECTED_REASON}"
            )

    def _ensure_namespace(self, spark: SparkSession, table: str) -> None:
        namespace = table.split(".")[0]
        self._run(
            lambda: spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG_NAME}.`{namespace}`"),
            f"creating namespace {namespace}",
        )

    def _write(
        self, spark: SparkSession, df: DataFrame, table: str, mode: str, partitions: list[str], rows: int
    ) -> None:
        """Write ``df`` (``rows`` rows) to ``table``: replace, append or merge; create the table if missing."""
        namespace, name = table.split(".")
        target = f"{CATALOG_NAME}.`{namespace}`.`{name}`"
        partitioned = f" PARTITIONED BY ({', '.join(partitions)})" if partitions else ""
        view = f"asgard_src_{uuid.uuid4().hex}"
        df.createOrReplaceTempView(view)
        try:
            if mode == "overwrite":
                # Identifiers are validated (split_table_name, parse_partition_expression) and quoted.
                replace = f"CREATE OR REPLACE TABLE {target} USING iceberg{partitioned} AS SELECT * FROM {view}"  # noqa: S608
                self._run(lambda: spark.sql(replace), f"writing {table}")
            elif not spark.catalog.tableExists(f"{CATALOG_NAME}.{namespace}.{name}"):
                create = f"CREATE TABLE {target} USING iceberg{partitioned} AS SELECT * FROM {view}"  # noqa: S608
                self._run(lambda: spark.sql(create), f"creating {table}")
            elif rows == 0:
                self.log.info("nothing to %s into %s", mode, table)
            elif mode == "append":
                self._run(lambda: df.writeTo(target).append(), f"appending to {table}")
            else:
                on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in self.merge_keys)
                merge = (
                    f"MERGE INTO {target} t USING {view} s ON {on} "
                    "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
                )
                self._run(lambda: spark.sql(merge), f"merging into {table}")
        finally:
            spark.catalog.dropTempView(view)


def read_tables(df: DataFrame) -> list[str]:
    """``namespace.table`` of every Iceberg table in the query's analysed plan, subqueries included, in plan order."""
    found: list[str] = []
    stack = [df._jdf.queryExecution().analyzed()]
    while stack:
        node = stack.pop()
        if node.getClass().getSimpleName() == "DataSourceV2Relation":
            parts = str(node.table().name()).split(".")
            if len(parts) == 3 and parts[0] == CATALOG_NAME and ".".join(parts[1:]) not in found:
                found.append(".".join(parts[1:]))
        children: list[Any] = []
        for seq in (node.children(), node.subqueries()):
            items = seq.iterator()
            while items.hasNext():
                children.append(items.next())
        stack.extend(reversed(children))
    return found


def report_transform_lineage(op: LineageMixin, iceberg: IcebergHook, result: dict[str, Any]) -> None:
    """Record the tables a transform's SQL read and the output and quarantine tables written, with row counts.

    ``result`` is what :meth:`SparkIcebergTransformOperator.run_transform` returns (locally or from a driver pod).
    """
    for name in result.get("input_tables") or []:
        op.lineage_input(name, table=_table_or_none(iceberg, name))
    output = result["output_table"]
    op.lineage_output(output, table=_table_or_none(iceberg, output), rows=result["rows_written"])
    if result.get("quarantine_table"):
        quarantine = result["quarantine_table"]
        op.lineage_output(quarantine, table=_table_or_none(iceberg, quarantine), rows=result["rows_quarantined"])


def _table_or_none(iceberg: IcebergHook, name: str) -> Any:
    try:
        return iceberg.load_table(name)
    except Exception:  # lineage without a schema rather than a failed task
        return None


def check_sql_path(task_id: str, sql: Any) -> None:
    """Refuse a relative SQL file path that leaves include/sql/ (``..``, a symlink out of it)."""
    if isinstance(sql, str) and _is_sql_path(sql) and not Path(sql.strip()).is_absolute():
        try:
            contained(sql_dir(), sql.strip(), "include/sql/")
        except PathEscapeError as exc:
            raise TransformError(f"{task_id}: SQL file {exc}") from None


def _is_sql_path(sql: str) -> bool:
    text = sql.strip()
    return text.endswith(".sql") and "\n" not in text


def _with_sql_loader(env: jinja2.Environment) -> jinja2.Environment:
    """Overlay ``env`` with loaders for include/sql/ and absolute paths (the Dag's own loader still applies)."""
    import jinja2

    def load_absolute(name: str) -> tuple[str, str, Any] | None:
        path = Path(name)
        if not path.is_absolute() or not path.is_file():
            return None
        mtime = path.stat().st_mtime
        return path.read_text(encoding="utf-8"), str(path), lambda: path.stat().st_mtime == mtime

    loaders: list[jinja2.BaseLoader] = [jinja2.FunctionLoader(load_absolute), jinja2.FileSystemLoader(str(sql_dir()))]
    if env.loader is not None:
        loaders.append(env.loader)
    return env.overlay(loader=jinja2.ChoiceLoader(loaders))


def _eager_plan_kind(spark: SparkSession, plan: Any) -> str | None:
    """Name of the parsed plan if Spark would execute it eagerly (DDL, DML, commands), else None."""
    jvm: Any = spark._jvm
    loader = plan.getClass().getClassLoader()
    for class_name in _EAGER_PLAN_CLASSES:
        try:
            if jvm.java.lang.Class.forName(class_name, False, loader).isInstance(plan):
                return str(plan.getClass().getSimpleName())
        except Exception:  # noqa: S112 - a class missing from this Spark version cannot match
            continue
    return None


def _short_message(exc: BaseException) -> str:
    """Return the engine's message without the logical plan or SQL dump Spark appends."""
    text = str(exc).strip()
    for marker in ("\n== SQL", "\n'", "\n+-", "\nJVM stacktrace:", "\n\tat "):
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    return " ".join(line.strip() for line in text.splitlines() if line.strip()).rstrip(";")
