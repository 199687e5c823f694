"""Asgard's HTTP API: a FastAPI app served by ``airflow api-server`` (plugin, under ``/asgard``) and ``asgard serve``.

``create_app()`` builds it; see docs/ml.md ("HTTP: the Asgard API").
"""

from __future__ import annotations

from asgard_provider.api.app import create_app

__all__ = ["create_app"]
