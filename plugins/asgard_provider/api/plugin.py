"""The Airflow plugin: ``airflow api-server`` mounts the Asgard API under ``/asgard`` (entry point ``airflow.plugins``).

The default model for ``/score`` comes from ``$ASGARD_SERVE_PIPELINE`` (a pipeline id; without it requests
must name their model); models load on their first request, so the api-server starts without them.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

from asgard_provider.api.app import create_app

#: Where the api-server mounts the app.
URL_PREFIX = "/asgard"


class AsgardPlugin(AirflowPlugin):
    """Registers the Asgard FastAPI app with the api-server."""

    name = "asgard"
    fastapi_apps = [
        {
            "app": create_app(pipeline=os.environ.get("ASGARD_SERVE_PIPELINE") or None),
            "url_prefix": URL_PREFIX,
            "name": "Asgard API",
        }
    ]
