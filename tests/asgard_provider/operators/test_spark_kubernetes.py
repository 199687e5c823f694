"""SparkIcebergKubernetesOperator against a recorded Kubernetes API (no cluster here): the exact requests it sends.

The catalog is real (PostgreSQL catalog, file warehouse): the operator reads the output table's snapshot from it
after the application completes. The Kubernetes API objects (custom objects, core v1) are mocks at the provider
hook's boundary; every call is asserted with its group/version/plural/namespace/body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import jsonschema
import pyarrow as pa
import pytest
from kubernetes.client import models as k8s

from asgard_provider.assets import table_asset
from asgard_provider.engines import wap
from asgard_provider.exceptions import TransformError
from asgard_provider.kubernetes import RESULT_MARKER, decode_spec

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "tests" / "fixtures" / "kubernetes" / "sparkapplication-v1beta2.schema.json").read_text())
NAMESPACE = "asgard-jobs"
BRANCH = "run_manual__1"

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_catalog(postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The default asgard_iceberg connection pointing at a PostgreSQL catalog (reachable from pods, unlike SQLite)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT",
        json.dumps(
            {
                "conn_type": "asgard_iceberg",
                "host": f"postgresql+psycopg2://127.0.0.1:5432/{postgres_db}",
                "login": "postgres",
                "extra": {"catalog_type": "sql", "warehouse": (tmp_path / "warehouse").as_uri()},
            }
        ),
    )
    return postgres_db


class FakeCluster:
    """Kubernetes API objects handed to the provider's hook, recording calls; state is what the test sets."""

    def __init__(self) -> None:
        self.custom = mock.MagicMock(name="CustomObjectsApi")
        self.core = mock.MagicMock(name="CoreV1Api")
        self.app_state = "RUNNING"
        self.driver_log = ""
        self.pod_phase = "Running"
        self.custom.create_namespaced_custom_object.side_effect = lambda **kw: json.loads(json.dumps(kw["body"]))
        self.custom.get_namespaced_custom_object_status.side_effect = lambda **kw: self._status(kw["name"])
        self.custom.get_namespaced_custom_object.side_effect = lambda **kw: self._status(kw["name"])
        self.core.list_namespaced_pod.return_value = k8s.V1PodList(items=[])
        self.core.read_namespaced_pod.side_effect = lambda name, namespace, **kw: self.driver_pod(name, namespace)
        self.core.read_namespaced_pod_log.side_effect = self._log

    def _status(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = {"state": self.app_state}
        if self.app_state == "FAILED":
            state["errorMessage"] = "driver container failed with ExitCode: 1, Reason: Error"
        return {"metadata": {"name": name}, "status": {"applicationState": state}}

    def _log(self, **kw: Any) -> Any:
        if kw.get("_preload_content") is False:  # the provider streaming the log into the task log
            stream = mock.MagicMock()
            stream.stream.return_value = iter([line.encode() + b"\n" for line in self.driver_log.splitlines()])
            stream.__iter__.return_value = iter([line.encode() + b"\n" for line in self.driver_log.splitlines()])
            return stream
        return self.driver_log

    def driver_pod(self, name: str, namespace: str) -> k8s.V1Pod:
        done = self.pod_phase in ("Succeeded", "Failed")
        state = (
            k8s.V1ContainerState(
                terminated=k8s.V1ContainerStateTerminated(exit_code=0 if self.pod_phase == "Succeeded" else 1)
            )
            if done
            else k8s.V1ContainerState(running=k8s.V1ContainerStateRunning())
        )
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels={"spark-role": "driver"}, annotations={}),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="spark-kubernetes-driver", image="spark")]),
            status=k8s.V1PodStatus(
                phase=self.pod_phase,
                container_statuses=[
                    k8s.V1ContainerStatus(
                        name="spark-kubernetes-driver",
                        image="spark",
                        image_id="",
                        ready=not done,
                        restart_count=0,
                        state=state,
                    )
                ],
            ),
        )


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    fake = FakeCluster()
    with (
        mock.patch.object(KubernetesHook, "custom_object_client", new_callable=mock.PropertyMock) as custom,
        mock.patch.object(KubernetesHook, "core_v1_client", new_callable=mock.PropertyMock) as core,
        mock.patch.object(KubernetesHook, "is_in_cluster", new_callable=mock.PropertyMock) as in_cluster,
    ):
        custom.return_value = fake.custom
        core.return_value = fake.core
        in_cluster.return_value = False
        yield fake


