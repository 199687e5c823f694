"""The Airflow plugin: ``airflow api-server`` mounts the Asgard API under ``/asgard`` (entry point ``airflow.plugins``).

Every Airflow process that loads plugins imports this module (the DAG processor does, to serialize DAGs), so it
imports nothing but Airflow's plugin base: the FastAPI app is built on the first request that reaches it.
The default model for ``/score`` comes from ``$ASGARD_SERVE_PIPELINE`` (a pipeline id; without it requests
must name their model); models load on their first request, so the api-server starts without them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the api-server mounts the app.
URL_PREFIX = "/asgard"

#: Path of a pipeline's page in the app (kept here so importing the plugin stays cheap; ``api.ui`` uses it).
PAGE_ROUTE = "/ui/pipelines/{dag_id}"


def page_href(dag_id: str) -> str:
    """Return the link to a pipeline's page, relative to the Airflow UI's base URL (its ``<base href>``).

    Relative, it works under a sub-path (``[api] base_url = https://host/airflow``) as well as at the root.
    """
    return URL_PREFIX.lstrip("/") + PAGE_ROUTE.replace("{dag_id}", dag_id)


def _build() -> Any:
    from asgard_provider.api.app import create_app

    return create_app(pipeline=os.environ.get("ASGARD_SERVE_PIPELINE") or None)


class LazyApp:
    """An ASGI app that builds the real one (``factory()``) on its first request and then passes every call on."""

    def __init__(self, factory: Callable[[], Any] = _build) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        """The built app (built now if no request has come yet)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        """Hand the call to the built app."""
        await self.app(scope, receive, send)


class AsgardPlugin(AirflowPlugin):
    """Registers the Asgard FastAPI app with the api-server."""

    name = "asgard"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Asgard API"}]
    #: The "Asgard" tab of every DAG page: the pipeline's page (``asgard_provider.api.ui``) in an iframe.
    external_views = [
        {
            "name": "Asgard",
            "href": page_href("{DAG_ID}"),
            "destination": "dag",
            "url_route": "asgard",
        }
    ]
