"""Exceptions raised by Asgard. SDK errors are wrapped at the hook boundary.

This module imports nothing from Airflow: training scripts, the Spark driver and pods import Asgard's
engines (and so these exceptions) in processes where Airflow is not configured or not installed. Airflow
fails a task on any exception, so Asgard's errors need no Airflow base class.
"""

from __future__ import annotations


class AsgardError(Exception):
    """Base class for every error Asgard raises."""


class PipelineConfigError(AsgardError):
    """A pipeline YAML is invalid; the message names the file, the key and the fix."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid pipeline config {path}:\n{lines}")


class PipelineNotFoundError(AsgardError):
    """No pipeline YAML for a pipeline id (the API's pages and batch runs are per pipeline)."""


class CatalogError(AsgardError):
    """The Iceberg catalog could not be reached or a table operation failed."""


class SourceError(AsgardError):
    """A source system (database, file, API) could not be read."""


class SourceCancelled(SourceError):
    """A source read stopped because its task was told to terminate (SIGTERM)."""


class TransformError(AsgardError):
    """A Spark or dbt transformation failed; the message carries the engine's error and the SQL file."""


class FeatureStoreError(AsgardError):
    """Feast registration, materialization or retrieval failed."""


class TrainingError(AsgardError):
    """A training script failed or produced no usable model."""


class ModelTaskError(TrainingError):
    """The model a training script logged does not fit the pipeline's ML task type (``train.task``)."""


class InferenceError(AsgardError):
    """Batch scoring failed."""


class PublishError(AsgardError):
    """A run's branch could not be published to main (main moved since the branch was made, or no branch)."""


class PublishConflictError(PublishError):
    """Another run published the table since this run branched, and this run's commits cannot be replayed onto it.

    Nothing moved. Retryable: the writing task's retry branches again from the new main and publishes on top of it.
    """


class ExportError(AsgardError):
    """A table could not be exported as files (bad columns, an unwritable destination); no partial file set is left."""


class DataQualityError(AsgardError):
    """A data-quality check failed; the message lists every failed check."""


class QueryError(AsgardError):
    """The statement is refused, names an unknown table, fails or runs out of time."""


class QueryEngineError(AsgardError):
    """The query engine (Trino) did not answer, or failed on its side (not the statement's fault)."""


class PathEscapeError(ValueError):
    """A configured path is absolute or resolves (``..``, symlinks) outside the folder it must stay in."""


class EntityNotFoundError(InferenceError):
    """The online store holds no features for the requested entity."""


class InvalidEntityIdError(InferenceError):
    """The requested id cannot be a value of the join key (e.g. ``abc`` for an integer key)."""


class ModelNotFoundError(InferenceError):
    """The registry has no such model, version or alias."""


class InvalidFeaturesError(InferenceError):
    """A feature row given by the caller does not match the model's columns."""
