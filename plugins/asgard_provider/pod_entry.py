"""Entry point of an Asgard task pod: run one engine (training or scoring) and hand its result to Airflow.

:class:`~asgard_provider.operators.kubernetes_pod.AsgardPodOperator` starts the pod with
``python -m asgard_provider.pod_entry <encoded spec>``: the engine's name (:data:`ENGINES`), its arguments (the
fields of :class:`~asgard_provider.engines.training.TrainingSpec` or
:class:`~asgard_provider.engines.scoring.ScoringSpec`, already rendered by Airflow) and the ids of the
connections to use. Nothing here imports Airflow: connections come from the pod's environment (``AIRFLOW_CONN_*``
in JSON form, from Kubernetes Secrets) through :func:`asgard_provider.engines.stores.env_stores`. The engine's
typed result is written as JSON to ``/airflow/xcom/return.json``, which the provider's XCom sidecar passes back to
the Airflow task.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgard_provider.engines.stores import FEAST_CONN_ID, ICEBERG_CONN_ID, MLFLOW_CONN_ID, Stores, env_stores
from asgard_provider.exceptions import AsgardError
from asgard_provider.kubernetes import decode_spec

#: Where the provider's XCom sidecar reads the return value.
XCOM_PATH = "/airflow/xcom/return.json"
XCOM_PATH_ENV = "ASGARD_XCOM_PATH"
#: Keys of a spec's ``connections``, with their defaults.
CONNECTIONS = {"iceberg_conn_id": ICEBERG_CONN_ID, "mlflow_conn_id": MLFLOW_CONN_ID, "feast_conn_id": FEAST_CONN_ID}

_LOG = logging.getLogger("asgard_provider.pod")


@dataclass(frozen=True)
class Engine:
    """An engine a pod may run: its argument class and the call returning a result with ``as_dict()``."""

    spec_class: Callable[..., Any]
    run: Callable[[Any, Stores, logging.Logger], Any]


def _train() -> Engine:
    from asgard_provider.engines.training import TrainingSpec, train

    return Engine(TrainingSpec, train)


def _score() -> Engine:
    from asgard_provider.engines.scoring import ScoringSpec, score

    return Engine(ScoringSpec, score)


#: Engines a pod may run, by the name a spec gives (a spec naming anything else is refused).
ENGINES: dict[str, Callable[[], Engine]] = {"train": _train, "score": _score}


def run(spec: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the engine ``spec`` names with its arguments and the connections from the environment."""
    name = spec.get("engine")
    if name not in ENGINES:
        raise AsgardError(f"engine {name!r} may not run in an Asgard pod (allowed: {', '.join(ENGINES)})")
    engine = ENGINES[str(name)]()
    try:
        arguments = engine.spec_class(**dict(spec.get("args") or {}))
    except TypeError as exc:
        raise AsgardError(f"the arguments of engine {name!r} do not fit it: {exc}") from None
    connections = {**CONNECTIONS, **dict(spec.get("connections") or {})}
    stores = env_stores(**connections, environ=environ)
    result = engine.run(arguments, stores, _LOG)
    return dict(result.as_dict())


def main(argv: Sequence[str] | None = None) -> int:
    """Decode the spec argument, run the engine, write its result for the XCom sidecar."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m asgard_provider.pod_entry <encoded spec>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = decode_spec(args[0])
    try:
        result = run(spec)
    except AsgardError as exc:
        print(f"engine {spec.get('engine')!r} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    out = Path(os.environ.get(XCOM_PATH_ENV, XCOM_PATH))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
