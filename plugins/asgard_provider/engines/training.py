"""Training without Airflow: run a script in an MLflow run, then register, gate and promote its model.

:func:`train` creates the MLflow run (tagged with what the caller passes, the script's code version and the input
snapshots), writes the :class:`~asgard_provider.training.TrainingContext` file and runs the script as a
subprocess with an explicit minimal environment (:mod:`asgard_provider.child_env`), streaming its output to
``log``. The model it logged must fit the task; it becomes a new registered version, scored on the run's holdout
against the current champion, and gets the champion alias only when every gate passes.
:class:`~asgard_provider.operators.mlflow.MLflowTrainOperator` and the task pod (:mod:`asgard_provider.pod_entry`)
both call it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asgard_provider import evaluation
from asgard_provider.child_env import child_env, store_credentials
from asgard_provider.engines import iceberg_tables, wap
from asgard_provider.engines.feature_batches import ViewSource, requested_views, view_sources
from asgard_provider.engines.mlflow_store import MLflowStore
from asgard_provider.engines.monitoring import PREDICTION_PROFILE_ARTIFACT, prediction_profiles
from asgard_provider.engines.stores import FeastStore, Stores, open_catalog
from asgard_provider.exceptions import (
    AsgardError,
    CatalogError,
    FeatureStoreError,
    ModelTaskError,
    PathEscapeError,
    TrainingError,
)
from asgard_provider.paths import contained
from asgard_provider.settings import asgard_home, include_dir
from asgard_provider.training import CONTEXT_ENV, HOLDOUT_ARTIFACT, TrainingContext

_LOG = logging.getLogger(__name__)

#: Lines of script output quoted in the error when a script fails.
TAIL_LINES = 40
#: What loading, scoring and comparing the logged model imports in this process; imported while the script
#: runs, when this process only waits (``load_model`` fell from 7.1 s to 0.1 s at load 8, the script rose 4 s).
AFTER_SCRIPT_IMPORTS = ("mlflow.sklearn", "skops.io", "sklearn.metrics", "pandas", "pyarrow.parquet")


def resolve_script(script: str, base: Path | str | None = None) -> Path:
    """Return ``<include>/training/<script>``; reject paths leaving that folder or files that do not exist."""
    folder = (Path(base) if base is not None else include_dir()).resolve() / "training"
    try:
        path = contained(folder, script, "include/training/")
    except PathEscapeError as exc:
        raise TrainingError(f"training script {exc}") from None
    if not path.is_file():
        raise TrainingError(f"training script {path} does not exist (paths are relative to {folder})")
    return path


def code_version(script: Path) -> dict[str, str]:
    """Tags naming the code a run used: the script's sha256 and, if it lives in a git checkout, the commit."""
    tags = {"asgard.script_sha256": hashlib.sha256(script.read_bytes()).hexdigest(), "mlflow.source.name": script.name}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(script.parent), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha:
        tags["asgard.git_sha"] = tags["mlflow.source.git.commit"] = sha
        changed = git("status", "--porcelain", "--untracked-files=no")
        tags["asgard.git_dirty"] = "true" if changed else "false"
        # The script itself may differ from the commit even if the sha above is right for everything else.
        script_changed = git("status", "--porcelain", "--", script.name)
        tags["asgard.script_committed"] = "false" if script_changed is None or script_changed else "true"
    return tags


