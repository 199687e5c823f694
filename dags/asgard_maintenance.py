"""Airflow DAG maintaining the Iceberg catalog (expire snapshots, compact, remove orphans), from include/."""

from asgard_provider.maintenance import build_maintenance_dag, load_maintenance_config
from asgard_provider.settings import include_dir

dag = build_maintenance_dag(load_maintenance_config(include_dir()))
