"""Run a training script under include/training/ in an MLflow run, then register and promote its model."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from asgard_provider import evaluation
from asgard_provider.child_env import child_env, store_credentials
from asgard_provider.exceptions import AsgardError, ModelTaskError, TrainingError
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.lineage import LineageMixin, mlflow_namespace, model_dataset_name
from asgard_provider.links import MLFLOW_XCOM, MLflowModelVersionLink, MLflowRunLink, push
from asgard_provider.monitoring import PREDICTION_PROFILE_ARTIFACT, prediction_profiles
from asgard_provider.paths import PathEscapeError, contained
from asgard_provider.settings import asgard_home, include_dir
from asgard_provider.training import CONTEXT_ENV, HOLDOUT_ARTIFACT, TrainingContext

#: Lines of script output quoted in the error when a script fails.
TAIL_LINES = 40


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


def airflow_tags(context: Context, task_id: str) -> dict[str, str]:
    """MLflow tags tying a run to the Airflow task that produced it."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or ""
    logical: Any = context.get("logical_date") or context.get("data_interval_end")
    return {
        "airflow.dag_id": str(dag_id),
        "airflow.run_id": str(context.get("run_id", "")),
        "airflow.task_id": task_id,
        "airflow.logical_date": logical.isoformat() if hasattr(logical, "isoformat") else str(logical or ""),
        "airflow.try_number": str(getattr(ti, "try_number", "")),
    }


