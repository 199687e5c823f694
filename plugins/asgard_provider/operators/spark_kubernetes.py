"""Run a Spark SQL transform as a SparkApplication on Kubernetes (Spark operator), through the cncf provider."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.common.compat.sdk import AirflowException

from asgard_provider.catalog import split_table_name
from asgard_provider.engines.spark_sql import MODES
from asgard_provider.engines.wap import RUN_PROPERTY
from asgard_provider.exceptions import TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.kubernetes import (
    DRIVER_CONTAINER,
    DRIVER_FILE,
    RESULT_MARKER,
    SPARK_API_GROUP,
    SPARK_API_VERSION,
    SPARK_PLURAL,
    catalog_spark_conf,
    spark_application,
)
from asgard_provider.lineage import LineageMixin
from asgard_provider.links import SparkUILink
from asgard_provider.operators.spark_iceberg import (
    _is_sql_path,
    _with_sql_loader,
    branch_note,
    check_sql_path,
    publish_transform,
    sql_dir,
    wap_branch,
)

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client import models as k8s


class SparkIcebergKubernetesOperator(LineageMixin, SparkKubernetesOperator):
    """Run the transform of :class:`SparkIcebergTransformOperator` as a SparkApplication in a cluster.

    The SQL is rendered here (Airflow context, ``sql_params``), then submitted with output table, mode,
    partitioning and merge keys to the driver program :mod:`asgard_provider.spark_driver`, which runs the same
    transform code as the embedded runner. The catalog comes from the ``asgard_iceberg`` connection (credentials
    excluded: the pods read them from the Kubernetes Secrets named in ``env_from``). By default the task defers
    while the driver runs; the driver's log is copied into the task log, the application's final state is read
    before it is deleted, and killing the task deletes the application.

    :param image: Spark image with Python, pyspark and the asgard provider (bundle under ``/opt/airflow``).
    :param env_from: Kubernetes Secrets exposed as environment variables in driver and executors.
    :param packages: Maven coordinates fetched at submit time (default: Iceberg Spark runtime + AWS bundle);
        ``[]`` when the image already holds the jars.
    :param publish: the driver writes output and quarantine on the run's branch (``run_<run id>``); ``True``:
        this task publishes them (moves main) once the application COMPLETED, then emits the asset events;
        ``False``: the checks task that audits the branch does. A failed application leaves main as it was.
    """

    template_fields = [  # type: ignore[assignment]
        "sql",
        "output_table",
        "quarantine_table",
        "sql_params",
        "namespace",
        "kubernetes_conn_id",
        "image",
    ]
    template_ext = (".sql",)  # type: ignore[assignment]
    template_fields_renderers = {"sql": "sql", "sql_params": "json", "template_spec": "json"}
    ui_color = "#e25a1c"
    operator_extra_links = (SparkUILink(),)

    def __init__(
        self,
        *,
        sql: str,
        output_table: str,
        image: str,
        mode: str = "overwrite",
        partition_by: Sequence[str] = (),
        merge_keys: Sequence[str] = (),
        quarantine_table: str | None = None,
        sql_params: dict[str, Any] | None = None,
        namespace: str = "asgard",
        service_account: str = "spark",
        image_pull_policy: str = "IfNotPresent",
        env_from: Sequence[str] = (),
        driver_cores: int = 1,
        driver_memory: str = "2g",
        executor_cores: int = 1,
        executor_memory: str = "2g",
        executor_instances: int = 2,
        spark_version: str = "3.5.8",
        packages: Sequence[str] | None = None,
        spark_conf: dict[str, str] | None = None,
        main_application_file: str = DRIVER_FILE,
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = True,
        publish: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            namespace=namespace,
            kubernetes_conn_id=kubernetes_conn_id,
            deferrable=deferrable,
            get_logs=True,
            delete_on_termination=True,
            do_xcom_push=False,
            **kwargs,
        )
        if mode not in MODES:
            raise ValueError(f"{self.task_id}: mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "merge" and not merge_keys:
            raise ValueError(f"{self.task_id}: mode 'merge' needs merge_keys (the columns identifying a row)")
        self.sql = sql
        self.output_table = output_table
        self.image = image
        self.mode = mode
        self.partition_by = list(partition_by)
        self.merge_keys = list(merge_keys)
        self.quarantine_table = quarantine_table
        self.sql_params = dict(sql_params or {})
        self.service_account = service_account
        self.image_pull_policy = image_pull_policy
        self.env_from_secrets = list(env_from)
        self.driver_cores = driver_cores
        self.driver_memory = driver_memory
        self.executor_cores = executor_cores
        self.executor_memory = executor_memory
        self.executor_instances = executor_instances
        self.spark_version = spark_version
        self.packages = None if packages is None else list(packages)
        self.spark_conf = dict(spark_conf or {})
        self.main_application_file = main_application_file
        self.iceberg_conn_id = iceberg_conn_id
        self.sql_source = sql.strip() if _is_sql_path(sql) else "<inline SQL>"
        self._outcome: dict[str, Any] = {}
        self.publish = publish
        self._branch: str | None = None
        self._run_properties: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------- templating

    def get_template_env(self, dag: Any = None) -> jinja2.Environment:
        """Airflow's environment, also finding SQL files under include/sql/ and by absolute path."""
        return _with_sql_loader(super().get_template_env(dag))

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render every field but the SQL, then the SQL with ``sql_params`` in its context."""
        import jinja2

        env = _with_sql_loader(jinja_env) if jinja_env is not None else self.get_template_env()
        others = [f for f in self.template_fields if f != "sql"]
        self._do_render_template_fields(self, others, context, env, set())
        check_sql_path(self.task_id, self.sql)
        try:
            self._do_render_template_fields(
                self, ["sql"], cast("Context", {**context, "sql_params": self.sql_params}), env, set()
            )
        except jinja2.TemplateNotFound as exc:
            raise TransformError(
                f"SQL file {self.sql_source} not found (relative paths are resolved under {sql_dir()})"
            ) from exc
        except jinja2.TemplateError as exc:
            raise TransformError(f"cannot render SQL {self.sql_source}: {exc}") from exc
        self._bind_run(context)

    def _bind_run(self, context: Context) -> None:
        """Set the branch the driver writes on and the run id its snapshots carry (from the context's run)."""
        self._branch = wap_branch(context, self.publish)
        self._run_properties = {RUN_PROPERTY: str(context.get("run_id"))}

    # ------------------------------------------------------------------------------------------- the object

    def job_spec(self) -> dict[str, Any]:
        """Return what the driver runs: the rendered SQL and the write settings."""
        catalog = IcebergHook(self.iceberg_conn_id).settings
        _, withheld = catalog_spark_conf(catalog)
        return {
            "task_id": self.task_id,
            "sql": self.sql,
            "sql_source": self.sql_source,
            "output_table": ".".join(split_table_name(self.output_table)),
            "mode": self.mode,
            "partition_by": self.partition_by,
            "merge_keys": self.merge_keys,
            "quarantine_table": self.quarantine_table,
            "withheld_conf": withheld,
            **({"branch": self._branch, "snapshot_properties": self._run_properties} if self._branch else {}),
        }

    def build_application(self) -> dict[str, Any]:
        """Render the SparkApplication of this task (the provider sets name and namespace again at submit)."""
        return spark_application(
            name=self.name or self.task_id.replace("_", "-"),
            namespace=self.namespace,
            image=self.image,
            job=self.job_spec(),
            catalog=IcebergHook(self.iceberg_conn_id).settings,
            service_account=self.service_account,
            image_pull_policy=self.image_pull_policy,
            env_from_secrets=self.env_from_secrets,
            driver_cores=self.driver_cores,
            driver_memory=self.driver_memory,
            executor_cores=self.executor_cores,
            executor_memory=self.executor_memory,
            executor_instances=self.executor_instances,
            spark_version=self.spark_version,
            packages=self.packages,
            spark_conf=self.spark_conf,
            main_application_file=self.main_application_file,
            labels={"asgard.io/task": self.task_id.replace("_", "-")[:63]},
        )

    @property
    def custom_obj_api(self) -> CustomObjectsApi:  # type: ignore[override]
        """Custom-object API of the ``kubernetes_conn_id`` cluster (the provider's default ignores the connection)."""
        return self.hook.custom_object_client

    # ------------------------------------------------------------------------------------------- execution

    def execute(self, context: Context) -> Any:
        """Submit the SparkApplication; defer (or wait) until the driver ends, then check its final state."""
        self._bind_run(context)
        self.template_spec = {"spark": self.build_application()}
        try:
            super().execute(context)
        except AirflowException as exc:
            raise self._failure(exc) from exc
        return self._finish(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger saw the driver pod end: copy its log, read the final state, clean up."""
        self._bind_run(context)
        self.template_spec = {"spark": self.build_application()}
        self.name = str(event.get("name", "")).removesuffix("-driver") or self.name
        try:
            super().trigger_reentry(context, event)
        except AirflowException as exc:
            raise self._failure(exc) from exc
        return self._finish(context)

    def process_pod_deletion(self, pod: k8s.V1Pod, *, reraise: bool = True) -> bool:
        """Read the application's final state and the driver's result line before the application is deleted."""
        if pod is not None and pod.metadata is not None and pod.metadata.name:
            self._outcome = self._read_outcome(pod.metadata.name, str(pod.metadata.namespace or self.namespace))
        return bool(super().process_pod_deletion(pod, reraise=reraise))

    def on_kill(self) -> None:
        """Delete the SparkApplication (the Spark operator then removes driver and executors)."""
        self._killed = True
        name = self.name
        if self.pod is not None and self.pod.metadata is not None and self.pod.metadata.name:
            name = self.pod.metadata.name.removesuffix("-driver")
        if not name:
            return
        from kubernetes.client.rest import ApiException

        self.log.info("Deleting SparkApplication %s/%s", self.namespace, name)
        try:
            self.custom_obj_api.delete_namespaced_custom_object(
                group=SPARK_API_GROUP,
                version=SPARK_API_VERSION,
                namespace=self.namespace,
                plural=SPARK_PLURAL,
                name=name,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _read_outcome(self, driver_pod: str, namespace: str) -> dict[str, Any]:
        import json

        app = driver_pod.removesuffix("-driver")
        outcome: dict[str, Any] = {"application": app}
        try:
            obj = self.custom_obj_api.get_namespaced_custom_object(
                group=SPARK_API_GROUP, version=SPARK_API_VERSION, namespace=namespace, plural=SPARK_PLURAL, name=app
            )
            state = (obj.get("status") or {}).get("applicationState") or {}
            outcome["state"] = state.get("state")
            outcome["error"] = state.get("errorMessage")
            driver = (obj.get("status") or {}).get("driverInfo") or {}
            outcome["spark_ui"] = driver.get("webUIIngressAddress") or driver.get("webUIAddress")
        except Exception as exc:
            self.log.warning("cannot read the state of SparkApplication %s/%s: %s", namespace, app, exc)
        try:
            logs = self.client.read_namespaced_pod_log(
                name=driver_pod, namespace=namespace, container=DRIVER_CONTAINER, tail_lines=500
            )
            for line in reversed(str(logs).splitlines()):
                if line.startswith(RESULT_MARKER):
                    outcome["result"] = json.loads(line[len(RESULT_MARKER) :])
                    break
        except Exception as exc:
            self.log.warning("cannot read the result line of driver %s/%s: %s", namespace, driver_pod, exc)
        self.log.info(
            "SparkApplication %s/%s final state: %s%s",
            namespace,
            app,
            outcome.get("state") or "unknown",
            f" ({outcome['error']})" if outcome.get("error") else "",
        )
        return outcome

    def _failure(self, exc: BaseException) -> TransformError:
        outcome = self._outcome
        where = f"SparkApplication {self.namespace}/{outcome.get('application') or self.name}"
        state = outcome.get("state") or "unknown"
        error = outcome.get("error") or str(exc).splitlines()[0]
        note = branch_note(IcebergHook(self.iceberg_conn_id), self.output_table, self._branch)
        return TransformError(
            f"{self.sql_source} -> {self.output_table}: {where} ended in state {state}: {error}"
            + (f"\n{note}" if note else "")
        )

    def _finish(self, context: Context) -> dict[str, Any]:
        """Check the final state, then read the output table's snapshot and publish the asset events."""
        outcome = self._outcome
        state = outcome.get("state")
        if state is not None and state != "COMPLETED":
            raise self._failure(RuntimeError(f"application state {state}"))
        output = ".".join(split_table_name(self.output_table))
        result: dict[str, Any] = {
            "output_table": output,
            "rows_written": None,
            "rows_quarantined": None,
            "quarantine_table": None,
            **(outcome.get("result") or {}),
        }
        ui = outcome.get("spark_ui")
        ui_url = ui if not ui or "://" in ui else f"http://{ui}"
        iceberg = IcebergHook(self.iceberg_conn_id)
        published = publish_transform(self, context, iceberg, result, self.mode, ui_url, self._branch, self.publish)
        return {**published, "application": outcome.get("application"), "state": state}
