"""The catalog's maintenance DAG, from the optional ``include/maintenance.yaml``.

Every key has a default, so the DAG exists without the file::

    schedule: "@daily"
    namespaces: [bronze, silver, gold]   # default: every namespace
    snapshot_retention_days: 7           # snapshots younger than this stay (rollback, backfills)
    retain_last: 5                       # and always the newest N of each table
    orphan_min_age_hours: 72             # unreferenced files younger than this are left alone (>= 24)
    compact_min_input_files: 5           # compact a partition once it has this many small files
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from asgard_provider.engines.maintenance import MIN_ORPHAN_AGE_HOURS, MaintenancePolicy
from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.stages.base import StageModel

#: DAG id of the maintenance DAG.
MAINTENANCE_DAG_ID = "asgard_maintenance"
#: The config file, relative to include/.
CONFIG_FILE = "maintenance.yaml"


class MaintenanceConfig(StageModel):
    """Schedule, scope and retention of the catalog's maintenance."""

    schedule: str | None = "@daily"
    start_date: date = date(2025, 1, 1)
    namespaces: list[str] = Field(default=[], description="namespaces to maintain (default: all)")
    snapshot_retention_days: int = Field(default=7, ge=0)
    retain_last: int = Field(default=5, ge=1)
    orphan_min_age_hours: int = Field(default=72, ge=MIN_ORPHAN_AGE_HOURS)
    compact_min_input_files: int = Field(default=5, ge=2)

    def policy(self) -> MaintenancePolicy:
        """Return the engine's policy."""
        return MaintenancePolicy(
            snapshot_retention_days=self.snapshot_retention_days,
            retain_last=self.retain_last,
            orphan_min_age_hours=self.orphan_min_age_hours,
            compact_min_input_files=self.compact_min_input_files,
        )


def load_maintenance_config(include: Path) -> MaintenanceConfig:
    """Read ``include/maintenance.yaml`` (defaults when it is missing); errors name the file and key."""
    from asgard_provider.pipeline.yaml_loader import load_yaml

    path = include / CONFIG_FILE
    raw: Any = load_yaml(path) if path.is_file() else {}
    try:
        return MaintenanceConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise PipelineConfigError(str(path), problems) from None


def build_maintenance_dag(config: MaintenanceConfig) -> Any:
    """Return the DAG with one maintenance task over the catalog."""
    from airflow.sdk import DAG

    from asgard_provider.operators.maintenance import IcebergMaintenanceOperator

    with DAG(
        dag_id=MAINTENANCE_DAG_ID,
        schedule=config.schedule,
        start_date=datetime.combine(config.start_date, time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["asgard", "maintenance"],
        doc_md=__doc__,
    ) as dag:
        IcebergMaintenanceOperator(task_id="maintain_tables", namespaces=config.namespaces, policy=config.policy())
    return dag