class MLflowTrainOperator(LineageMixin, BaseOperator):
    """Train a model with a normal Python script and register it in MLflow.

    The operator creates the MLflow run (tagged with the DAG, run and task), writes the
    :class:`~asgard_provider.training.TrainingContext` file and runs the script as a subprocess with
    ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID`` and ``ASGARD_TRAINING_CONTEXT`` set, streaming its output to the
    task log. A failing script marks the run FAILED and registers nothing. Otherwise the model the script
    logged at ``model_artifact_path`` becomes a new registered version, unless it does not fit ``task`` (a
    regressor for a classification task: the run is marked FAILED, the error names ``train.task``). It gets
    the ``champion`` alias when every ``min_metrics`` floor and ``max_metrics`` ceiling holds AND, if a
    champion exists, its ``compare_metric`` on the holdout the script logged (``ctx.log_datasets``) matches
    or beats the current champion's on that same holdout (lower is better for mae, rmse, wape and log_loss);
    otherwise it gets the ``challenger`` alias, the champion stays, and the reason is logged and tagged.
    Every metric of the task is computed on the holdout and logged as ``holdout_<name>``; a gate on a
    metric the script did not log itself reads that value.

    Lineage tags on every run: DAG, run id, logical date, task, the Iceberg snapshot of the label table (the
    script reads exactly that snapshot) and of each feature view's source table, the feature views, the
    script's sha256 and the git commit. The task's plots on the holdout (ROC curve and confusion matrix;
    confusion matrix; predicted vs actual and residuals) and feature importance are logged under ``plots/``.

    :param script: file under ``include/training/`` (``include_dir`` or ``$ASGARD_INCLUDE_DIR`` overrides the root).
    :param features: Feast feature refs, ``view:feature``.
    :param hyperparameters: handed to the script as ``ctx.params`` (named so as not to clash with Airflow's
        ``params``); a dict, or a template rendering to a JSON object such as
        ``"{{ params.hyperparameters | tojson }}"`` (lets a trigger form override them).
    :param task: ML task type, one of :data:`asgard_provider.evaluation.TASK_TYPES`.
    :param min_metrics: floors such as ``{"roc_auc": 0.75}``: the metric must be known and at least that value.
    :param max_metrics: ceilings such as ``{"mae": 12.5}``: the metric must be known and at most that value.
    :param compare_metric: holdout metric the new model must match or beat the champion on (one of the task's
        :data:`asgard_provider.evaluation.METRICS`; ``None``: the task's default).
    :param feature_sources: Iceberg source table per feature view (the factory passes the pipeline's), recorded
        as input snapshots without opening the Feast registry in the task; views not listed are looked up there.
    :param compare_with_champion: ``False`` promotes on ``min_metrics`` alone (e.g. after a feature-set change
        the old champion cannot score the new holdout).
    :param timeout: seconds (or timedelta) the script may run; ``None`` relies on ``execution_timeout``.
    """

    template_fields: Sequence[str] = (
        "script",
        "experiment_name",
        "registered_model_name",
        "hyperparameters",
        "label_table",
    )
    template_fields_renderers = {"hyperparameters": "json"}
    ui_color = "#0194e2"
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(
        self,
        *,
        script: str,
        experiment_name: str,
        registered_model_name: str,
        features: Sequence[str],
        label_table: str,
        label_column: str,
        entity_key: str | Sequence[str],
        timestamp_field: str,
        hyperparameters: dict[str, Any] | str | None = None,
        task: str = evaluation.BINARY,
        min_metrics: dict[str, float] | None = None,
        max_metrics: dict[str, float] | None = None,
        compare_metric: str | None = None,
        compare_with_champion: bool = True,
        model_artifact_path: str = "model",
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        include_dir: str | None = None,
        python: str | None = None,
        timeout: float | timedelta | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        feature_sources: dict[str, str] | None = None,
        feast_conn_id: str = FeastHook.default_conn_name,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        row_filter: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.row_filter = row_filter  # train on these label rows only (one model per partition value)
        self.script = script
        self.experiment_name = experiment_name
        self.registered_model_name = registered_model_name
        self.features = list(features)
        self.label_table = label_table
        self.label_column = label_column
        self.entity_keys = [entity_key] if isinstance(entity_key, str) else list(entity_key)
        self.timestamp_field = timestamp_field
        self.hyperparameters: dict[str, Any] | str = (
            hyperparameters if isinstance(hyperparameters, str) else dict(hyperparameters or {})
        )
        self.task = task
        self.min_metrics = dict(min_metrics or {})
        self.max_metrics = dict(max_metrics or {})
        self.compare_metric = compare_metric or evaluation.DEFAULT_COMPARE_METRIC.get(task, "")
        self.compare_with_champion = compare_with_champion
        self.model_artifact_path = model_artifact_path
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self.include_dir = include_dir
        self.python = python
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.mlflow_conn_id = mlflow_conn_id
        self.feature_sources = dict(feature_sources or {})
        self.feast_conn_id = feast_conn_id
        self.iceberg_conn_id = iceberg_conn_id
        self._proc: subprocess.Popen[str] | None = None

    @property
    def entity_key(self) -> str:
        """The entity's first key column (the only one unless the key is composite)."""
        return self.entity_keys[0]

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the script in a new MLflow run; register, gate and promote its model."""
        script = resolve_script(self.script, self.include_dir)
        if not self.features:
            raise TrainingError(f"no features given for training script {script.name}")
        problems = evaluation.metric_problems(self.task, "train.compare_metric", [self.compare_metric])
        if self.task not in evaluation.TASK_TYPES or problems:
            evaluation.task_metrics(self.task)  # names the unknown task type
            raise TrainingError(f"task {self.task_id}: {problems[0]}")
        label_snapshot, inputs = self._input_snapshots()
        mlflow = MLflowHook(self.mlflow_conn_id)
        experiment_id = mlflow.ensure_experiment(self.experiment_name)
        tags = {
            **airflow_tags(context, self.task_id),
            **code_version(script),
            "asgard.script": script.name,
            "asgard.label_table": self.label_table,
            "asgard.label_table_snapshot_id": str(label_snapshot),
            "asgard.input_snapshots": json.dumps(inputs, sort_keys=True),
            "asgard.feature_views": ",".join(sorted({ref.split(":", 1)[0] for ref in self.features})),
            "asgard.features": ",".join(self.features),
            "asgard.registered_model": self.registered_model_name,
        }
        run_id = mlflow.create_run(
            experiment_id, run_name=f"{self.task_id}__{context.get('run_id', 'manual')}", tags=tags
        )
        self.log.info("MLflow run %s in experiment %r (%s)", run_id, self.experiment_name, mlflow.tracking_uri())
        links = {"experiment_id": experiment_id, "run_id": run_id, "model_name": self.registered_model_name}
        push(context, MLFLOW_XCOM, links)
        try:
            with tempfile.TemporaryDirectory(prefix="asgard-train-") as workdir:
                ctx_file = self._context(label_snapshot).write(Path(workdir) / "training_context.json")
                self._run_script(script, mlflow, run_id, ctx_file, Path(workdir))
            mlflow.finish_run(run_id, "FINISHED")
            model_uri, model_id = mlflow.find_model(run_id, self.model_artifact_path)
            model = self._fitting_model(mlflow, model_uri, context)
        except BaseException:
            mlflow.finish_run(run_id, "FAILED")
            raise
        try:
            mlflow.client().log_artifact(run_id, str(script), "code")
        except Exception as exc:  # a copy of the code is a convenience, not a requirement
            self.log.warning("could not attach %s to run %s: %s", script, run_id, exc)
        result = self._register(mlflow, run_id, model_uri, model_id, model)
        push(context, MLFLOW_XCOM, {**links, "model_version": result["model_version"]})
        self._report_lineage(mlflow, result["model_version"])
        return result

    def _report_lineage(self, mlflow: MLflowHook, version: str) -> None:
        """Report the feature views and label table read and the model version registered."""
        self.lineage_feature_views(self.features, FeastHook(self.feast_conn_id).project)
        try:
            label = IcebergHook(self.iceberg_conn_id).load_table(self.label_table)
        except AsgardError:
            label = None
        self.lineage_input(self.label_table, table=label)
        self.lineage_output(
            model_dataset_name(self.registered_model_name, version), namespace=mlflow_namespace(mlflow.tracking_uri())
        )

    def _fitting_model(self, mlflow: MLflowHook, model_uri: str, context: Context) -> Any:
        """Load the logged model; raise naming ``train.task`` in the pipeline file unless it fits the task."""
        model = mlflow.load_sklearn(model_uri, error=TrainingError)
        try:
            evaluation.check_model(model, self.task)
        except ModelTaskError as exc:
            dag = context.get("dag")
            where = f"include/pipelines/{dag.dag_id}.yaml" if dag is not None else "the pipeline file"
            raise ModelTaskError(f"{exc} ({where}; script {self.script}, task {self.task_id})") from None
        return model

    def _hyperparameters(self) -> dict[str, Any]:
        value = self.hyperparameters
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise TrainingError(f"hyperparameters {value!r} did not render to JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise TrainingError(f"hyperparameters must be a JSON object (a mapping), got {type(value).__name__}")
        return value

    def _input_snapshots(self) -> tuple[int, dict[str, int | None]]:
        """Return the label table's current snapshot (pinned for the script) and every input table's snapshot."""
        iceberg = IcebergHook(self.iceberg_conn_id)
        try:
            snapshot = iceberg.load_table(self.label_table).current_snapshot()
        except AsgardError as exc:
            raise TrainingError(f"label table {self.label_table} of task {self.task_id} is unavailable: {exc}") from exc
        if snapshot is None:
            raise TrainingError(f"label table {self.label_table} of task {self.task_id} has no snapshot (no data)")
        inputs: dict[str, int | None] = {self.label_table: snapshot.snapshot_id}
        try:
            for source in self._feature_source_tables():
                if source not in inputs:
                    current = iceberg.load_table(source).current_snapshot()
                    inputs[source] = current.snapshot_id if current is not None else None
        except Exception as exc:  # lineage detail; the script's own Feast call reports real problems
            self.log.warning("could not resolve the feature views' source snapshots: %s", exc)
        return snapshot.snapshot_id, inputs

    def _feature_source_tables(self) -> list[str]:
        """Iceberg tables behind the feature views: from the pipeline (no Feast import), else the Feast registry."""
        views = sorted({ref.split(":", 1)[0] for ref in self.features})
        if all(view in self.feature_sources for view in views):
            return [self.feature_sources[view] for view in views]
        store = FeastHook(self.feast_conn_id).get_store()
        return [t for view in views if (t := store.get_feature_view(view).tags.get("asgard.source_table"))]

    def _context(self, label_snapshot_id: int | None = None) -> TrainingContext:
        feast = FeastHook(self.feast_conn_id)
        return TrainingContext(
            feast_repo_path=str(feast.repo_path()),
            features=self.features,
            label_table=self.label_table,
            label_column=self.label_column,
            entity_key=self.entity_key,
            entity_keys=self.entity_keys,
            timestamp_field=self.timestamp_field,
            catalog=IcebergHook(self.iceberg_conn_id).settings.as_dict(),
            params=self._hyperparameters(),
            model_artifact_path=self.model_artifact_path,
            registered_model_name=self.registered_model_name,
            experiment_name=self.experiment_name,
            label_snapshot_id=label_snapshot_id,
            task=self.task,
            row_filter=self.row_filter,
        )

    def _run_script(self, script: Path, mlflow: MLflowHook, run_id: str, ctx_file: Path, workdir: Path) -> None:
        env = child_env(
            {
                **store_credentials(),
                **mlflow.env(),
                "MLFLOW_RUN_ID": run_id,
                CONTEXT_ENV: str(ctx_file),
                "ASGARD_HOME": str(asgard_home()),
            }
        )
        command = [self.python or sys.executable, str(script)]
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
        try:
            code = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reader.join(timeout=10)
            raise TrainingError(
                f"training script {script} did not finish within {self.timeout:.0f}s; last output:\n" + "".join(tail)
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
        self, mlflow: MLflowHook, run_id: str, model_uri: str, model_id: str | None, model: Any
    ) -> dict[str, Any]:
        champion = self._current_champion(mlflow)
        with tempfile.TemporaryDirectory(prefix="asgard-eval-") as tmp:
            comparison = self._compare(mlflow, run_id, model, champion, Path(tmp))
        metrics = mlflow.run_metrics(run_id)
        # A gate on a task metric the script did not log reads the value computed on its holdout.
        known = {**{k: v for k, v in comparison.pop("holdout_metrics").items()}, **metrics}
        failures = evaluation.gate_failures(known, self.min_metrics, self.max_metrics)
        failures.extend(comparison.pop("failures"))
        promoted = not failures
        if promoted:
            reason = "passed every gate" + (f"; {comparison['summary']}" if comparison.get("summary") else "")
        else:
            reason = "; ".join(failures)
        version = mlflow.register_version(
            self.registered_model_name,
            model_uri,
            run_id,
            model_id,
            tags={
                "asgard.promoted": str(promoted).lower(),
                "asgard.gate_failures": "; ".join(failures),
                "asgard.promotion_reason": reason,
            },
        )
        alias = self.champion_alias if promoted else self.challenger_alias
        mlflow.set_alias(self.registered_model_name, alias, version)
        run_tags = {
            "asgard.model_version": version,
            "asgard.promoted": str(promoted).lower(),
            "asgard.promotion_reason": reason[:5000],
        }
        if champion is not None:
            run_tags["asgard.compared_with_version"] = champion
        mlflow.log_to_run(run_id, tags=run_tags)
        if promoted:
            self.log.info(
                "registered %s version %s as @%s (%s); metrics %s",
                self.registered_model_name,
                version,
                alias,
                reason,
                metrics,
            )
        else:
            self.log.warning(
                "registered %s version %s as @%s, NOT promoted: %s",
                self.registered_model_name,
                version,
                alias,
                reason,
            )
        return {
            "run_id": run_id,
            "model_name": self.registered_model_name,
            "model_version": version,
            "model_uri": f"models:/{self.registered_model_name}/{version}",
            "alias": alias,
            "metrics": metrics,
            "promoted": promoted,
            "gate_failures": failures,
            "promotion_reason": reason,
            "champion_version": champion,
            "holdout": comparison,
        }

    def _current_champion(self, mlflow: MLflowHook) -> str | None:
        """Version the champion alias points at before this run, or ``None`` (first model, alias removed)."""
        try:
            return mlflow.version_for(self.registered_model_name, alias=self.champion_alias, error=TrainingError)
        except TrainingError:
            return None

    def _compare(self, mlflow: MLflowHook, run_id: str, model: Any, champion: str | None, tmp: Path) -> dict[str, Any]:
        """Score the new model (and the champion) on the run's holdout; log the numbers, plots and profiles."""
        import pandas as pd

        name = self.compare_metric
        result: dict[str, Any] = {
            "metric": name,
            "rows": None,
            "new": None,
            "champion": None,
            "failures": [],
            "holdout_metrics": {},
        }
        path = mlflow.download_artifact(run_id, HOLDOUT_ARTIFACT, tmp)
        if path is None:
            self.log.warning(
                "run %s logged no %s (TrainingContext.log_datasets): no holdout comparison, plots or drift reference",
                run_id,
                HOLDOUT_ARTIFACT,
            )
            if champion is not None and self.compare_with_champion:
                result["failures"].append(
                    f"the run logged no holdout ({HOLDOUT_ARTIFACT}), so it cannot be compared with "
                    f"champion version {champion}"
                )
            return result
        holdout = pd.read_parquet(path)
        if self.label_column not in holdout.columns:
            raise TrainingError(f"{HOLDOUT_ARTIFACT} of run {run_id} has no label column {self.label_column!r}")
        labels = holdout[self.label_column].to_numpy()
        result["rows"] = len(holdout)
        predictions = evaluation.predict(model, holdout, self.task)
        new_score = evaluation.metric(name, self.task, labels, predictions)
        result["new"] = new_score
        result["holdout_metrics"] = evaluation.all_metrics(self.task, labels, predictions)
        run_metrics = {f"holdout_{k}": v for k, v in result["holdout_metrics"].items()}
        if champion is not None and self.compare_with_champion:
            self._against_champion(mlflow, champion, holdout, labels, result, run_metrics)
        elif champion is None:
            result["summary"] = f"no champion yet; holdout {name} {new_score:.4f}"
        plots_dir = tmp / "plots"
        plots_dir.mkdir()
        files: dict[str, list[Path]] = {}
        try:
            importance = evaluation.feature_importance(model, [c for c in holdout.columns])
            title = f"{self.registered_model_name} run {run_id[:8]}"
            files["plots"] = evaluation.plot_files(plots_dir, labels, predictions, importance, title)
        except Exception as exc:  # plots help people; they never decide promotion
            self.log.warning("could not draw evaluation plots for run %s: %s", run_id, exc)
        reference = tmp / PREDICTION_PROFILE_ARTIFACT.rsplit("/", 1)[1]
        reference.write_text(json.dumps({"holdout_rows": len(holdout), **prediction_profiles(predictions)}, indent=1))
        files[PREDICTION_PROFILE_ARTIFACT.rsplit("/", 1)[0]] = [reference]
        mlflow.log_to_run(run_id, metrics=run_metrics, files=files)
        return result

    def _against_champion(
        self,
        mlflow: MLflowHook,
        champion: str,
        holdout: Any,
        labels: Any,
        result: dict[str, Any],
        run_metrics: dict[str, float],
    ) -> None:
        """Score the champion on the same holdout; record the comparison (and a failure if the new model is worse)."""
        name, new_score = result["metric"], result["new"]
        try:
            old = mlflow.load_sklearn(f"models:/{self.registered_model_name}/{champion}", error=TrainingError)
            champion_score = evaluation.metric(name, self.task, labels, evaluation.predict(old, holdout, self.task))
        except TrainingError as exc:
            result["failures"].append(f"champion version {champion} could not be scored on the holdout: {exc}")
            return
        result["champion"] = champion_score
        run_metrics[f"champion_holdout_{name}"] = champion_score
        better = evaluation.not_worse(name, self.task, new_score, champion_score)
        direction = "higher" if evaluation.higher_is_better(name, self.task) else "lower"
        verdict = "matches or beats" if better else "is worse than"
        result["summary"] = (
            f"holdout {name} {new_score:.4f} {verdict} champion version {champion}'s {champion_score:.4f} "
            f"on the same {len(holdout)} rows ({direction} is better)"
        )
        if not better:
            result["failures"].append(result["summary"])

    def on_kill(self) -> None:
        """Stop the training subprocess when the task is killed."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill a script started in its own session, with every process it forked, and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
