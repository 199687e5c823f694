"""Entry point of an Asgard task pod: run one Asgard operator in the pod and hand its result to Airflow.

:class:`~asgard_provider.operators.kubernetes_pod.AsgardPodOperator` starts the pod with
``python -m asgard_provider.pod_entry <encoded spec>``: the operator class, its keyword arguments (already
rendered by Airflow) and the parts of the task context the Asgard operators read (DAG, run and task ids, logical
date, data interval, try number). Connections come from the pod's environment (``AIRFLOW_CONN_*`` from Kubernetes
Secrets). The operator's return value is written to ``/airflow/xcom/return.json``, which the provider's XCom
sidecar passes back to the Airflow task.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from asgard_provider.exceptions import AsgardError
from asgard_provider.kubernetes import decode_spec

#: Operators a pod may run (a spec naming anything else is refused).
ALLOWED_OPERATORS = (
    "asgard_provider.operators.mlflow.MLflowTrainOperator",
    "asgard_provider.operators.inference.BatchInferenceOperator",
)
#: Where the provider's XCom sidecar reads the return value.
XCOM_PATH = "/airflow/xcom/return.json"
XCOM_PATH_ENV = "ASGARD_XCOM_PATH"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def task_context(ctx: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the task-context keys the Asgard operators read from the spec's plain values."""
    ti = SimpleNamespace(
        dag_id=ctx.get("dag_id"),
        task_id=ctx.get("task_id"),
        run_id=ctx.get("run_id"),
        try_number=ctx.get("try_number"),
        map_index=-1,
    )
    return {
        "dag": SimpleNamespace(dag_id=ctx.get("dag_id")),
        "ti": ti,
        "task_instance": ti,
        "run_id": ctx.get("run_id"),
        "logical_date": _when(ctx.get("logical_date")),
        "data_interval_start": _when(ctx.get("data_interval_start")),
        "data_interval_end": _when(ctx.get("data_interval_end")),
    }


def run(spec: dict[str, Any]) -> Any:
    """Instantiate the operator named in ``spec`` with its arguments and execute it; return its result."""
    path = spec.get("operator")
    if path not in ALLOWED_OPERATORS:
        raise AsgardError(f"operator {path!r} may not run in an Asgard pod (allowed: {', '.join(ALLOWED_OPERATORS)})")
    module_name, class_name = str(path).rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = dict(spec.get("kwargs") or {})
    context = task_context(dict(spec.get("context") or {}))
    operator = cls(task_id=kwargs.pop("task_id", context["ti"].task_id or "asgard_pod_task"), **kwargs)
    return operator.execute(context)


def main(argv: Sequence[str] | None = None) -> int:
    """Decode the spec argument, run the operator, write its result for the XCom sidecar."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m asgard_provider.pod_entry <encoded spec>", file=sys.stderr)
        return 2
    spec = decode_spec(args[0])
    try:
        result = run(spec)
    except AsgardError as exc:
        print(f"{spec.get('operator')} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    out = Path(os.environ.get(XCOM_PATH_ENV, XCOM_PATH))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
