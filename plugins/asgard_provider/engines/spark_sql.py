"""Spark SQL transforms over Iceberg tables: one SELECT, its result written with DDL, INSERT or MERGE (no Airflow).

Rows where the SELECT's ``_rejected_reason`` column is set go to a quarantine table instead of the output.
The embedded runner (:class:`~asgard_provider.operators.spark_iceberg.SparkIcebergTransformOperator`) and the
driver of a SparkApplication (:mod:`asgard_provider.spark_driver`) both call :func:`run_transform`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from asgard_provider.catalog import CATALOG_NAME, split_table_name
from asgard_provider.catalog import IDENTIFIER as _IDENT
from asgard_provider.engines.iceberg_tables import parse_partition_expression
from asgard_provider.engines.wap import BRANCH_RETENTION_DAYS
from asgard_provider.exceptions import TransformError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Column a transform's SELECT sets to a reason string for rows that must not reach the output table.
REJECTED_REASON = "_rejected_reason"
#: Write modes of a transform.
MODES = ("overwrite", "append", "merge")
#: Iceberg table property letting Spark writes add columns (``mergeSchema``); it breaks MERGE's column resolution.
ACCEPT_ANY_SCHEMA = "write.spark.accept-any-schema"

_LOG = logging.getLogger(__name__)
_LINE_POS = re.compile(r"line (\d+),? pos (\d+)")
# Parsed plans that Spark would execute as soon as spark.sql() is called: only queries are allowed.
_EAGER_PLAN_CLASSES = (
    "org.apache.spark.sql.catalyst.plans.logical.Command",
    "org.apache.spark.sql.catalyst.plans.logical.ParsedStatement",
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class TransformSpec:
    """One transform: the rendered SELECT and where and how its result is written."""

    sql: str
    output_table: str
    sql_source: str = "<inline SQL>"
    mode: str = "overwrite"
    partition_by: list[str] = field(default_factory=list)
    merge_keys: list[str] = field(default_factory=list)
    quarantine_table: str | None = None
    #: Write on this branch of output and quarantine tables (write-audit-publish), reset to main first.
    branch: str | None = None
    #: Summary properties of the snapshots a branch write commits (e.g. the run id), except MERGE's.
    snapshot_properties: dict[str, str] = field(default_factory=dict)
    #: Values of the SQL's named parameter markers (``:name``), bound by Spark, never pasted into the text.
    sql_args: dict[str, Any] = field(default_factory=dict, repr=False)

    def problems(self) -> list[str]:
        """List what is wrong with mode and merge keys (empty when the spec can run)."""
        if self.mode not in MODES:
            return [f"mode {self.mode!r} is not one of {', '.join(MODES)}"]
        if self.mode == "merge" and not self.merge_keys:
            return ["mode 'merge' needs merge_keys (the columns identifying a row)"]
        bad_keys = [k for k in self.merge_keys if not _IDENT.match(k)]
        return [f"merge_keys {bad_keys} are not plain column names"] if bad_keys else []


@dataclass(frozen=True)
class TransformResult:
    """What a transform wrote: output and quarantine tables, their row counts, and the tables its SQL read."""

    output_table: str
    rows_written: int
    rows_quarantined: int
    quarantine_table: str | None
    input_tables: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Return the result as a plain mapping (XCom, the driver's result line)."""
        return asdict(self)


def run_transform(spark: SparkSession, spec: TransformSpec, log: logging.Logger = _LOG) -> TransformResult:
    """Run ``spec``'s SELECT in ``spark`` and write output and quarantine tables."""
    problems = spec.problems()
    if problems:
        raise TransformError(f"{spec.sql_source}: {'; '.join(problems)}")
    output = ".".join(split_table_name(spec.output_table))
    df = analyse(spark, spec.sql, spec.sql_source, spec.sql_args)
    input_tables = read_tables(df)
    has_reason = REJECTED_REASON in df.columns
    quarantine = _quarantine_name(spec, output, has_reason, log)
    columns = [c for c in df.columns if c != REJECTED_REASON]
    _check_columns(spec, columns)
    partitions = [_partition_sql(expr, columns, spec.sql_source) for expr in spec.partition_by]

    from pyspark import StorageLevel

    # Materialise the result once, so the output and quarantine splits see the same rows.
    data = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows_written, rows_quarantined = _write_splits(spark, spec, data, output, quarantine, partitions, has_reason)
    finally:
        data.unpersist()
    log.info(
        "%s -> %s (%s): %d rows written, %d quarantined%s",
        spec.sql_source,
        output,
        spec.mode,
        rows_written,
        rows_quarantined,
        f" in {quarantine}" if quarantine else "",
    )
    return TransformResult(output, rows_written, rows_quarantined, quarantine, input_tables)


