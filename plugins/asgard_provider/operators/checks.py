"""Data-quality gate over Iceberg tables: fail the run before downstream stages read bad data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.assets import snapshot_summary
from asgard_provider.catalog import split_table_name
from asgard_provider.engines import wap
from asgard_provider.engines.wap import run_branch
from asgard_provider.exceptions import DataQualityError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.lineage import LineageMixin
from asgard_provider.publishing import Dataset, publish_outcome


class IcebergTableCheckOperator(LineageMixin, BaseOperator):
    """Check the current snapshot of Iceberg tables and publish each as an asset event.

    Checks run in DuckDB over the table's Arrow scan; every failure is reported, then the task fails.

    With ``write_audit_publish`` the checks read the run's branch (``run_<run id>``) of each table its writer
    committed to; only when every check of every table passes is main of each table, and of ``publish_with``,
    fast-forwarded to its branch snapshot (:func:`asgard_provider.engines.wap.publish`), and only then are the
    asset events emitted. A failure leaves main unchanged and keeps the branches ``branch_retention_days`` days.

    :param tables: ``namespace.table`` names to check.
    :param min_rows: fewest rows each table must hold.
    :param max_rows: most rows allowed (``None``: no bound).
    :param not_null: columns that must never be NULL.
    :param unique: column groups that must identify a row, e.g. ``[["account_id", "snapshot_date"]]``.
    :param accepted_values: allowed non-NULL values per column.
    :param absent_columns: columns the table must not have (compared without letter case), e.g. ``["ssn"]``.
    :param row_filter: Iceberg filter limiting the checked rows (templated), e.g. ``snapshot_date == '{{ ds }}'``.
    :param write_audit_publish: audit the run's branch, then publish it (see above).
    :param publish_with: tables written on the same branch and published with the checked ones (quarantine).
    :param branch_retention_days: how long a branch that failed its audit is kept.
    :param publish: with ``write_audit_publish``, publish after the audit (``False``: audit only, an
        :class:`IcebergPublishOperator` after every audit of the stage publishes).
    """

    template_fields: Sequence[str] = ("tables", "row_filter")
    ui_color = "#8fbc8f"

    def __init__(
        self,
        *,
        tables: Sequence[str],
        min_rows: int = 1,
        max_rows: int | None = None,
        not_null: Sequence[str] = (),
        unique: Sequence[Sequence[str]] = (),
        accepted_values: dict[str, Sequence[Any]] | None = None,
        absent_columns: Sequence[str] = (),
        row_filter: str | None = None,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        write_audit_publish: bool = False,
        publish_with: Sequence[str] = (),
        branch_retention_days: int = wap.BRANCH_RETENTION_DAYS,
        publish: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tables = list(tables)
        self.publish = publish
        self.min_rows = min_rows
        self.max_rows = max_rows
        self.not_null = list(not_null)
        self.unique = [list(group) for group in unique]
        self.accepted_values = dict(accepted_values or {})
        self.absent_columns = list(absent_columns)
        self.row_filter = row_filter
        self.iceberg_conn_id = iceberg_conn_id
        self.write_audit_publish = write_audit_publish
        self.publish_with = list(publish_with)
        self.branch_retention_days = branch_retention_days

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the checks on every table; return each table's snapshot summary (published, with a branch)."""
        hook = IcebergHook(self.iceberg_conn_id)
        branch = run_branch(str(context.get("run_id") or "")) if self.write_audit_publish else None
        results: dict[str, Any] = {}
        failures: list[str] = []
        for name in self.tables:
            table_name = ".".join(split_table_name(name))
            table = hook.load_table(table_name)
            snapshot_id = wap.read_snapshot(table, branch)
            summary = snapshot_summary(table, snapshot_id)
            scan = table.scan(snapshot_id=snapshot_id, **({"row_filter": self.row_filter} if self.row_filter else {}))
            problems = self._check(table_name, scan.to_arrow())
            failures += problems
            summary["checks_failed"] = len(problems)
            results[table_name] = summary
            self.log.info(
                "%s: snapshot %s%s, %s rows, %d failed checks",
                table_name,
                summary["snapshot_id"],
                f" (branch {branch})" if branch and wap.branch_snapshot(table, branch) else "",
                summary["total_records"],
                len(problems),
            )
        if failures:
            raise self._failed(hook, branch, failures)
        if branch is not None and not self.publish:
            return results  # audited only: the stage's publish task moves main and emits the events
        if branch is not None:
            tables = [*self.tables, *(t for t in self.publish_with if hook.table_exists(t))]
            results = publish_branch(self.log, hook, tables, branch, results)
        publish_outcome(self, context, read=[Dataset(name) for name in self.tables], events=results, iceberg=hook)
        return results

    def _failed(self, hook: IcebergHook, branch: str | None, failures: list[str]) -> DataQualityError:
        """Keep the unpublished branches for inspection; return the error listing every failure."""
        kept = ""
        if branch is not None:
            for name in [*self.tables, *self.publish_with]:
                if hook.table_exists(name):
                    wap.keep_branch(hook.load_table(name), branch, self.branch_retention_days)
            kept = (
                f"\nmain is unchanged; the rows are on branch {branch} (kept {self.branch_retention_days} days), "
                f"e.g. asgard tables history {self.tables[0]}"
            )
        return DataQualityError("data-quality checks failed:\n" + "\n".join(f"  - {f}" for f in failures) + kept)

    def _check(self, name: str, data: Any) -> list[str]:
        import duckdb

        problems: list[str] = _present(name, data.column_names, self.absent_columns)
        columns = set(data.column_names)
        wanted = set(self.not_null) | {c for g in self.unique for c in g} | set(self.accepted_values)
        missing = sorted(wanted - columns)
        if missing:
            return [*problems, f"{name}: checked columns {missing} do not exist (columns: {sorted(columns)})"]
        rows = data.num_rows
        if rows < self.min_rows:
            problems.append(f"{name}: {rows} rows, expected at least {self.min_rows}")
        if self.max_rows is not None and rows > self.max_rows:
            problems.append(f"{name}: {rows} rows, expected at most {self.max_rows}")
        con = duckdb.connect()
        try:
            con.register("t", data)
            for column in self.not_null:
                nulls = _scalar(con, f'SELECT count(*) FROM t WHERE "{column}" IS NULL')  # noqa: S608
                if nulls:
                    problems.append(f"{name}.{column}: {nulls} NULL values (not_null)")
            for group in self.unique:
                cols = ", ".join(f'"{c}"' for c in group)
                dupes = _scalar(
                    con,
                    f"SELECT count(*) FROM (SELECT {cols} FROM t GROUP BY {cols} HAVING count(*) > 1)",  # noqa: S608
                )
                if dupes:
                    problems.append(f"{name}: {dupes} duplicated keys ({', '.join(group)}) (unique)")
            for column, allowed in self.accepted_values.items():
                found = [
                    r[0]
                    for r in con.execute(
                        f'SELECT DISTINCT "{column}" FROM t WHERE "{column}" IS NOT NULL'  # noqa: S608
                    ).fetchall()
                ]
                bad = sorted({v for v in found if v not in set(allowed)}, key=str)
                if bad:
                    problems.append(f"{name}.{column}: values {bad[:10]} not in {list(allowed)} (accepted_values)")
        finally:
            con.close()
        return problems


