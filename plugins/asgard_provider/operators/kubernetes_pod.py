"""Run an Asgard ML task (training, batch inference) in its own pod with the cncf provider's pod operator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.kubernetes import POD_COMMAND, encode_spec, pod_env_from, pod_resources
from asgard_provider.pod_entry import ALLOWED_OPERATORS
from asgard_provider.publishing import publish_outcome

if TYPE_CHECKING:
    from airflow.sdk import Context


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


class AsgardPodOperator(KubernetesPodOperator):
    """Execute one Asgard operator (``task_operator`` with ``task_kwargs``) in a pod from ``image``.

    ``task_kwargs`` are rendered by Airflow (templates such as ``{{ data_interval_end | ds }}`` work as in the
    local runner), then handed to :mod:`asgard_provider.pod_entry` with the task context it needs. Credentials
    reach the pod as ``AIRFLOW_CONN_*`` variables from the Kubernetes Secrets in ``env_from``. The operator's return
    value comes back through the XCom sidecar; each table in ``publish_tables`` gets an asset event with its new
    Iceberg snapshot.
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "task_kwargs")
    template_fields_renderers = {**KubernetesPodOperator.template_fields_renderers, "task_kwargs": "json"}

    def __init__(
        self,
        *,
        task_operator: str,
        task_kwargs: dict[str, Any],
        image: str,
        namespace: str = "asgard",
        service_account: str | None = None,
        env_from: Sequence[str] = (),
        cpu: str = "1",
        memory: str = "2Gi",
        image_pull_policy: str = "IfNotPresent",
        publish_tables: Sequence[str] = (),
        iceberg_conn_id: str = IcebergHook.default_conn_name,
        kubernetes_conn_id: str = "kubernetes_default",
        **kwargs: Any,
    ) -> None:
        if task_operator not in ALLOWED_OPERATORS:
            raise ValueError(f"task_operator {task_operator!r} is not one of {', '.join(ALLOWED_OPERATORS)}")
        kwargs.setdefault("name", kwargs.get("task_id", "asgard").replace("_", "-"))
        kwargs.setdefault("labels", {"app.kubernetes.io/part-of": "asgard"})
        super().__init__(
            image=image,
            namespace=namespace,
            cmds=list(POD_COMMAND),
            arguments=[],
            env_from=pod_env_from(env_from),
            container_resources=pod_resources(cpu, memory),
            service_account_name=service_account,
            image_pull_policy=image_pull_policy,
            kubernetes_conn_id=kubernetes_conn_id,
            do_xcom_push=True,
            get_logs=True,
            on_finish_action="delete_succeeded_pod",
            **kwargs,
        )
        self.task_operator = task_operator
        self.task_kwargs = dict(task_kwargs)
        self.publish_tables = list(publish_tables)
        self.iceberg_conn_id = iceberg_conn_id

    def task_spec(self, context: Context) -> dict[str, Any]:
        """Return what the pod runs: operator, rendered arguments and the task-context values it reads."""
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        return {
            "operator": self.task_operator,
            "kwargs": {"task_id": self.task_id, **self.task_kwargs},
            "context": {
                "dag_id": getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None),
                "task_id": self.task_id,
                "run_id": context.get("run_id"),
                "try_number": getattr(ti, "try_number", None),
                "logical_date": _iso(context.get("logical_date")),
                "data_interval_start": _iso(context.get("data_interval_start")),
                "data_interval_end": _iso(context.get("data_interval_end")),
            },
        }

    def execute(self, context: Context) -> Any:
        """Start the pod running the Asgard operator; return its result (from the XCom sidecar)."""
        self.arguments = [encode_spec(self.task_spec(context))]
        result = super().execute(context)
        return self._finish(context, result)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume a deferred run: collect logs and result, then publish the asset events."""
        return self._finish(context, super().trigger_reentry(context, event))

    def _finish(self, context: Context, result: Any) -> Any:
        iceberg = IcebergHook(self.iceberg_conn_id)
        events: dict[str, dict[str, Any]] = {}
        for table in self.publish_tables:
            snapshot = iceberg.load_table(table).current_snapshot()
            extra = {"snapshot_id": snapshot.snapshot_id if snapshot is not None else None}
            if isinstance(result, dict):
                extra.update({k: v for k, v in result.items() if k in ("rows_written", "as_of", "model_version")})
            events[table] = extra
        publish_outcome(None, context, events=events)
        return result
