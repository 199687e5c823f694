"""Hook for the Trino that answers ``/query`` in production: the provider's ``TrinoHook`` on catalog ``iceberg``."""

from __future__ import annotations

import json
from typing import Any

import attrs
from airflow.providers.trino.hooks.trino import TrinoHook

from asgard_provider.catalog import CATALOG_NAME
from asgard_provider.engines.stores import TRINO_CONN_ID

#: Trino session property that bounds a query's run time on the cluster.
TIMEOUT_PROPERTY = "query_max_execution_time"
#: ``X-Trino-Source`` of Asgard's queries, unless the connection's extra names another ``source``.
QUERY_SOURCE = "asgard-query"


class TrinoQueryHook(TrinoHook):
    """Read-only queries over the shared Iceberg catalog through an Airflow ``trino`` connection.

    Host, user, authentication (password, JWT, certificates, Kerberos), TLS, roles and client tags are read from
    the connection as the provider's ``TrinoHook`` reads them. This hook sets the catalog to ``iceberg`` (the one
    the Trino chart mounts on the shared REST catalog) and adds ``query_max_execution_time`` to the connection's
    own session properties.
    """

    default_conn_name = TRINO_CONN_ID

    def __init__(self, trino_conn_id: str = TRINO_CONN_ID, *, timeout_seconds: float | None = None) -> None:
        super().__init__(trino_conn_id=trino_conn_id)
        self.timeout_seconds = timeout_seconds

    def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
        """Return the connection with catalog ``iceberg``, Asgard's source and the timeout as a session property."""
        conn = super().get_connection(conn_id)
        extra = conn.extra_dejson
        properties = dict(extra.get("session_properties") or {})
        if self.timeout_seconds is not None:
            properties[TIMEOUT_PROPERTY] = trino_duration(self.timeout_seconds)
        extra.update(catalog=CATALOG_NAME, session_properties=properties)
        extra.setdefault("source", QUERY_SOURCE)
        return attrs.evolve(conn, extra=json.dumps(extra))


def trino_duration(seconds: float) -> str:
    """Format ``seconds`` as a Trino duration (``"10s"``, ``"2.5s"``), at least a millisecond."""
    return f"{max(round(seconds, 3), 0.001):.3f}".rstrip("0").rstrip(".") + "s"