def _write_splits(
    spark: SparkSession,
    spec: TransformSpec,
    data: DataFrame,
    output: str,
    quarantine: str | None,
    partitions: list[str],
    has_reason: bool,
) -> tuple[int, int]:
    """Write the accepted rows to ``output`` and the rejected ones to ``quarantine``; return both counts."""
    from pyspark.sql import functions as F

    if has_reason:
        counts = _run(
            lambda: data.agg(
                F.count(F.when(F.col(REJECTED_REASON).isNull(), 1)).alias("ok"),
                F.count(F.col(REJECTED_REASON)).alias("rejected"),
            ).collect()[0],
            f"running {spec.sql_source}",
        )
        rows_written, rows_quarantined = int(counts["ok"]), int(counts["rejected"])
        out_df = data.where(F.col(REJECTED_REASON).isNull()).drop(REJECTED_REASON)
    else:
        rows_written = _run(data.count, f"running {spec.sql_source}")
        rows_quarantined = 0
        out_df = data
    if spec.mode == "merge":
        _check_unique_keys(out_df, output, spec)
    ensure_namespace(spark, output)
    branch, props = spec.branch, spec.snapshot_properties
    write_table(
        spark, out_df, output, spec.mode, partitions, rows_written, spec.merge_keys, branch=branch, properties=props
    )
    if quarantine is not None:
        rejected = data.where(F.col(REJECTED_REASON).isNotNull())
        quarantine_mode = "overwrite" if spec.mode == "overwrite" else "append"
        ensure_namespace(spark, quarantine)
        write_table(
            spark, rejected, quarantine, quarantine_mode, [], rows_quarantined, [], branch=branch, properties=props
        )
    return rows_written, rows_quarantined


def analyse(spark: SparkSession, sql: str, sql_source: str, args: Mapping[str, Any] | None = None) -> DataFrame:
    """Parse and analyse the query (no data is read or written); engine errors become TransformError.

    ``args`` bind the query's named parameter markers (``:name``).
    """
    text = sql.rstrip().rstrip(";").rstrip()
    if not text.strip():
        raise TransformError(f"SQL {sql_source} is empty")
    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(text)
    except Exception as exc:
        raise TransformError(_engine_message(exc, "syntax error in", sql_source)) from exc
    kind = _eager_plan_kind(spark, plan)
    if kind:
        raise TransformError(
            f"SQL {sql_source} is a {kind} statement; a transform must be a single SELECT "
            "(the operator writes the output table itself)"
        )
    try:
        return spark.sql(text, args=dict(args)) if args else spark.sql(text)
    except Exception as exc:
        message = _engine_message(exc, "invalid SQL in", sql_source)
        for value in (args or {}).values():
            message = message.replace(str(value), "***")
        raise TransformError(message) from None


def ensure_namespace(spark: SparkSession, table: str) -> None:
    """Create the namespace of ``namespace.table`` in the Spark catalog if it is missing."""
    namespace = table.split(".")[0]
    _run(
        lambda: spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG_NAME}.`{namespace}`"),
        f"creating namespace {namespace}",
    )


