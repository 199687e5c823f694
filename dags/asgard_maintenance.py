"""Airflow DAG maintaining the Iceberg catalog (expire snapshots, compact, remove orphans), from include/."""

# Imported from airflow.providers.asgard so the DAG processor pre-imports the provider once, not in every parse.
from airflow.providers.asgard import build_maintenance_dag, include_dir, load_maintenance_config

dag = build_maintenance_dag(load_maintenance_config(include_dir()))
