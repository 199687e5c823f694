"""MLflow tracking and model registry calls without Airflow, on plain :class:`MLflowSettings`.

:class:`~asgard_provider.hooks.mlflow.MLflowHook` is this class with its settings from an Airflow connection;
engines and the task pod use it directly.
"""

from __future__ import annotations

import os
import re
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

from asgard_provider.engines.stores import MLflowSettings
from asgard_provider.exceptions import AsgardError, InferenceError, TrainingError
from asgard_provider.library_logs import quiet_library_logs

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class MLflowStore:
    """Tracking, artifact and registry calls against one MLflow server; every failure is an Asgard error."""

    def __init__(self, settings: MLflowSettings | None = None) -> None:
        self._given = settings  # None: a subclass (the hook) overrides mlflow_settings
        quiet_library_logs()

    def mlflow_settings(self) -> MLflowSettings:
        """Tracking URI, artifact root and credentials."""
        if self._given is None:
            raise TrainingError("MLflowStore needs MLflowSettings")
        return self._given

    def tracking_uri(self) -> str:
        """Return the MLflow tracking URI (also used as the registry URI)."""
        return self.mlflow_settings().tracking_uri

    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts (``None``: the tracking server decides)."""
        return self.mlflow_settings().artifact_root

    def env(self) -> dict[str, str]:
        """Environment variables that point an MLflow client (e.g. a training subprocess) at this server."""
        return self.mlflow_settings().env()

    def _prepare(self) -> None:
        uri = self.tracking_uri()
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        root = self.artifact_root()
        if root and root.startswith("file://"):
            Path(root[len("file://") :]).mkdir(parents=True, exist_ok=True)
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            if key in self.env():
                os.environ[key] = self.env()[key]  # the REST client reads credentials from the environment

    @cached_property
    def _client(self) -> Any:
        import mlflow

        self._prepare()
        # Some MLflow internals (e.g. resolving models:/ URIs in the SQL registry) use the process-wide URI;
        # without this they would create ./mlflow.db in the worker's working directory.
        mlflow.set_tracking_uri(self.tracking_uri())
        mlflow.set_registry_uri(self.tracking_uri())
        try:
            return mlflow.MlflowClient(tracking_uri=self.tracking_uri(), registry_uri=self.tracking_uri())
        except Exception as exc:
            raise TrainingError(f"cannot open MLflow at {self.tracking_uri()}: {exc}") from exc

    def client(self) -> Any:
        """Return the ``mlflow.MlflowClient`` for tracking and registry calls."""
        return self._client

    def ensure_experiment(self, name: str) -> str:
        """Return the id of experiment ``name``, creating (or restoring) it with Asgard's artifact location."""
        client = self.client()
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                root = self.artifact_root()
                location = f"{root.rstrip('/')}/{_UNSAFE.sub('_', name)}" if root else None
                return str(client.create_experiment(name, artifact_location=location))
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)
        except Exception as exc:
            raise TrainingError(
                f"cannot create or open MLflow experiment {name!r} at {self.tracking_uri()}: {exc}"
            ) from exc

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        """Start a run that a subprocess will log into (via ``MLFLOW_RUN_ID``); return its id."""
        try:
            return str(self.client().create_run(experiment_id, run_name=run_name, tags=tags).info.run_id)
        except Exception as exc:
            raise TrainingError(f"cannot create MLflow run {run_name!r} in experiment {experiment_id}: {exc}") from exc

    def finish_run(self, run_id: str, status: str) -> None:
        """Mark a run FINISHED or FAILED (a run the script already ended keeps FINISHED unless failing)."""
        try:
            run = self.client().get_run(run_id)
            if run.info.status == "RUNNING" or status == "FAILED":
                self.client().set_terminated(run_id, status=status)
        except Exception as exc:
            raise TrainingError(f"cannot set MLflow run {run_id} to {status}: {exc}") from exc

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """Latest value of each metric logged in the run."""
        try:
            return {k: float(v) for k, v in self.client().get_run(run_id).data.metrics.items()}
        except Exception as exc:
            raise TrainingError(f"cannot read metrics of MLflow run {run_id}: {exc}") from exc

    def find_model(self, run_id: str, artifact_path: str) -> tuple[str, str | None]:
        """Locate the model a run logged under ``artifact_path``; return (artifact URI, logged-model id or None).

        MLflow 3 stores ``log_model(name=...)`` output as a LoggedModel outside the run's artifact folder;
        older-style run artifacts holding an ``MLmodel`` file are accepted too.
        """
        client = self.client()
        try:
            run = client.get_run(run_id)
            outputs = run.outputs.model_outputs if run.outputs else []
            candidates = []
            for output in outputs:
                model = client.get_logged_model(output.model_id)
                if model.name == artifact_path and str(model.status) in ("READY", "LoggedModelStatus.READY"):
                    candidates.append((output.step, model.creation_timestamp, model.model_id, model.artifact_location))
            if candidates:
                # The artifact location, not models:/<id>: the SQL registry resolves such URIs through the
                # process-global tracking URI rather than this client's.
                _, _, model_id, location = max(candidates)
                return str(location), str(model_id)
            names = {a.path for a in client.list_artifacts(run_id, artifact_path)}
        except Exception as exc:
            raise TrainingError(f"cannot look up the model of MLflow run {run_id}: {exc}") from exc
        if f"{artifact_path}/MLmodel" in names:
            return f"runs:/{run_id}/{artifact_path}", None
        raise TrainingError(
            f"MLflow run {run_id} logged no model named {artifact_path!r}: the training script must call "
            f"mlflow.<flavor>.log_model(model, name={artifact_path!r}) inside mlflow.start_run()"
        )

    def register_version(
        self, name: str, source: str, run_id: str, model_id: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """Register ``source`` as a new version of ``name`` (creating the registered model); return the version."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            try:
                client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
            return str(version.version)
        except Exception as exc:
            raise TrainingError(f"cannot register {source} as a version of model {name!r}: {exc}") from exc

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``name@alias`` at ``version``."""
        try:
            self.client().set_registered_model_alias(name, alias, version)
        except Exception as exc:
            raise TrainingError(f"cannot set alias {alias!r} of model {name!r} to version {version}: {exc}") from exc

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Tag one model version."""
        try:
            self.client().set_model_version_tag(name, version, key, value)
        except Exception as exc:
            raise TrainingError(f"cannot tag version {version} of model {name!r}: {exc}") from exc

    def version_for(
        self,
        name: str,
        *,
        alias: str | None = None,
        version: str | None = None,
        error: type[AsgardError] = InferenceError,
    ) -> str:
        """Resolve ``name@alias`` (or check ``version`` exists); raise ``error`` naming the model if absent."""
        try:
            if version is not None:
                return str(self.client().get_model_version(name, str(version)).version)
            return str(self.client().get_model_version_by_alias(name, alias or "champion").version)
        except Exception as exc:
            what = f"version {version}" if version is not None else f"alias @{alias or 'champion'}"
            raise error(f"registered model {name!r} has no {what} in {self.tracking_uri()}: {exc}") from exc

    def load_sklearn_model(self, name: str, version: str) -> Any:
        """Load version ``version`` of registered model ``name`` as a scikit-learn estimator."""
        return self.load_sklearn(f"models:/{name}/{version}")

    def load_sklearn(self, uri: str, error: type[AsgardError] = InferenceError) -> Any:
        """Load the scikit-learn model at ``uri`` (``models:/...``, ``runs:/...`` or an artifact location)."""
        import mlflow
        import mlflow.sklearn

        self.client()  # also points the process-wide MLflow URIs at this server
        try:
            with warnings.catch_warnings():
                # skops probes attributes of every imported module while loading; Airflow's lazy modules answer
                # each probe with a FutureWarning (hundreds per load).
                warnings.simplefilter("ignore", FutureWarning)
                return mlflow.sklearn.load_model(uri)
        except Exception as exc:
            raise error(f"cannot load {uri} from {self.tracking_uri()} as a scikit-learn model: {exc}") from exc

    def version_run_id(self, name: str, version: str) -> str | None:
        """Run that produced version ``version`` of ``name`` (``None`` for versions registered without a run)."""
        try:
            return self.client().get_model_version(name, str(version)).run_id or None
        except Exception as exc:
            raise InferenceError(f"cannot read version {version} of model {name!r}: {exc}") from exc

    def download_artifact(self, run_id: str, path: str, folder: Path | str) -> Path | None:
        """Download artifact ``path`` of a run into ``folder``; ``None`` when the run has no such artifact."""
        client = self.client()
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        try:
            listed = {a.path for a in client.list_artifacts(run_id, parent or None)}
            if path not in listed:
                return None
            return Path(client.download_artifacts(run_id, path, str(folder)))
        except Exception as exc:
            raise TrainingError(f"cannot download artifact {path} of MLflow run {run_id}: {exc}") from exc

    def log_to_run(
        self,
        run_id: str,
        *,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        files: dict[str, list[Path]] | None = None,
    ) -> None:
        """Add metrics, tags and artifact files (``{artifact folder: [paths]}``) to a run, even a finished one."""
        client = self.client()
        try:
            for key, value in (metrics or {}).items():
                client.log_metric(run_id, key, float(value))
            for key, text in (tags or {}).items():
                client.set_tag(run_id, key, text)
            for folder, paths in (files or {}).items():
                for path in paths:
                    client.log_artifact(run_id, str(path), folder or None)
        except Exception as exc:
            raise TrainingError(f"cannot log to MLflow run {run_id}: {exc}") from exc

    def test_connection(self) -> tuple[bool, str]:
        """List experiments to prove the tracking server answers."""
        try:
            experiments = self.client().search_experiments(max_results=5)
        except Exception as exc:
            return False, str(exc)
        return True, f"MLflow reachable at {self.tracking_uri()}, {len(experiments)}+ experiments"
