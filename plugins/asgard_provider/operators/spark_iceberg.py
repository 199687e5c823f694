"""Spark SQL transforms from Iceberg tables into Iceberg tables, with rejected rows routed to a quarantine table."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator, Context

from asgard_provider.engines import wap
from asgard_provider.engines.spark_sql import REJECTED_REASON, TransformSpec, run_transform
from asgard_provider.engines.wap import RUN_PROPERTY, read_snapshot, run_branch
from asgard_provider.exceptions import PathEscapeError, TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.spark import SparkHook, SparkProgress, local_spark_pool
from asgard_provider.lineage import LineageMixin
from asgard_provider.links import SPARK_UI_XCOM, SparkUILink
from asgard_provider.paths import contained
from asgard_provider.publishing import Dataset, publish_outcome
from asgard_provider.settings import include_dir

if TYPE_CHECKING:
    import jinja2

__all__ = ["REJECTED_REASON", "SparkIcebergTransformOperator", "publish_transform", "sql_dir"]


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
        ``days(ts)``, ``bucket(16, entity_id)``, ``truncate(4, code)``; applied when the table is created.
    :param merge_keys: columns identifying a row (required for ``merge``).
    :param quarantine_table: where rejected rows go; default ``<output_table>_quarantine``. Replaced in
        ``overwrite`` mode, appended to otherwise.
    :param sql_params: values for the SQL template (templated).
    :param sql_secrets: secret parameters of the SQL by marker name (``:name``), each ``{"variable": NAME}`` or
        ``{"connection": ID, "field": "password"}``; read from Airflow when the task runs, masked in logs and bound
        by Spark, so the value is never part of the SQL text (not templated).
    :param publish: output and quarantine are written on the run's branch (``run_<run id>``, write-audit-publish);
        ``True``: this task publishes them (moves main) and emits the asset events once the transform succeeded;
        ``False``: the checks task that audits the branch does
        (:class:`~asgard_provider.operators.checks.IcebergTableCheckOperator`). A failed task leaves main as it
        was and the branch for inspection. Without a run id (no Airflow run) the tables are written on main.
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
        sql_secrets: Mapping[str, Mapping[str, str]] | None = None,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        spark_conn_id: str = SparkHook.default_conn_name,
        publish: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", local_spark_pool())
        super().__init__(**kwargs)
        problems = TransformSpec("", output_table, mode=mode, merge_keys=list(merge_keys)).problems()
        if problems:
            raise ValueError(f"{self.task_id}: {problems[0]}")
        self.sql = sql
        self.output_table = output_table
        self.mode = mode
        self.partition_by = list(partition_by)
        self.merge_keys = list(merge_keys)
        self.quarantine_table = quarantine_table
        self.sql_params = dict(sql_params or {})
        self.sql_secrets = {name: dict(ref) for name, ref in (sql_secrets or {}).items()}
        self.iceberg_conn_id = iceberg_conn_id
        self.spark_conn_id = spark_conn_id
        self.publish = publish
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

    def transform_spec(
        self, branch: str | None = None, run_id: str | None = None, sql_args: Mapping[str, str] | None = None
    ) -> TransformSpec:
        """Describe this transform for the engine (the SQL as rendered), written on ``branch`` if given."""
        return TransformSpec(
            sql=self.sql,
            output_table=self.output_table,
            sql_source=self.sql_source,
            mode=self.mode,
            partition_by=self.partition_by,
            merge_keys=self.merge_keys,
            quarantine_table=self.quarantine_table,
            branch=branch,
            snapshot_properties={RUN_PROPERTY: run_id} if branch and run_id else {},
            sql_args=dict(sql_args or {}),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the SELECT, write output and quarantine tables; return table, row counts and snapshot id."""
        if not self._rendered:
            self.render_template_fields(context)
        iceberg = IcebergHook(self.iceberg_conn_id)
        started = time.monotonic()
        self.log.info("starting the Spark session (a new JVM in a fresh task process takes 10-30s)")
        spark = SparkHook(self.spark_conn_id).get_session(iceberg.settings)
        self.log.info("Spark session ready in %.1fs (%s)", time.monotonic() - started, spark.sparkContext.master)
        branch = wap_branch(context, self.publish)
        spec = self.transform_spec(branch, context.get("run_id"), sql_secret_values(self.task_id, self.sql_secrets))
        try:
            with SparkProgress(spark, self.sql_source, self.log):
                result = run_transform(spark, spec, self.log)
        except TransformError as exc:
            note = branch_note(iceberg, self.output_table, branch)
            if note:
                raise TransformError(f"{exc}\n{note}") from exc
            raise
        ui = spark.sparkContext.uiWebUrl
        return publish_transform(self, context, iceberg, result.as_dict(), self.mode, ui, branch, self.publish)


