"""Run an Asgard ML task (training, batch inference) in its own pod with the cncf provider's pod operator."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.kubernetes import POD_COMMAND, encode_spec, pod_env_from, pod_resources
from asgard_provider.pod_entry import CONNECTIONS, ENGINES
from asgard_provider.publishing import publish_outcome

if TYPE_CHECKING:
    from airflow.sdk import Context


def pod_engine(task_operator: str) -> str:
    """Return the engine (:data:`asgard_provider.pod_entry.ENGINES`) the operator class ``task_operator`` runs."""
    module_name, _, class_name = task_operator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    engine = getattr(cls, "pod_engine", None)
    if engine not in ENGINES:
        raise ValueError(f"task_operator {task_operator!r} has no engine a pod can run ({', '.join(ENGINES)})")
    return str(engine)


class AsgardPodOperator(KubernetesPodOperator):
    """Run the engine of one Asgard operator (``task_operator`` with ``task_kwargs``) in a pod from ``image``.

    ``task_kwargs`` are rendered by Airflow (templates such as ``{{ data_interval_end | ds }}`` work as in the
    local runner); the operator turns them and the task context into its engine's arguments (its ``spec``), which
    :mod:`asgard_provider.pod_entry` gets with the engine's name and the connection ids. The pod imports no Airflow:
    credentials reach it as ``AIRFLOW_CONN_*`` variables (JSON form) from the Kubernetes Secrets in ``env_from``.
    The engine's result comes back through the XCom sidecar; each table in ``publish_tables`` gets an asset
    event with its new Iceberg snapshot.
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
        self.engine = pod_engine(task_operator)
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
        """Return what the pod runs: the engine, its arguments (from the operator) and the connection ids."""
        module_name, _, class_name = self.task_operator.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        operator = cls(task_id=self.task_id, **self.task_kwargs)
        operator.render_template_fields(context)  # its own defaults too, e.g. {{ data_interval_start }}
        return {
            "engine": self.engine,
            "args": dataclasses.asdict(operator.spec(context)),
            "connections": {key: getattr(operator, key) for key in CONNECTIONS},
        }

    def execute(self, context: Context) -> Any:
        """Start the pod running the engine; return its result (from the XCom sidecar)."""
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
