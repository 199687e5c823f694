"""``asgard serve``: the Asgard API on uvicorn, for a serving-only deployment (no Airflow api-server).

With ``workers`` > 1, uvicorn runs that many worker processes on one listening socket: each has its own event
loop, GIL and loaded model, so requests are scored on every core. The model is loaded and checked in the parent
before any worker starts (a bad model fails at start), and every worker gets the parent's options and Airflow
``[api_auth] jwt_secret``, so a token accepted by one worker is accepted by all.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from asgard_provider.api.app import create_app
from asgard_provider.api.models import InferenceRequest
from asgard_provider.api.service import AsgardService
from asgard_provider.exceptions import ModelNotFoundError

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE = 5

#: Connections plus requests in flight (per worker) beyond which the server answers 503 instead of queueing.
MAX_CONCURRENCY = 200

#: Most worker processes ``asgard serve`` starts unless ``--workers`` says otherwise.
MAX_DEFAULT_WORKERS = 4

#: Environment variable handing the server's options (JSON) to its worker processes.
OPTIONS_ENV = "ASGARD_SERVE_OPTIONS"

#: Environment variable through which Airflow reads ``[api_auth] jwt_secret`` (the workers' shared key).
JWT_SECRET_ENV = "AIRFLOW__API_AUTH__JWT_SECRET"  # noqa: S105 (a variable name)


def default_workers() -> int:
    """One worker per CPU, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def build(options: dict[str, Any], *, auth: bool = True, announce: bool = True) -> Any:
    """Build the app with the default scorer loaded now, so a bad model fails at start.

    With ``auth``, Airflow's auth manager runs in this process: tokens of the same Airflow deployment (same
    ``[api_auth] jwt_secret`` and metadata DB) are accepted, and ``POST /auth/token`` issues them.
    """
    service = AsgardService(**options)
    scorer = service.online()
    _warm_inference(service, scorer.model_name)
    app = create_app(service, auth=auth)
    if auth:
        from airflow.api_fastapi.app import init_auth_manager

        init_auth_manager(app)
    if announce:
        print(
            f"serving {scorer.model_name} version {scorer.model_version}" + ("" if auth else " WITHOUT authentication")
        )
    return app


def _warm_inference(service: AsgardService, model_name: str) -> None:
    """Load the scorer ``POST /mlops/inference`` uses for the default model too, so no request waits for it."""
    alias = InferenceRequest.model_fields["model_alias"].default
    try:
        service.model(model_name, alias, None)
    except ModelNotFoundError:
        pass  # the model has no such alias: those requests answer 404, as they would without this


def worker_app() -> Any:
    """App factory run by each uvicorn worker process, from the options :func:`serve` put in the environment."""
    spec = json.loads(os.environ[OPTIONS_ENV])
    return build(spec["options"], auth=spec["auth"], announce=False)


def _share_jwt_secret() -> None:
    """Put this process's JWT signing key in the environment the workers inherit (one key for all of them)."""
    from airflow.api_fastapi.auth.tokens import get_signing_key

    os.environ[JWT_SECRET_ENV] = get_signing_key("api_auth", "jwt_secret")


def serve(
    options: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    auth: bool = True,
    workers: int | None = None,
) -> None:
    """Run the app under uvicorn until interrupted: ``workers`` processes (default :func:`default_workers`)."""
    import uvicorn

    count = workers or default_workers()
    app = build(options, auth=auth)
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "timeout_keep_alive": KEEP_ALIVE,
        "limit_concurrency": MAX_CONCURRENCY,
        "access_log": False,
        "log_level": "warning",
    }
    print(f"listening on http://{host}:{port} with {count} worker(s) (OpenAPI: /docs, /openapi.json)", flush=True)
    if count == 1:
        uvicorn.run(app, **settings)
    else:
        del app  # each worker loads its own copy; this one only proved the model loads
        if auth:
            _share_jwt_secret()
        os.environ[OPTIONS_ENV] = json.dumps({"options": options, "auth": auth})
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=count, **settings)
    sys.stdout.flush()