@dataclass(frozen=True)
class TrainingSpec:
    """What to train: the script (under ``include/training/``), its inputs, the gates and where the model goes.

    ``where`` names the config in errors (``include/pipelines/<dag>.yaml``); ``task_id`` names the task;
    ``run_tags`` (DAG, run, task...) are set on the MLflow run. ``timeout`` is in seconds (``None``: no limit).
    ``hyperparameters`` (the script's ``ctx.params``) may be a JSON object's text, e.g. a rendered template.
    ``feature_views`` describe the views the features come from (:meth:`ViewSource.to_dict`, the factory passes
    the pipeline's); a view not described is looked up in the Feast registry.
    """

    script: str
    experiment_name: str
    registered_model_name: str
    features: tuple[str, ...]
    label_table: str
    label_column: str
    entity_keys: tuple[str, ...]
    timestamp_field: str
    hyperparameters: Mapping[str, Any] | str = field(default_factory=dict)
    task: str = evaluation.BINARY
    min_metrics: Mapping[str, float] = field(default_factory=dict)
    max_metrics: Mapping[str, float] = field(default_factory=dict)
    compare_metric: str = ""
    compare_with_champion: bool = True
    model_artifact_path: str = "model"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    feature_views: tuple[Mapping[str, Any], ...] = ()
    include_dir: str | None = None
    python: str | None = None
    timeout: float | None = None
    task_id: str = "train_model"
    run_name: str = ""
    run_tags: Mapping[str, str] = field(default_factory=dict)
    where: str = "the pipeline file"
    #: Iceberg filter on the label rows (``category = 'fresh'``: one model per partition value).
    row_filter: str | None = None
    #: Iceberg tag (``train.as_of_tag``): train on the label table and every feature source at that tag.
    as_of_tag: str | None = None

    @property
    def metric(self) -> str:
        """The holdout metric the new model must match or beat the champion on."""
        return self.compare_metric or evaluation.DEFAULT_COMPARE_METRIC.get(self.task, "")

    def params(self) -> dict[str, Any]:
        """Return the hyperparameters as a mapping; raise unless they are (or render to) a JSON object."""
        value = self.hyperparameters
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise TrainingError(f"hyperparameters {value!r} did not render to JSON: {exc}") from exc
        if not isinstance(value, Mapping):
            raise TrainingError(f"hyperparameters must be a JSON object (a mapping), got {type(value).__name__}")
        return dict(value)

    @property
    def views(self) -> list[str]:
        """Feature views the features come from, sorted."""
        return sorted({ref.split(":", 1)[0] for ref in self.features})


@dataclass(frozen=True)
class RunStarted:
    """The MLflow run a training is logging into (known before the script starts)."""

    experiment_id: str
    run_id: str
    model_name: str


@dataclass(frozen=True)
class HoldoutComparison:
    """The new model (and the champion) scored on the run's holdout."""

    metric: str
    rows: int | None = None
    new: float | None = None
    champion: float | None = None
    summary: str | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training: the run, the registered version, its metrics and the promotion decision."""

    experiment_id: str
    run_id: str
    model_name: str
    model_version: str
    alias: str
    metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    promoted: bool
    gate_failures: list[str]
    promotion_reason: str
    champion_version: str | None
    holdout: HoldoutComparison
    label_snapshot_id: int
    tracking_uri: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.model_name}/{self.model_version}"

    def as_dict(self) -> dict[str, Any]:
        """Return the task's result (XCom)."""
        holdout = {k: v for k, v in asdict(self.holdout).items() if k != "summary" or v is not None}
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "alias": self.alias,
            "metrics": dict(self.metrics),
            "promoted": self.promoted,
            "gate_failures": list(self.gate_failures),
            "promotion_reason": self.promotion_reason,
            "champion_version": self.champion_version,
            "holdout": holdout,
        }


