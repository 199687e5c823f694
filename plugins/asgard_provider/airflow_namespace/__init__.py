"""Asgard's pipeline factory under ``airflow.providers.asgard``, so the DAG processor pre-imports it.

Airflow's DAG processor imports the ``airflow.*`` modules a DAG file names before it forks the child that
parses the file (``[dag_processor] parsing_pre_import_modules``, on by default). A DAG file that imports the
factory from here gets the provider, pydantic, Cosmos and the embedded operators from that parent, instead of
importing them again in every child. Stage modules import their operators lazily (so ``asgard validate`` stays
light); this list names the ones a DAG build on the embedded default needs.
"""

import importlib

from asgard_provider.maintenance import build_maintenance_dag, load_maintenance_config
from asgard_provider.pipeline.factory import dag_from_file
from asgard_provider.settings import include_dir

#: Modules a DAG build imports lazily: Cosmos's task group and the embedded stages' operators.
BUILD_MODULES = (
    "cosmos.airflow.task_group",
    "asgard_provider.assets",
    "asgard_provider.dbt.cosmos",
    "asgard_provider.operators.checks",
    "asgard_provider.operators.export",
    "asgard_provider.operators.feast",
    "asgard_provider.operators.inference",
    "asgard_provider.operators.ingest",
    "asgard_provider.operators.maintenance",
    "asgard_provider.operators.mlflow",
    "asgard_provider.operators.spark_iceberg",
)
for _module in BUILD_MODULES:
    importlib.import_module(_module)

__all__ = ["build_maintenance_dag", "dag_from_file", "include_dir", "load_maintenance_config"]
