"""``asgard serve``: the Asgard API on uvicorn, for a serving-only deployment (no Airflow api-server)."""

from __future__ import annotations

import sys
from typing import Any

from asgard_provider.api.app import create_app
from asgard_provider.api.service import AsgardService

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE = 5

#: Connections plus requests in flight beyond which the server answers 503 instead of queueing.
MAX_CONCURRENCY = 200


def build(options: dict[str, Any], *, auth: bool = True) -> Any:
    """Build the app with the default scorer loaded now, so a bad model fails at start.

    With ``auth``, Airflow's auth manager runs in this process: tokens of the same Airflow deployment (same
    ``[api_auth] jwt_secret`` and metadata DB) are accepted, and ``POST /auth/token`` issues them.
    """
    service = AsgardService(**options)
    scorer = service.online()
    app = create_app(service, auth=auth)
    if auth:
        from airflow.api_fastapi.app import init_auth_manager

        init_auth_manager(app)
    print(f"serving {scorer.model_name} version {scorer.model_version}" + ("" if auth else " WITHOUT authentication"))
    return app


def serve(options: dict[str, Any], *, host: str = "127.0.0.1", port: int = 8090, auth: bool = True) -> None:
    """Run the app under uvicorn until interrupted; one event loop, sync routes in its thread pool."""
    import uvicorn

    app = build(options, auth=auth)
    print(f"listening on http://{host}:{port} (OpenAPI: /docs, /openapi.json)", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=MAX_CONCURRENCY,
        access_log=False,
        log_level="warning",
    )
    sys.stdout.flush()
