"""Exceptions raised by Asgard. SDK errors are wrapped at the hook boundary."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class AsgardError(AirflowException):
    """Base class for every error Asgard raises."""


class PipelineConfigError(AsgardError):
    """A pipeline YAML is invalid; the message names the file, the key and the fix."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid pipeline config {path}:\n{lines}")


class CatalogError(AsgardError):
    """The Iceberg catalog could not be reached or a table operation failed."""


class SourceError(AsgardError):
    """A source system (database, file, API) could not be read."""


class TransformError(AsgardError):
    """A Spark or dbt transformation failed; the message carries the engine's error and the SQL file."""


class FeatureStoreError(AsgardError):
    """Feast registration, materialization or retrieval failed."""


class TrainingError(AsgardError):
    """A training script failed or produced no usable model."""


class InferenceError(AsgardError):
    """Batch scoring failed."""
