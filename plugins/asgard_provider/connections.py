"""Connection types of Asgard's hooks as the Airflow UI shows them: labels, hidden fields, typed extra fields.

Airflow 3.2+ reads this from the provider info (``ui-field-behaviour``, ``conn-fields``) without importing the
hooks; the hooks' ``get_ui_field_behaviour`` classmethods return the same behaviour for older Airflow versions.
Extra fields are stored in the connection's ``extra`` JSON under their plain names, which is where the hooks read
them.
"""

from __future__ import annotations

import copy
import json
from typing import Any


def _text(label: str, description: str, default: str | None = None, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    if enum is not None:
        schema["enum"] = enum
    return {"label": label, "schema": schema, "description": description}


#: Connection type -> (hook class, hook name, field behaviour, extra fields).
CONNECTION_TYPES: dict[str, dict[str, Any]] = {
    "asgard_iceberg": {
        "hook": "asgard_provider.hooks.iceberg.IcebergHook",
        "name": "Iceberg catalog (Asgard)",
        "behaviour": {
            "hidden_fields": ["port", "schema"],
            "relabeling": {"host": "Catalog URI", "login": "Catalog DB user", "password": "Catalog DB password"},
            "placeholders": {
                "host": "postgresql+psycopg2://host:5432/catalog or http://rest-catalog:8181",
                "extra": json.dumps({"catalog_type": "sql", "warehouse": "s3://lake/warehouse"}),
            },
        },
        "fields": {
            "catalog_type": _text("Catalog type", "sql (SQLite/PostgreSQL catalog) or rest", "sql", ["sql", "rest"]),
            "warehouse": _text("Warehouse", "Where table data lives, e.g. s3://lake/warehouse or file:///data/wh"),
        },
    },
    "asgard_spark": {
        "hook": "asgard_provider.hooks.spark.SparkHook",
        "name": "Spark (Asgard)",
        "behaviour": {
            "hidden_fields": ["schema", "login", "password"],
            "relabeling": {"host": "Master"},
            "placeholders": {"host": "local[2] or spark://spark-master", "extra": json.dumps({"conf": {}})},
        },
        "fields": {},
    },
    "asgard_mlflow": {
        "hook": "asgard_provider.hooks.mlflow.MLflowHook",
        "name": "MLflow (Asgard)",
        "behaviour": {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Tracking URI"},
            "placeholders": {
                "host": "http://mlflow:5000",
                "extra": json.dumps({"artifact_location": "s3://lake/mlflow"}),
            },
        },
        "fields": {
            "artifact_location": _text(
                "Artifact location", "Where new experiments keep artifacts, e.g. s3://lake/mlflow"
            ),
            "ui_url": _text(
                "UI URL", "MLflow UI address for task links, when it differs from the tracking URI (https://mlflow...)"
            ),
        },
    },
    "asgard_feast": {
        "hook": "asgard_provider.hooks.feast.FeastHook",
        "name": "Feast feature store (Asgard)",
        "behaviour": {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Redis host (online store)", "port": "Redis port", "password": "Redis password"},
            "placeholders": {
                "extra": json.dumps({"project": "asgard", "registry": "postgresql+psycopg2://feast@db:5432/feast"}),
            },
        },
        "fields": {
            "project": _text("Project", "Feast project name", "asgard"),
            "registry": _text("Registry", "Registry database URL or file path (default: a file under $ASGARD_HOME)"),
            "repo_path": _text("Repo path", "Folder where feature_store.yaml is written for training scripts"),
        },
    },
}


def provider_connection_types() -> list[dict[str, Any]]:
    """Return the ``connection-types`` entries of ``get_provider_info()`` in the kebab-case form Airflow expects."""
    entries = []
    for conn_type, spec in CONNECTION_TYPES.items():
        behaviour = spec["behaviour"]
        entry: dict[str, Any] = {
            "connection-type": conn_type,
            "hook-class-name": spec["hook"],
            "hook-name": spec["name"],
            "ui-field-behaviour": {
                "hidden-fields": list(behaviour["hidden_fields"]),
                "relabeling": dict(behaviour["relabeling"]),
                "placeholders": dict(behaviour["placeholders"]),
            },
        }
        if spec["fields"]:
            entry["conn-fields"] = spec["fields"]
        entries.append(entry)
    return entries


def ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """Return the form settings of ``conn_type`` in the shape of a hook's ``get_ui_field_behaviour()``."""
    return copy.deepcopy(CONNECTION_TYPES[conn_type]["behaviour"])