def operator(**overrides: Any) -> Any:
    from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

    kwargs: dict[str, Any] = {
        "task_id": "clean_events",
        "sql": "SELECT id, upper(name) AS name FROM iceberg.bronze.events WHERE day = '{{ ds }}'",
        "output_table": "silver.events",
        "image": "registry.example.com/asgard/spark:0.1.0",
        "namespace": NAMESPACE,
        "env_from": ["asgard-s3"],
        "executor_instances": 3,
        "executor_memory": "3g",
        "partition_by": ["days(day)"],
    }
    kwargs.update(overrides)
    op = SparkIcebergKubernetesOperator(**kwargs)
    op.outlets = [table_asset(kwargs["output_table"])]
    return op


def context(op: Any) -> dict[str, Any]:
    from airflow.sdk import DAG

    ti = mock.MagicMock(dag_id="events", task_id=op.task_id, run_id="manual__1", map_index=-1, try_number=1)
    events: dict[Any, Any] = {}

    class Events(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: Any) -> Any:
            return events.setdefault(key, SimpleNamespace(extra={}))

    return {
        "dag": DAG(dag_id="events", schedule=None),
        "ti": ti,
        "task_instance": ti,
        "task": op,
        "run_id": "manual__1",
        "ds": "2025-11-11",
        "logical_date": datetime(2025, 11, 11, tzinfo=UTC),
        "outlet_events": Events(),
        "_events": events,
    }


def write_output(rows: int, branch: str | None = BRANCH) -> int:
    """Commit what the driver would have written (on the run's branch by default); return the snapshot id."""
    from asgard_provider.hooks.iceberg import IcebergHook

    hook = IcebergHook()
    data = [pa.table({"id": list(range(rows)), "name": ["A"] * rows})]
    return int(hook.write("silver.events", data, mode="overwrite", branch=branch)["snapshot_id"])


def main_snapshot() -> int:
    from asgard_provider.hooks.iceberg import IcebergHook

    return int(IcebergHook().load_table("silver.events").current_snapshot().snapshot_id)