class IcebergPublishOperator(LineageMixin, BaseOperator):
    """Publish the run's branch of ``tables`` (write-audit-publish) after every audit task of the stage passed.

    Moves main of each table to its branch snapshot (:func:`asgard_provider.engines.wap.publish`: a fast-forward,
    or a replay when another run published in between), then emits each table's asset event.
    """

    template_fields: Sequence[str] = ("tables",)
    ui_color = "#8fbc8f"

    def __init__(
        self, *, tables: Sequence[str], iceberg_conn_id: str = IcebergHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.tables = list(tables)
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Publish every table's branch; return each table's new snapshot summary."""
        hook = IcebergHook(self.iceberg_conn_id)
        branch = run_branch(str(context.get("run_id") or ""))
        tables = [t for t in self.tables if hook.table_exists(t)]
        results = publish_branch(self.log, hook, tables, branch, {})
        publish_outcome(self, context, events=results, iceberg=hook)
        return results


def publish_branch(
    log: Any, hook: IcebergHook, tables: Sequence[str], branch: str, checked: dict[str, Any]
) -> dict[str, Any]:
    """Move main of ``tables`` to ``branch`` (:func:`wap.publish`); return each table's new snapshot summary."""
    results = dict(checked)
    for done in wap.publish(hook.catalog, tables, branch):
        summary = snapshot_summary(hook.load_table(done.table))
        results[done.table] = {**results.get(done.table, {}), **summary, "published_from": branch}
        log.info("%s: main %s -> %s (branch %s)", done.table, done.previous, done.snapshot_id, branch)
    return results


def _scalar(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _present(name: str, columns: Sequence[str], absent: Sequence[str]) -> list[str]:
    """One problem per column of ``absent`` that the table has (letter case ignored)."""
    have = {column.lower(): column for column in columns}
    return [f"{name}.{have[c.lower()]}: column exists (absent_columns)" for c in absent if c.lower() in have]
