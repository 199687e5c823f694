"""Asgard's HTTP API: a FastAPI app served by ``airflow api-server`` (plugin, under ``/asgard``) and ``asgard serve``.

``create_app()`` builds it; see docs/ml.md ("HTTP: the Asgard API"). The package imports FastAPI only when
``create_app`` is first used, so importing the plugin (``asgard_provider.api.plugin``) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from asgard_provider.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