def submit(op: Any, ctx: dict[str, Any]) -> Any:
    """Run execute up to the deferral; return the trigger."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    op.render_template_fields(ctx)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    return deferred.value


def test_submits_the_sparkapplication_and_defers(pg_catalog: str, cluster: FakeCluster) -> None:
    op = operator()
    ctx = context(op)
    deferred = submit(op, ctx)

    call = cluster.custom.create_namespaced_custom_object.call_args
    assert call.kwargs["group"] == "sparkoperator.k8s.io"
    assert call.kwargs["version"] == "v1beta2"
    assert call.kwargs["plural"] == "sparkapplications"
    assert call.kwargs["namespace"] == NAMESPACE
    body = call.kwargs["body"]
    jsonschema.validate(body, SCHEMA)
    assert body["metadata"]["name"] == op.name and op.name.startswith("clean-events-")
    assert body["metadata"]["namespace"] == NAMESPACE
    spec = body["spec"]
    assert spec["image"] == "registry.example.com/asgard/spark:0.1.0"
    assert spec["executor"]["instances"] == 3 and spec["executor"]["memory"] == "3g"
    # the provider adds task labels to driver/executor so it can re-attach after a worker restart
    assert spec["driver"]["labels"]["task_id"] == "clean_events" and spec["driver"]["labels"]["dag_id"] == "events"
    assert {"name": "SPARK_APPLICATION_NAME", "value": op.name} in spec["driver"]["env"]
    conf = spec["sparkConf"]
    assert conf["spark.sql.catalog.iceberg.uri"] == f"jdbc:postgresql://127.0.0.1:5432/{pg_catalog}"
    assert conf["spark.sql.catalog.iceberg.jdbc.user"] == "postgres"
    job = decode_spec(spec["arguments"][1])
    assert job == {
        "task_id": "clean_events",
        "sql": "SELECT id, upper(name) AS name FROM iceberg.bronze.events WHERE day = '2025-11-11'",
        "sql_source": "<inline SQL>",
        "output_table": "silver.events",
        "mode": "overwrite",
        "partition_by": ["days(day)"],
        "merge_keys": [],
        "quarantine_table": None,
        "withheld_conf": [],
        "branch": BRANCH,  # the driver writes on the run's branch; main moves when the task publishes
        "snapshot_properties": {wap.RUN_PROPERTY: "manual__1"},
    }
    # it waited for the application to leave SUBMITTED, then handed the driver pod to the trigger
    cluster.custom.get_namespaced_custom_object_status.assert_called_with(
        group="sparkoperator.k8s.io", version="v1beta2", namespace=NAMESPACE, name=op.name, plural="sparkapplications"
    )
    assert deferred.method_name == "trigger_reentry"
    assert deferred.trigger.pod_name == f"{op.name}-driver"
    assert deferred.trigger.pod_namespace == NAMESPACE
    ctx["ti"].xcom_push.assert_any_call(key="pod_name", value=f"{op.name}-driver")


def test_completion_reads_state_and_result_then_deletes_and_publishes(pg_catalog: str, cluster: FakeCluster) -> None:
    op = operator()
    ctx = context(op)
    submit(op, ctx)
    name = op.name
    previous = write_output(3, branch=None)  # the last published run
    snapshot = write_output(5)
    assert main_snapshot() == previous  # the driver wrote on the branch only
    cluster.pod_phase, cluster.app_state = "Succeeded", "COMPLETED"
    result_line = {"output_table": "silver.events", "rows_written": 5, "rows_quarantined": 2, "quarantine_table": None}
    cluster.driver_log = f"starting\n{RESULT_MARKER}{json.dumps(result_line)}\n"

    resumed = operator()  # a resumed task is a fresh instance built from the DAG
    ctx = context(resumed)
    resumed.render_template_fields(ctx)
    result = resumed.trigger_reentry(ctx, {"status": "success", "name": f"{name}-driver", "namespace": NAMESPACE})

    assert result["state"] == "COMPLETED" and result["application"] == name
    assert result["rows_written"] == 5 and result["snapshot_id"] == snapshot
    # published after the application COMPLETED: main fast-forwarded to the branch, the branch dropped
    assert main_snapshot() == snapshot and result["published_from"] == BRANCH
    from asgard_provider.hooks.iceberg import IcebergHook

    assert IcebergHook().load_table("silver.events").refs().keys() == {"main"}
    cluster.custom.get_namespaced_custom_object.assert_called_with(
        group="sparkoperator.k8s.io", version="v1beta2", namespace=NAMESPACE, plural="sparkapplications", name=name
    )
    cluster.custom.delete_namespaced_custom_object.assert_called_once_with(
        group="sparkoperator.k8s.io", version="v1beta2", namespace=NAMESPACE, plural="sparkapplications", name=name
    )
    extra = ctx["_events"][table_asset("silver.events")].extra
    assert extra == {"snapshot_id": snapshot, "rows_written": 5, "mode": "overwrite"}


def test_failed_application_fails_the_task_with_its_error(pg_catalog: str, cluster: FakeCluster) -> None:
    op = operator()
    ctx = context(op)
    submit(op, ctx)
    previous = write_output(3, branch=None)
    written = write_output(5)  # the driver committed the output, then failed (say on the quarantine table)
    cluster.pod_phase, cluster.app_state = "Failed", "FAILED"
    cluster.driver_log = "TransformError: invalid SQL\n"
    resumed = operator()
    ctx = context(resumed)
    resumed.render_template_fields(ctx)
    with pytest.raises(TransformError, match=r"ended in state FAILED: driver container failed with ExitCode: 1") as err:
        resumed.trigger_reentry(ctx, {"status": "failed", "name": f"{op.name}-driver", "namespace": NAMESPACE})
    assert f"main of silver.events is unchanged; what the run wrote is on branch {BRANCH}" in str(err.value)
    assert ctx["_events"] == {}
    from asgard_provider.hooks.iceberg import IcebergHook

    table = IcebergHook().load_table("silver.events")
    assert main_snapshot() == previous and wap.branch_snapshot(table, BRANCH) == written  # kept for inspection


def test_with_checks_the_task_leaves_the_branch_to_them(pg_catalog: str, cluster: FakeCluster) -> None:
    op = operator(publish=False)
    submit(op, context(op))
    previous = write_output(3, branch=None)
    snapshot = write_output(5)
    cluster.pod_phase, cluster.app_state = "Succeeded", "COMPLETED"
    cluster.driver_log = f"{RESULT_MARKER}{json.dumps({'output_table': 'silver.events', 'rows_written': 5})}\n"
    resumed = operator(publish=False)
    ctx = context(resumed)
    resumed.render_template_fields(ctx)
    result = resumed.trigger_reentry(ctx, {"status": "success", "name": f"{op.name}-driver", "namespace": NAMESPACE})
    assert result["branch"] == BRANCH and result["snapshot_id"] == snapshot
    assert main_snapshot() == previous and ctx["_events"] == {}  # the checks task audits, publishes, emits


def test_on_kill_deletes_the_application(pg_catalog: str, cluster: FakeCluster) -> None:
    op = operator()
    submit(op, context(op))
    op.on_kill()
    cluster.custom.delete_namespaced_custom_object.assert_called_once_with(
        group="sparkoperator.k8s.io", version="v1beta2", namespace=NAMESPACE, plural="sparkapplications", name=op.name
    )


def test_sqlite_catalog_is_refused_before_anything_is_submitted(asgard_home: Path, cluster: FakeCluster) -> None:
    from asgard_provider.exceptions import CatalogError

    op = operator()
    ctx = context(op)
    op.render_template_fields(ctx)
    with pytest.raises(CatalogError, match="SQLite"):
        op.execute(ctx)
    cluster.custom.create_namespaced_custom_object.assert_not_called()
