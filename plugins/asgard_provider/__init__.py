"""Asgard provider for Apache Airflow: raw data to predictions on Apache Iceberg."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Return provider metadata for Airflow's ProvidersManager."""
    from asgard_provider.connections import provider_connection_types

    return {
        "package-name": "asgard-provider",
        "name": "Asgard",
        "description": "Ingest, Spark/Iceberg transforms, dbt, Feast, MLflow training and batch inference.",
        "versions": [__version__],
        "connection-types": provider_connection_types(),
        "config": {
            "asgard": {
                "description": "Asgard provider settings.",
                "options": {
                    "local_spark_pool": {
                        "description": (
                            "Airflow pool for local Spark transforms (each starts its own JVM); empty: the default "
                            "pool. `make airflow` creates asgard_spark with one slot."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "asgard_spark",
                        "default": "",
                    }
                },
            }
        },
        "extra-links": [
            "asgard_provider.links.MLflowRunLink",
            "asgard_provider.links.MLflowModelVersionLink",
            "asgard_provider.links.SparkUILink",
        ],
        "hooks": [
            {
                "integration-name": "Asgard",
                "python-modules": [
                    "asgard_provider.hooks.iceberg",
                    "asgard_provider.hooks.spark",
                    "asgard_provider.hooks.feast",
                    "asgard_provider.hooks.mlflow",
                    "asgard_provider.hooks.sql_source",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Asgard",
                "python-modules": [
                    "asgard_provider.operators.ingest",
                    "asgard_provider.operators.spark_iceberg",
                    "asgard_provider.operators.feast",
                    "asgard_provider.operators.mlflow",
                    "asgard_provider.operators.inference",
                    "asgard_provider.operators.export",
                ],
            }
        ],
    }
