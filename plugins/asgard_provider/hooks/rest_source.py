"""Hook reading records from a REST API whose base URL and credentials live in an Airflow connection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseHook

from asgard_provider.exceptions import SourceError
from asgard_provider.sources.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    Columns,
    Watchdog,
    first_line,
    mask,
    source_connection,
)
from asgard_provider.sources.rest import (
    REQUEST_ATTEMPTS,
    RETRY_MAX_DELAY_S,
    RestEndpoint,
    RestRequest,
    fetch_pages,
    in_window,
    to_batches,
)


class RestSourceHook(BaseHook):
    """Read a paginated JSON resource as Arrow batches (dlt's RESTClient, imported when a read starts).

    The connection (type ``http``) gives the base URL: ``host`` (with or without a scheme), ``port``, and
    ``schema`` as the scheme when the host has none. Credentials: ``login``/``password`` for HTTP basic auth, or
    ``password`` with extra ``{"auth": "bearer"}`` (or extra ``token``) for ``Authorization: Bearer`` (dlt's
    ``HttpBasicAuth`` / ``BearerTokenAuth``); extra
    ``headers`` are sent with every request. Pipeline configs never carry any of these.
    """

    conn_name_attr = "rest_conn_id"
    default_conn_name = "asgard_rest_default"
    conn_type = "http"
    hook_name = "REST API source (Asgard)"

    def __init__(
        self,
        rest_conn_id: str = default_conn_name,
        *,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout: int = DEFAULT_STATEMENT_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.rest_conn_id = rest_conn_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._watchdog = Watchdog()

    @cached_property
    def endpoint(self) -> RestEndpoint:
        """Base URL and credentials from the Airflow connection."""
        conn = source_connection(self, self.rest_conn_id)
        host = (conn.host or "").rstrip("/")
        if not host:
            raise SourceError(f"connection {self.rest_conn_id!r} has no host (the API's base URL)")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port and host.count(":") == 1:
            host = f"{host}:{conn.port}"
        extra = conn.extra_dejson
        headers = {str(k): str(v) for k, v in (extra.get("headers") or {}).items()}
        token = extra.get("token") or (conn.password if extra.get("auth") == "bearer" else None)
        basic = (conn.login, conn.password or "") if conn.login and not token else None
        return RestEndpoint(base_url=host, headers=headers, bearer_token=token or None, basic_auth=basic)

    def get_conn(self) -> RestEndpoint:
        """Return the API endpoint (requests are made per read)."""
        return self.endpoint

    def cancel(self) -> None:
        """Stop the running read (the operator's ``on_kill``)."""
        self._watchdog.cancel()

    def stream(
        self,
        request: RestRequest,
        *,
        columns: Columns,
        batch_rows: int = 100_000,
        cursor: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield the resource's records as Arrow batches; with ``window``, only records whose cursor is in it."""
        endpoint = self.endpoint
        what = f"reading resource {request.resource!r} from connection {self.rest_conn_id!r}"

        def pages() -> Iterator[list[dict[str, Any]]]:
            for records in fetch_pages(
                endpoint, request, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
            ):
                yield in_window(records, cursor, *window) if cursor and window else records

        def produce() -> Iterator[pa.RecordBatch]:
            return to_batches(pages(), batch_rows)

        batches = self._watchdog.run(
            produce,
            first_timeout=REQUEST_ATTEMPTS * (self.connect_timeout + self.read_timeout + RETRY_MAX_DELAY_S),
            next_timeout=REQUEST_ATTEMPTS * (self.read_timeout + RETRY_MAX_DELAY_S),
            what=what,
        )
        try:
            yield from columns.apply(batches, f"resource {request.resource!r}")
        except SourceError as exc:
            raise SourceError(
                mask(f"{what}: {exc}" if what not in str(exc) else str(exc), endpoint.secrets())
            ) from None
        except Exception as exc:
            message = mask(first_line(exc), endpoint.secrets())
            raise SourceError(f"{what} failed: {type(exc).__name__}: {message}") from None