class Timings:
    """Seconds spent per step of a training, logged at the end (where the task's time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name``."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - start, 3)


class Trainer:
    """One training of ``spec`` against ``stores``; :meth:`kill` stops the script (the task's ``on_kill``)."""

    def __init__(self, spec: TrainingSpec, stores: Stores, log: logging.Logger = _LOG) -> None:
        self.spec = spec
        self.stores = stores
        self.log = log
        self.mlflow = MLflowStore(stores.mlflow)
        self.timings = Timings()
        self._proc: subprocess.Popen[str] | None = None

    def run(self, on_started: Callable[[RunStarted], None] | None = None) -> TrainingOutcome:
        """Train, register, gate and promote; ``on_started`` hears of the MLflow run before the script starts."""
        spec = self.spec
        script, params = self._checked()
        with self.timings.step("input_snapshots"):
            views = self._views()
            label_snapshot, inputs, pins = self._input_snapshots(views)
        with self.timings.step("create_run"):
            started = self._create_run(script, label_snapshot, inputs)
        if on_started is not None:
            on_started(started)
        run_id = started.run_id
        try:
            with tempfile.TemporaryDirectory(prefix="asgard-train-") as workdir:
                context = self._context(label_snapshot, params, pins, views)
                ctx_file = context.write(Path(workdir) / "training_context.json")
                with self.timings.step("script"):
                    threading.Thread(target=_import_quietly, args=(AFTER_SCRIPT_IMPORTS,), daemon=True).start()
                    self._run_script(script, run_id, ctx_file, Path(workdir))
            self.mlflow.finish_run(run_id, "FINISHED")
            with self.timings.step("load_model"):
                model_uri, model_id = self.mlflow.find_model(run_id, spec.model_artifact_path)
                model = self._fitting_model(model_uri)
        except BaseException:
            self.mlflow.finish_run(run_id, "FAILED")
            raise
        try:
            self.mlflow.client().log_artifact(run_id, str(script), "code")
        except Exception as exc:  # a copy of the code is a convenience, not a requirement
            self.log.warning("could not attach %s to run %s: %s", script, run_id, exc)
        outcome = self._register(started, model_uri, model_id, model, label_snapshot)
        self.log.info("training steps (seconds): %s", outcome.timings)
        return outcome

    def _checked(self) -> tuple[Path, dict[str, Any]]:
        """Return the script's path and the hyperparameters; raise before any MLflow call if the spec is wrong."""
        spec = self.spec
        script = resolve_script(spec.script, spec.include_dir)
        if not spec.features:
            raise TrainingError(f"no features given for training script {script.name}")
        problems = evaluation.metric_problems(spec.task, "train.compare_metric", [spec.metric])
        if spec.task not in evaluation.TASK_TYPES or problems:
            evaluation.task_metrics(spec.task)  # names the unknown task type
            raise TrainingError(f"task {spec.task_id}: {problems[0]}")
        return script, spec.params()

    def kill(self) -> None:
        """Stop the training subprocess (and everything it forked), if it is running."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc)

    def _create_run(self, script: Path, label_snapshot: int, inputs: dict[str, int | None]) -> RunStarted:
        spec = self.spec
        experiment_id = self.mlflow.ensure_experiment(spec.experiment_name)
        tags = {
            **spec.run_tags,
            **code_version(script),
            "asgard.script": script.name,
            "asgard.label_table": spec.label_table,
            "asgard.label_table_snapshot_id": str(label_snapshot),
            "asgard.input_snapshots": json.dumps(inputs, sort_keys=True),
            "asgard.feature_views": ",".join(spec.views),
            "asgard.features": ",".join(spec.features),
            "asgard.registered_model": spec.registered_model_name,
        }
        if spec.as_of_tag:
            tags["asgard.as_of_tag"] = spec.as_of_tag
        run_id = self.mlflow.create_run(experiment_id, run_name=spec.run_name or spec.task_id, tags=tags)
        self.log.info("MLflow run %s in experiment %r (%s)", run_id, spec.experiment_name, self.mlflow.tracking_uri())
        return RunStarted(experiment_id, run_id, spec.registered_model_name)

    def _fitting_model(self, model_uri: str) -> Any:
        """Load the logged model; raise naming ``train.task`` in the pipeline file unless it fits the task."""
        model = self.mlflow.load_sklearn(model_uri, error=TrainingError)
        try:
            evaluation.check_model(model, self.spec.task)
        except ModelTaskError as exc:
            spec = self.spec
            raise ModelTaskError(f"{exc} ({spec.where}; script {spec.script}, task {spec.task_id})") from None
        return model

    def _views(self) -> list[ViewSource]:
        """Return the views the features come from: the spec's descriptions (no Feast import), else the registry's."""
        spec = self.spec
        try:
            given = [ViewSource.from_dict(view) for view in spec.feature_views]
            if {view.name for view in given} >= set(spec.views):
                return requested_views(given, spec.features)
            return view_sources(FeastStore(self.stores.feast, self.stores.catalog).store, spec.features)
        except FeatureStoreError as exc:
            raise TrainingError(f"task {spec.task_id} ({spec.where}): {exc}") from exc

    def _input_snapshots(self, views: list[ViewSource]) -> tuple[int, dict[str, int | None], dict[str, int]]:
        """Return the label snapshot pinned for the script, every input table's snapshot and the pinned features.

        Without ``as_of_tag`` the label table's current snapshot is pinned and the features are read as they are
        (no pins); with it, the label table and every feature view's source table are read at that tag.
        """
        spec = self.spec
        try:
            catalog = open_catalog(self.stores.catalog)
            table = iceberg_tables.load_table(catalog, spec.label_table)
        except AsgardError as exc:
            raise TrainingError(f"label table {spec.label_table} of task {spec.task_id} is unavailable: {exc}") from exc
        if spec.as_of_tag:
            label_snapshot = self._tagged(table, spec.label_table)
            pins = self._tagged_features(catalog, views)
            inputs: dict[str, int | None] = {view.table: pins[view.name] for view in views}
            return label_snapshot, {**inputs, spec.label_table: label_snapshot}, pins
        snapshot = table.current_snapshot()
        if snapshot is None:
            raise TrainingError(f"label table {spec.label_table} of task {spec.task_id} has no snapshot (no data)")
        inputs = {spec.label_table: snapshot.snapshot_id}
        try:
            for source in {view.table for view in views} - set(inputs):
                current = iceberg_tables.load_table(catalog, source).current_snapshot()
                inputs[source] = current.snapshot_id if current is not None else None
        except Exception as exc:  # lineage detail; the script's own read reports real problems
            self.log.warning("could not resolve the feature views' source snapshots: %s", exc)
        return snapshot.snapshot_id, inputs, {}

    def _tagged(self, table: Any, name: str) -> int:
        """Return the snapshot ``as_of_tag`` names in table ``name``; raise naming the key and the table's tags."""
        spec = self.spec
        try:
            return wap.tag_snapshot(table, name, str(spec.as_of_tag))
        except CatalogError as exc:
            raise TrainingError(f"train.as_of_tag in {spec.where} (task {spec.task_id}): {exc}") from None

    def _tagged_features(self, catalog: Any, views: list[ViewSource]) -> dict[str, int]:
        """Pin every feature view to its source table's ``as_of_tag`` snapshot (view name -> snapshot id)."""
        pins = {}
        for view in views:
            try:
                table = iceberg_tables.load_table(catalog, view.table)
            except AsgardError as exc:
                raise TrainingError(
                    f"source table {view.table} of feature view {view.name} is unavailable: {exc}"
                ) from exc
            pins[view.name] = self._tagged(table, view.table)
        return pins

    def _context(
        self, label_snapshot_id: int | None, params: dict[str, Any], pins: Mapping[str, int], views: list[ViewSource]
    ) -> TrainingContext:
        spec = self.spec
        return TrainingContext(
            feast_repo_path=str(FeastStore(self.stores.feast).repo_path()),
            features=list(spec.features),
            label_table=spec.label_table,
            label_column=spec.label_column,
            entity_key=spec.entity_keys[0],
            entity_keys=list(spec.entity_keys),
            timestamp_field=spec.timestamp_field,
            catalog=self.stores.catalog.as_dict(),
            params=params,
            model_artifact_path=spec.model_artifact_path,
            registered_model_name=spec.registered_model_name,
            experiment_name=spec.experiment_name,
            label_snapshot_id=label_snapshot_id,
            task=spec.task,
            row_filter=spec.row_filter,
            as_of_tag=spec.as_of_tag,
            feature_snapshots=dict(pins),
            views=[view.to_dict() for view in views],
        )

    def _run_script(self, script: Path, run_id: str, ctx_file: Path, workdir: Path) -> None:
        env = child_env(
            {
                **store_credentials(),
                **self.mlflow.env(),
                "MLFLOW_RUN_ID": run_id,
                CONTEXT_ENV: str(ctx_file),
                "ASGARD_HOME": str(asgard_home()),
            }
        )
        command = [self.spec.python or sys.executable, str(script)]
        self.log.info("running %s", " ".join(command))
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            self._proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,  # its own process group, so helpers it forks (joblib workers) die with it
            )
        except OSError as exc:
            raise TrainingError(f"cannot start training script {script} with {command[0]}: {exc}") from exc
        proc = self._proc
        reader = threading.Thread(target=self._pump, args=(proc, tail, script.name), daemon=True)
        reader.start()
        timeout = self.spec.timeout
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reader.join(timeout=10)
            raise TrainingError(
                f"training script {script} did not finish within {timeout:.0f}s; last output:\n" + "".join(tail)
            ) from None
        finally:
            if proc.poll() is None:  # interrupted, e.g. by the task's execution_timeout
                _kill_group(proc)
            self._proc = None
        reader.join(timeout=10)
        if code != 0:
            raise TrainingError(
                f"training script {script} exited with code {code} (MLflow run {run_id} marked FAILED); "
                f"last output:\n" + "".join(tail)
            )

    def _pump(self, proc: subprocess.Popen[str], tail: collections.deque[str], name: str) -> None:
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            tail.append(line)
            self.log.info("[%s] %s", name, line.rstrip("\n"))

    def _register(
        self, started: RunStarted, model_uri: str, model_id: str | None, model: Any, label_snapshot: int
    ) -> TrainingOutcome:
        spec, mlflow, run_id = self.spec, self.mlflow, started.run_id
        champion = self._current_champion()
        with tempfile.TemporaryDirectory(prefix="asgard-eval-") as tmp, self.timings.step("compare"):
            scored = _Scored(spec.metric)
            self._compare(run_id, model, champion, Path(tmp), scored)
        metrics = mlflow.run_metrics(run_id)
        # A gate on a task metric the script did not log reads the value computed on its holdout.
        failures = evaluation.gate_failures({**scored.holdout_metrics, **metrics}, spec.min_metrics, spec.max_metrics)
        failures.extend(scored.failures)
        promoted = not failures
        if promoted:
            reason = "passed every gate" + (f"; {scored.summary}" if scored.summary else "")
        else:
            reason = "; ".join(failures)
        with self.timings.step("register"):
            version = mlflow.register_version(
                spec.registered_model_name,
                model_uri,
                run_id,
                model_id,
                tags={
                    "asgard.promoted": str(promoted).lower(),
                    "asgard.gate_failures": "; ".join(failures),
                    "asgard.promotion_reason": reason,
                },
            )
            alias = spec.champion_alias if promoted else spec.challenger_alias
            mlflow.set_alias(spec.registered_model_name, alias, version)
            run_tags = {
                "asgard.model_version": version,
                "asgard.promoted": str(promoted).lower(),
                "asgard.promotion_reason": reason[:5000],
            }
            if champion is not None:
                run_tags["asgard.compared_with_version"] = champion
            mlflow.log_to_run(run_id, tags=run_tags)
        name = spec.registered_model_name
        if promoted:
            self.log.info("registered %s version %s as @%s (%s); metrics %s", name, version, alias, reason, metrics)
        else:
            self.log.warning("registered %s version %s as @%s, NOT promoted: %s", name, version, alias, reason)
        return TrainingOutcome(
            experiment_id=started.experiment_id,
            run_id=run_id,
            model_name=name,
            model_version=version,
            alias=alias,
            metrics=metrics,
            holdout_metrics=scored.holdout_metrics,
            promoted=promoted,
            gate_failures=failures,
            promotion_reason=reason,
            champion_version=champion,
            holdout=scored.comparison(),
            label_snapshot_id=label_snapshot,
            tracking_uri=mlflow.tracking_uri(),
            timings=dict(self.timings.seconds),
        )

    def _current_champion(self) -> str | None:
        """Version the champion alias points at before this run, or ``None`` (first model, alias removed)."""
        try:
            return self.mlflow.version_for(
                self.spec.registered_model_name, alias=self.spec.champion_alias, error=TrainingError
            )
        except TrainingError:
            return None

    def _compare(self, run_id: str, model: Any, champion: str | None, tmp: Path, scored: _Scored) -> None:
        """Score the new model (and the champion) on the run's holdout; log the numbers, plots and profiles."""
        import pandas as pd

        spec = self.spec
        path = self.mlflow.download_artifact(run_id, HOLDOUT_ARTIFACT, tmp)
        if path is None:
            self.log.warning(
                "run %s logged no %s (TrainingContext.log_datasets): no holdout comparison, plots or drift reference",
                run_id,
                HOLDOUT_ARTIFACT,
            )
            if champion is not None and spec.compare_with_champion:
                scored.failures.append(
                    f"the run logged no holdout ({HOLDOUT_ARTIFACT}), so it cannot be compared with "
                    f"champion version {champion}"
                )
            return
        holdout = pd.read_parquet(path)
        if spec.label_column not in holdout.columns:
            raise TrainingError(f"{HOLDOUT_ARTIFACT} of run {run_id} has no label column {spec.label_column!r}")
        labels = holdout[spec.label_column].to_numpy()
        scored.rows = len(holdout)
        predictions = evaluation.predict(model, holdout, spec.task)
        scored.new = evaluation.metric(scored.metric, spec.task, labels, predictions)
        scored.holdout_metrics = evaluation.all_metrics(spec.task, labels, predictions)
        run_metrics = {f"holdout_{k}": v for k, v in scored.holdout_metrics.items()}
        if champion is not None and spec.compare_with_champion:
            self._against_champion(champion, holdout, labels, scored, run_metrics)
        elif champion is None:
            scored.summary = f"no champion yet; holdout {scored.metric} {scored.new:.4f}"
        files = self._evaluation_files(run_id, model, holdout, labels, predictions, tmp)
        self.mlflow.log_to_run(run_id, metrics=run_metrics, files=files)

    def _evaluation_files(
        self, run_id: str, model: Any, holdout: Any, labels: Any, predictions: Any, tmp: Path
    ) -> dict[str, list[Path]]:
        """Draw the plots (best effort) and the holdout prediction profile (drift reference), by artifact folder."""
        plots_dir = tmp / "plots"
        plots_dir.mkdir()
        files: dict[str, list[Path]] = {}
        try:
            importance = evaluation.feature_importance(model, list(holdout.columns))
            title = f"{self.spec.registered_model_name} run {run_id[:8]}"
            files["plots"] = evaluation.plot_files(plots_dir, labels, predictions, importance, title)
        except Exception as exc:  # plots help people; they never decide promotion
            self.log.warning("could not draw evaluation plots for run %s: %s", run_id, exc)
        folder, name = PREDICTION_PROFILE_ARTIFACT.rsplit("/", 1)
        reference = tmp / name
        reference.write_text(json.dumps({"holdout_rows": len(holdout), **prediction_profiles(predictions)}, indent=1))
        files[folder] = [reference]
        return files

    def _against_champion(
        self, champion: str, holdout: Any, labels: Any, scored: _Scored, run_metrics: dict[str, float]
    ) -> None:
        """Score the champion on the same holdout; record the comparison (and a failure if the new model is worse)."""
        spec, name, new_score = self.spec, scored.metric, float(scored.new or 0.0)
        try:
            old = self.mlflow.load_sklearn(f"models:/{spec.registered_model_name}/{champion}", error=TrainingError)
            champion_score = evaluation.metric(name, spec.task, labels, evaluation.predict(old, holdout, spec.task))
        except TrainingError as exc:
            scored.failures.append(f"champion version {champion} could not be scored on the holdout: {exc}")
            return
        scored.champion = champion_score
        run_metrics[f"champion_holdout_{name}"] = champion_score
        better = evaluation.not_worse(name, spec.task, new_score, champion_score)
        direction = "higher" if evaluation.higher_is_better(name, spec.task) else "lower"
        verdict = "matches or beats" if better else "is worse than"
        scored.summary = (
            f"holdout {name} {new_score:.4f} {verdict} champion version {champion}'s {champion_score:.4f} "
            f"on the same {len(holdout)} rows ({direction} is better)"
        )
        if not better:
            scored.failures.append(scored.summary)


@dataclass
class _Scored:
    """What the holdout comparison found so far (becomes a :class:`HoldoutComparison`)."""

    metric: str
    rows: int | None = None
    new: float | None = None
    champion: float | None = None
    summary: str | None = None
    failures: list[str] = field(default_factory=list)
    holdout_metrics: dict[str, float] = field(default_factory=dict)

    def comparison(self) -> HoldoutComparison:
        return HoldoutComparison(self.metric, self.rows, self.new, self.champion, self.summary)


def train(
    spec: TrainingSpec,
    stores: Stores,
    log: logging.Logger = _LOG,
    on_started: Callable[[RunStarted], None] | None = None,
) -> TrainingOutcome:
    """Run one training (see :class:`Trainer`)."""
    return Trainer(spec, stores, log).run(on_started)


def _import_quietly(modules: tuple[str, ...]) -> None:
    """Import ``modules`` ahead of use; one that fails is imported (and fails) again where it is needed."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the import where the module is used reports it again
            _LOG.debug("early import of %s failed: %s", name, exc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill a script started in its own session, with every process it forked, and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