def write_table(
    spark: SparkSession,
    df: DataFrame,
    table: str,
    mode: str,
    partitions: list[str],
    rows: int,
    merge_keys: list[str],
    log: logging.Logger = _LOG,
    branch: str | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Write ``df`` (``rows`` rows) to ``table``: replace, append or merge; create the table if missing.

    With ``branch`` the rows are committed to that branch (see :func:`_write_branch`), main is untouched.
    """
    namespace, name = table.split(".")
    target = f"{CATALOG_NAME}.`{namespace}`.`{name}`"
    partitioned = f" PARTITIONED BY ({', '.join(partitions)})" if partitions else ""
    view = f"asgard_src_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    try:
        if branch:
            _write_branch(spark, df, table, mode, partitioned, view, merge_keys, branch, properties or {})
        elif mode == "overwrite":
            # Identifiers are validated (split_table_name, parse_partition_expression) and quoted.
            replace = f"CREATE OR REPLACE TABLE {target} USING iceberg{partitioned} AS SELECT * FROM {view}"  # noqa: S608
            _run(lambda: spark.sql(replace), f"writing {table}")
        elif not spark.catalog.tableExists(f"{CATALOG_NAME}.{namespace}.{name}"):
            create = f"CREATE TABLE {target} USING iceberg{partitioned} AS SELECT * FROM {view}"  # noqa: S608
            _run(lambda: spark.sql(create), f"creating {table}")
        elif rows == 0:
            log.info("nothing to %s into %s", mode, table)
        elif mode == "append":
            _run(lambda: df.writeTo(target).append(), f"appending to {table}")
        else:
            on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in merge_keys)
            merge = (
                f"MERGE INTO {target} t USING {view} s ON {on} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
            _run(lambda: spark.sql(merge), f"merging into {table}")
    finally:
        spark.catalog.dropTempView(view)


def _write_branch(
    spark: SparkSession,
    df: DataFrame,
    table: str,
    mode: str,
    partitioned: str,
    view: str,
    merge_keys: list[str],
    branch: str,
    properties: dict[str, str],
) -> None:
    """Commit ``df`` to ``branch`` of ``table``, the branch first reset to main's current snapshot.

    The branch is kept :data:`~asgard_provider.engines.wap.BRANCH_RETENTION_DAYS` unless published (a failed
    task leaves it for inspection). A missing table is created empty on main (branches start from a snapshot).
    ``overwrite`` replaces the branch's rows; the table's schema gains new columns (shared by every branch: main's
    readers see them as NULL) and keeps its partition spec and columns the SELECT no longer returns (``merge``
    adds no column, as on main).
    """
    from pyspark.sql import functions as F

    namespace, name = table.split(".")
    target = f"{CATALOG_NAME}.`{namespace}`.`{name}`"
    on_branch = f"{target}.`branch_{branch}`"
    if not spark.catalog.tableExists(f"{CATALOG_NAME}.{namespace}.{name}"):
        create = f"CREATE TABLE {target} USING iceberg{partitioned} AS SELECT * FROM {view} LIMIT 0"  # noqa: S608
        _run(lambda: spark.sql(create), f"creating {table}")
    keep = f"RETAIN {BRANCH_RETENTION_DAYS} DAYS"
    _run(lambda: spark.sql(f"ALTER TABLE {target} CREATE OR REPLACE BRANCH `{branch}` {keep}"), f"branching {table}")
    # Appends and overwrites evolve the schema; a MERGE cannot resolve its columns on a table accepting any schema.
    accept = "false" if mode == "merge" else "true"
    evolve = f"ALTER TABLE {target} SET TBLPROPERTIES ('{ACCEPT_ANY_SCHEMA}'='{accept}')"
    _run(lambda: spark.sql(evolve), f"setting schema evolution of {table}")
    writer = df.writeTo(on_branch).option("mergeSchema", "true")
    for key, value in properties.items():
        writer = writer.option(f"snapshot-property.{key}", value)
    if mode == "overwrite":
        _run(lambda: writer.overwrite(F.lit(True)), f"writing {table} on branch {branch}")
    elif mode == "append":
        _run(writer.append, f"appending to {table} on branch {branch}")
    else:
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in merge_keys)
        merge = (
            f"MERGE INTO {on_branch} t USING {view} s ON {on} "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        _run(lambda: spark.sql(merge), f"merging into {table} on branch {branch}")


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


def _engine_message(exc: BaseException, what: str, sql_source: str) -> str:
    message = short_message(exc)
    match = _LINE_POS.search(message)
    where = f" (line {match.group(1)}, position {match.group(2)})" if match else ""
    return f"{what} {sql_source}{where}: {message}"


def _run(action: Callable[[], _T], what: str) -> _T:
    try:
        return action()
    except Exception as exc:
        raise TransformError(f"{what} failed: {short_message(exc)}") from exc


def _quarantine_name(spec: TransformSpec, output: str, has_reason: bool, log: logging.Logger) -> str | None:
    if not has_reason:
        if spec.quarantine_table:
            log.warning(
                "quarantine_table %s is set but %s returns no %s column: nothing to quarantine",
                spec.quarantine_table,
                spec.sql_source,
                REJECTED_REASON,
            )
        return None
    quarantine = ".".join(split_table_name(spec.quarantine_table or f"{output}_quarantine"))
    if quarantine == output:
        raise TransformError(f"quarantine_table {quarantine} is the output table itself")
    return quarantine


def _check_columns(spec: TransformSpec, columns: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in columns:
        if name.lower() in seen:
            raise TransformError(f"{spec.sql_source} returns column {name!r} twice; alias one of them")
        seen[name.lower()] = name
    missing = [k for k in spec.merge_keys if k.lower() not in seen]
    if missing:
        raise TransformError(f"merge_keys {missing} are not columns of {spec.sql_source} ({', '.join(columns)})")


def _partition_sql(expr: str, columns: list[str], sql_source: str) -> str:
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

    column, transform = parse_partition_expression(expr)
    if column.lower() not in {c.lower() for c in columns}:
        raise TransformError(
            f"partition_by {expr!r} names column {column!r}, which {sql_source} does not return ({', '.join(columns)})"
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


def _check_unique_keys(out_df: DataFrame, output: str, spec: TransformSpec) -> None:
    from pyspark.sql import functions as F

    keys = spec.merge_keys
    dupes = _run(
        lambda: out_df.groupBy(*keys).count().where(F.col("count") > 1).limit(3).collect(),
        f"checking merge_keys of {spec.sql_source}",
    )
    if dupes:
        examples = "; ".join(", ".join(f"{k}={row[k]!r}" for k in keys) for row in dupes)
        raise TransformError(
            f"cannot merge {spec.sql_source} into {output}: merge_keys {keys} are not unique in "
            f"the output (e.g. {examples}); deduplicate in the SQL or tag extra rows with {REJECTED_REASON}"
        )


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


def short_message(exc: BaseException) -> str:
    """Return the engine's message without the logical plan or SQL dump Spark appends."""
    text = str(exc).strip()
    for marker in ("\n== SQL", "\n'", "\n+-", "\nJVM stacktrace:", "\n\tat "):
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    return " ".join(line.strip() for line in text.splitlines() if line.strip()).rstrip(";")
