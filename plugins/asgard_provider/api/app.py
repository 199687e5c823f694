"""The Asgard FastAPI app: scoring, feature views, models, health and read-only SQL over the Iceberg tables.

Every route requires the Airflow auth manager's token (``Authorization: Bearer <jwt>`` from ``POST /auth/token``,
or the UI's session cookie), checked by Airflow's own security dependencies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from asgard_provider.api import batch, promotions, ui
from asgard_provider.api import models as m
from asgard_provider.api.query import run_query
from asgard_provider.api.service import (
    AsgardService,
    feature_views,
    health,
    model_detail,
    public,
    registered_models,
)
from asgard_provider.api.trino_query import run_trino_query
from asgard_provider.engines.stores import TRINO_CONN_ID
from asgard_provider.exceptions import (
    AsgardError,
    EntityNotFoundError,
    InvalidEntityIdError,
    InvalidFeaturesError,
    ModelNotFoundError,
    QueryEngineError,
    QueryError,
)
from asgard_provider.serving import Score

log = logging.getLogger(__name__)

#: Most key columns and longest column name or value ``GET /score?col=value&...`` accepts.
MAX_KEY_COLUMNS = 16
MAX_KEY_LENGTH = 64

#: Seconds a client may take to send a request body before it is answered 408.
BODY_TIMEOUT = 10.0

_ERRORS = {"model": m.ErrorResponse}
_STATUS: list[tuple[type[Exception], int]] = [
    (EntityNotFoundError, 404),
    (ModelNotFoundError, 404),
    (InvalidEntityIdError, 422),
    (InvalidFeaturesError, 422),
    (QueryError, 400),
    (QueryEngineError, 502),
    (AsgardError, 500),
]


def create_app(
    service: AsgardService | None = None,
    *,
    auth: bool = True,
    pipeline: str | None = None,
    base_dir: Path | None = None,
    **options: Any,
) -> FastAPI:
    """Build the app; ``service`` (or ``pipeline``/``options``) says which model scores by default.

    ``auth=False`` drops the token check (only for a server on a trusted network).
    """
    svc = service or AsgardService(pipeline, base_dir, **options)
    app = FastAPI(
        title="Asgard API",
        version="1",
        description="Online scoring, feature views, models, health and read-only SQL over the Iceberg tables.",
    )
    app.state.asgard = svc
    app.add_exception_handler(AsgardError, _asgard_error)
    app.add_middleware(BodyTimeout)
    read = _auth(auth, "read")
    app.include_router(_scoring_router(svc), dependencies=read)
    app.include_router(_catalog_router(svc), dependencies=read)
    app.include_router(_query_router(), dependencies=_auth(auth, "assets"))
    app.include_router(batch.router(auth))
    app.include_router(promotions.router(svc.options.get("mlflow_conn_id")), dependencies=read)
    app.include_router(ui.router(auth, svc.options.get("mlflow_conn_id")))
    return app


def _auth(enabled: bool, scope: str) -> list[Any]:
    """Airflow's security dependencies: any authenticated user reads; SQL needs read access to assets."""
    if not enabled:
        return []
    from airflow.api_fastapi.core_api.security import requires_access_asset, requires_authenticated

    check = requires_access_asset("GET") if scope == "assets" else requires_authenticated()
    return [Depends(check)]


def _asgard_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in _STATUS if isinstance(exc, kind))
    detail = public(str(exc))
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, status_code=status)


