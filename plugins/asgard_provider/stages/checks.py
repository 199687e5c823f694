"""Generated check stages: data-quality checks on the tables a transform or the dbt project writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from asgard_provider.stages.base import StageModel


class TableChecks(StageModel):
    """Data-quality checks on one table; a failure stops the run before later stages read the table."""

    min_rows: int = Field(default=1, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    not_null: list[str] = []
    unique: list[list[str]] = Field(default=[], description="column groups that identify a row")
    accepted_values: dict[str, list[Any]] = {}
    absent_columns: list[str] = Field(
        default=[], description="columns that must not exist (personal data kept out of the table), any letter case"
    )
    branch_retention_days: int = Field(
        default=7, ge=1, description="days a run's branch is kept after its checks failed (write-audit-publish)"
    )


def check_task_id(checked: str) -> str:
    """Task id of the checks after stage or task group ``checked``."""
    return f"check_{checked}"


def build_checks(
    checked: str,
    tables: Sequence[str],
    checks: TableChecks,
    per_table: Mapping[str, TableChecks] | None = None,
    publish_with: Sequence[str] = (),
) -> Any:
    """One IcebergTableCheckOperator per table group; publishes each table's snapshot as an asset event.

    ``publish_with`` (one checked table only) turns on write-audit-publish: the checks read the run's branch, then
    publish it for the table and ``publish_with`` (e.g. its quarantine table), which become outlets too.
    """
    from airflow.sdk import TaskGroup

    from asgard_provider.assets import table_asset
    from asgard_provider.operators.checks import IcebergTableCheckOperator

    per_table = per_table or {}
    if len(tables) == 1 or not per_table:
        spec = per_table.get(tables[0], checks) if len(tables) == 1 else checks
        audit = {"write_audit_publish": True, "publish_with": list(publish_with)} if publish_with else {}
        return IcebergTableCheckOperator(
            task_id=check_task_id(checked),
            tables=list(tables),
            outlets=[table_asset(t) for t in [*tables, *publish_with]],
            **audit,
            **spec.model_dump(),
        )
    with TaskGroup(group_id=check_task_id(checked)) as group:
        for table in tables:
            spec = per_table.get(table, checks)
            IcebergTableCheckOperator(
                task_id=table.replace(".", "__"), tables=[table], outlets=[table_asset(table)], **spec.model_dump()
            )
    return group