def sql_secret_values(task_id: str, refs: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Read each secret parameter from its Airflow Variable or connection field and mask it in task logs."""
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.log import mask_secret

    values: dict[str, str] = {}
    for name, ref in refs.items():
        try:
            if "variable" in ref:
                value = Variable.get(ref["variable"])
            else:
                value = getattr(BaseHook.get_connection(ref["connection"]), ref.get("field", "password"))
        except Exception as exc:
            where = f"Variable {ref['variable']!r}" if "variable" in ref else f"connection {ref['connection']!r}"
            problem = f"secret parameter :{name} needs the Airflow {where} ({type(exc).__name__})"
            raise TransformError(f"{task_id}: {problem}") from None
        if not value:
            raise TransformError(f"{task_id}: secret parameter :{name} is empty")
        mask_secret(str(value))
        values[name] = str(value)
    return values


def wap_branch(context: Any, publish: bool = False) -> str | None:
    """Return the branch the context's run writes on (write-audit-publish).

    Without a run id: ``None`` (write main) when the writer publishes itself; else :class:`PublishError`, as the
    checks task could not find the branch.
    """
    run_id = str(context.get("run_id") or "")
    return run_branch(run_id) if run_id or not publish else None


def branch_note(iceberg: IcebergHook, output_table: str, branch: str | None) -> str:
    """After a failed transform: say that main is unchanged and where what the run wrote is ("" without a branch).

    A catalog that cannot be read gives "" too: the transform's own error is what the task must report.
    """
    if branch is None:
        return ""
    try:
        snapshot = wap.branch_snapshot(iceberg.load_table(output_table), branch)
    except Exception:
        return ""
    if snapshot is None:
        return f"main of {output_table} is unchanged"
    return (
        f"main of {output_table} is unchanged; what the run wrote is on branch {branch} (kept "
        f"{wap.BRANCH_RETENTION_DAYS} days), e.g. asgard tables history {output_table}"
    )


def publish_transform(
    op: LineageMixin,
    context: Any,
    iceberg: IcebergHook,
    result: Mapping[str, Any],
    mode: str,
    spark_ui: str | None,
    branch: str | None = None,
    publish: bool = False,
) -> dict[str, Any]:
    """Publish a transform's output and quarantine tables (asset events, lineage, Spark UI link); return its XCom.

    ``result`` is a :class:`~asgard_provider.engines.spark_sql.TransformResult` as a mapping: from the embedded
    runner, or the line a SparkApplication's driver printed. Written on ``branch``, the tables move to it with
    ``publish`` (:func:`asgard_provider.engines.wap.publish_run`); without, they get no asset event here: the
    checks task emits them once it has published the branch.
    """
    output, quarantine = result["output_table"], result.get("quarantine_table")
    published = {}
    if branch is not None and publish:
        published = {"published_from": branch}
        _publish_branch(op, iceberg, [output, *([quarantine] if quarantine else [])], str(context.get("run_id")))
        branch = None
    snapshot_id = read_snapshot(iceberg.load_table(output), branch)
    rows, rejected = result.get("rows_written"), result.get("rows_quarantined")
    wrote = [Dataset(output, rows=rows)]
    events = {output: {"snapshot_id": snapshot_id, "rows_written": rows, "mode": mode}}
    if quarantine:
        wrote.append(Dataset(quarantine, rows=rejected))
        events[quarantine] = {"rows_written": rejected, "quarantine_of": output}
    publish_outcome(
        op,
        context,
        read=[Dataset(name) for name in result.get("input_tables") or []],
        wrote=wrote,
        events=events if branch is None else {},
        iceberg=iceberg,
        # "" without a UI: the Spark UI link then reads an empty value instead of logging "XCom not found".
        xcom={SPARK_UI_XCOM: spark_ui or ""},
    )
    return {**result, "snapshot_id": snapshot_id, **({"branch": branch} if branch else published)}


def _publish_branch(op: Any, iceberg: IcebergHook, tables: Sequence[str], run_id: str) -> None:
    """Move main of ``tables`` to the run's branch (a fast-forward, or a replay when another run published first)."""
    for done in wap.publish_run(iceberg.catalog, tables, run_id).values():
        op.log.info("%s: main %s -> %s (branch %s)", done.table, done.previous, done.snapshot_id, run_branch(run_id))


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
