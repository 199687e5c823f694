"""Data-quality gate over Iceberg tables: fail the run before downstream stages read bad data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider.assets import publish, snapshot_summary
from asgard_provider.catalog import split_table_name
from asgard_provider.exceptions import AsgardError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.lineage import LineageMixin


class DataQualityError(AsgardError):
    """A data-quality check failed; the message lists every failed check."""


class IcebergTableCheckOperator(LineageMixin, BaseOperator):
    """Check the current snapshot of Iceberg tables and publish each as an asset event.

    Checks run in DuckDB over the table's Arrow scan; every failure is reported, then the task fails.

    :param tables: ``namespace.table`` names to check.
    :param min_rows: fewest rows each table must hold.
    :param max_rows: most rows allowed (``None``: no bound).
    :param not_null: columns that must never be NULL.
    :param unique: column groups that must identify a row, e.g. ``[["account_id", "snapshot_date"]]``.
    :param accepted_values: allowed non-NULL values per column.
    :param row_filter: Iceberg filter limiting the checked rows (templated), e.g. ``snapshot_date == '{{ ds }}'``.
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
        row_filter: str | None = None,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tables = list(tables)
        self.min_rows = min_rows
        self.max_rows = max_rows
        self.not_null = list(not_null)
        self.unique = [list(group) for group in unique]
        self.accepted_values = dict(accepted_values or {})
        self.row_filter = row_filter
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the checks on every table; return each table's snapshot summary."""
        hook = IcebergHook(self.iceberg_conn_id)
        results: dict[str, Any] = {}
        failures: list[str] = []
        for name in self.tables:
            table_name = ".".join(split_table_name(name))
            table = hook.load_table(table_name)
            summary = snapshot_summary(table)
            self.lineage_input(table_name, table=table)
            scan = table.scan(row_filter=self.row_filter) if self.row_filter else table.scan()
            problems = self._check(table_name, scan.to_arrow())
            failures += problems
            summary["checks_failed"] = len(problems)
            results[table_name] = summary
            publish(context, table_name, **summary)
            self.log.info(
                "%s: snapshot %s, %s rows, %d failed checks",
                table_name,
                summary["snapshot_id"],
                summary["total_records"],
                len(problems),
            )
        if failures:
            raise DataQualityError("data-quality checks failed:\n" + "\n".join(f"  - {f}" for f in failures))
        return results

    def _check(self, name: str, data: Any) -> list[str]:
        import duckdb

        problems: list[str] = []
        columns = set(data.column_names)
        wanted = set(self.not_null) | {c for g in self.unique for c in g} | set(self.accepted_values)
        missing = sorted(wanted - columns)
        if missing:
            return [f"{name}: checked columns {missing} do not exist (columns: {sorted(columns)})"]
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


def _scalar(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
