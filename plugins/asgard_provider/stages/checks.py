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
    write_audit_publish: bool = False,
) -> Any:
    """One IcebergTableCheckOperator per table group; publishes each table's snapshot as an asset event.

    With ``write_audit_publish`` (implied by ``publish_with``: one checked table only) the checks read the run's
    branch, then publish it for the tables and ``publish_with`` (e.g. a quarantine table), which become outlets
    too. Tables with checks of their own are audited one task each, then one publish task moves them all.
    """
    from airflow.sdk import TaskGroup

    from asgard_provider.assets import table_asset
    from asgard_provider.operators.checks import IcebergPublishOperator, IcebergTableCheckOperator

    per_table = per_table or {}
    audit = {"write_audit_publish": True} if write_audit_publish or publish_with else {}
    if len(tables) == 1 or not per_table:
        spec = per_table.get(tables[0], checks) if len(tables) == 1 else checks
        return IcebergTableCheckOperator(
            task_id=check_task_id(checked),
            tables=list(tables),
            outlets=[table_asset(t) for t in [*tables, *publish_with]],
            publish_with=list(publish_with),
            **audit,
            **spec.model_dump(),
        )
    with TaskGroup(group_id=check_task_id(checked)) as group:
        audits = [
            IcebergTableCheckOperator(
                task_id=table.replace(".", "__"),
                tables=[table],
                outlets=[] if audit else [table_asset(table)],
                **audit,
                **({"publish": False} if audit else {}),
                **per_table.get(table, checks).model_dump(),
            )
            for table in tables
        ]
        if audit:
            audits >> IcebergPublishOperator(
                task_id=PUBLISH_TASK_ID, tables=list(tables), outlets=[table_asset(t) for t in tables]
            )
    return group


#: Task id (inside a stage's checks group) of the task publishing the audited tables.
PUBLISH_TASK_ID = "publish"