class BodyTimeout:
    """ASGI middleware: a client that has not sent its whole body within ``timeout`` s is treated as gone.

    Under uvicorn every connection is a task on one event loop, so a slow client never blocks the others; this
    bounds how long a short body (``Content-Length`` larger than what arrives) keeps its request open.
    """

    def __init__(self, app: Any, timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        """Pass the request on with a ``receive`` that gives up at the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout

        async def timed_receive() -> Any:
            try:
                return await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                return {"type": "http.disconnect"}

        await self.app(scope, timed_receive, send)


def _scoring_router(svc: AsgardService) -> APIRouter:
    """Scoring routes: ``async``, each doing its work in one thread-pool call and answering the JSON bytes.

    A plain ``def`` route costs FastAPI several thread-pool hops per request (the route, then validating and
    serializing its return value), more than scoring one row; here the answer is built once, in the worker thread.
    """
    router = APIRouter(tags=["scoring"], responses={404: _ERRORS, 422: _ERRORS, 500: _ERRORS})

    @router.post("/mlops/inference", response_model=m.InferenceResponse, summary="Score given feature values")
    async def inference(body: m.InferenceRequest) -> Response:
        """One prediction per input row, from the model at ``model_version`` or ``@model_alias``."""
        return await run_in_threadpool(_inference, svc, body)

    @router.get("/score/{entity_id}", response_model=m.EntityScore, summary="Score one entity from the online store")
    async def score_one(entity_id: str = PathParam(max_length=64)) -> Response:
        """Apply the default model to the entity's materialized online features."""
        return await run_in_threadpool(lambda: _json(_entity_score(svc.online().score(entity_id))))

    @router.get(
        "/score",
        response_model=m.EntityScore,
        summary="Score one entity by its key columns from the online store",
        description="Every join key column as a query parameter, e.g. `GET /score?store_id=1&sku_id=7` for a "
        "composite key (`GET /score?account_id=1001` for a single one); a missing or unknown column is a 422 "
        "naming the entity's keys, an entity without online features a 404 naming its key values.",
    )
    async def score_by_key(request: Request) -> Response:
        """Apply the default model to the online features of the entity the query parameters name."""
        key = _key_params(request)
        return await run_in_threadpool(lambda: _json(_entity_score(svc.online().score(key))))

    @router.post("/score", response_model=m.ScoreResponse, summary="Score entities by key from the online store")
    async def score_many(body: m.ScoreRequest) -> Response:
        """Each id's online features scored by the named model (default: the server's), in request order."""

        def run() -> Response:
            scorer = svc.online(body.model_name, body.model_alias, body.model_version)
            return _json(m.ScoreResponse(scores=[_entity_score(scorer.score(i)) for i in body.entity_ids]))

        return await run_in_threadpool(run)

    return router


def _json(model: BaseModel) -> Response:
    """Answer the response model as JSON, serialized once by pydantic (FastAPI passes a ``Response`` as is)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _entity_score(score: Score) -> m.EntityScore:
    return m.EntityScore.model_validate(score, from_attributes=True)


def _inference(svc: AsgardService, body: m.InferenceRequest) -> Response:
    scorer = svc.model(body.model_name, body.model_alias, body.model_version)
    started = time.perf_counter()
    rows = [scorer.row(values) for values in body.inputs]
    predictions = [m.InputPrediction(index=i, **vars(scorer.predict(row))) for i, row in enumerate(rows)]
    return _json(
        m.InferenceResponse(
            model_name=scorer.model_name,
            model_version=str(scorer.model_version),
            predictions=predictions,
            inference_time_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    )


def _key_params(request: Request) -> dict[str, str]:
    """Return the query parameters as ``{join key: value}``; reject a column given twice or a too long value."""
    params = request.query_params
    if len(params) > MAX_KEY_COLUMNS or any(len(params.getlist(k)) != 1 for k in params):
        raise InvalidEntityIdError(f"give each join key column once, at most {MAX_KEY_COLUMNS} of them")
    if any(len(k) > MAX_KEY_LENGTH or len(v) > MAX_KEY_LENGTH for k, v in params.items()):
        raise InvalidEntityIdError(f"a join key column or value is longer than {MAX_KEY_LENGTH} characters")
    return dict(params)


def _catalog_router(svc: AsgardService) -> APIRouter:
    router = APIRouter(responses={404: _ERRORS, 500: _ERRORS})
    feast_conn = svc.options.get("feast_conn_id")
    mlflow_conn = svc.options.get("mlflow_conn_id")

    @router.get("/features", response_model=m.FeatureViewsResponse, tags=["features"], summary="Feature views")
    def features() -> m.FeatureViewsResponse:
        """Every feature view with its source table's snapshot and how fresh its online copy is."""
        project, views = feature_views(feast_conn)
        return m.FeatureViewsResponse(project=project, feature_views=[m.FeatureViewInfo(**v) for v in views])

    @router.get("/models", response_model=m.ModelsResponse, tags=["models"], summary="Registered models")
    def models() -> m.ModelsResponse:
        """Every registered model with its aliases."""
        return m.ModelsResponse(models=[m.ModelSummary(**s) for s in registered_models(mlflow_conn)])

    @router.get("/models/{name}", response_model=m.ModelDetail, tags=["models"], summary="One model's versions")
    def model(name: str = PathParam(max_length=256)) -> m.ModelDetail:
        """Versions newest first, with aliases, promotion tags and metrics."""
        return m.ModelDetail(**model_detail(name, mlflow_conn))

    @router.get(
        "/health",
        response_model=m.HealthResponse,
        tags=["health"],
        summary="Catalog, MLflow and online store",
        responses={503: {"model": m.HealthResponse}},
    )
    def check() -> Any:
        """``ok`` (200) when every engine answers, else ``degraded`` (503) with the failing component's error."""
        components = health(mlflow_conn, feast_conn)
        ok = all(c["ok"] for c in components.values())
        body = m.HealthResponse(status="ok" if ok else "degraded", components=components)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    return router


def _defined(conn_id: str) -> bool:
    """Whether Airflow knows connection ``conn_id``: ``/query`` runs on Trino with it, on DuckDB without."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def _trino(conn_id: str, timeout_seconds: float) -> Any:
    from asgard_provider.hooks.trino import TrinoQueryHook

    return TrinoQueryHook(conn_id, timeout_seconds=timeout_seconds).get_conn()


def _query_router() -> APIRouter:
    router = APIRouter(tags=["query"], responses={400: _ERRORS, 422: _ERRORS, 502: _ERRORS})

    @router.post("/query", response_model=m.QueryResponse, summary="Read-only SQL over the Iceberg tables")
    def query(body: m.QueryRequest) -> m.QueryResponse:
        """One ``SELECT`` over ``namespace.table``: on Trino when its connection is defined, else on DuckDB."""
        from asgard_provider.hooks.iceberg import IcebergHook

        catalog = IcebergHook().catalog
        args = {"limit": body.limit, "timeout_seconds": body.timeout_seconds, "as_of": body.as_of}
        if _defined(TRINO_CONN_ID):
            result = run_trino_query(catalog, body.sql, connect=lambda t: _trino(TRINO_CONN_ID, t), **args)
        else:
            result = run_query(catalog, body.sql, **args)
        return m.QueryResponse(row_count=len(result.rows), **vars(result))

    return router
