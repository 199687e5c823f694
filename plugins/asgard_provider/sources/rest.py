"""Records from a paginated JSON REST API as Arrow batches, read with dlt's RESTClient (no Airflow).

A resource is a path under the connection's base URL. dlt's paginators follow one of four styles: page numbers
(``page`` / ``per_page`` until an empty page), a cursor taken from the body, a next-page URL taken from the body
or from the ``Link`` header. The session repeats a request on 429, 5xx, timeouts and refused connections.
Records are the list at ``record_path`` (dot-separated keys) in each body. On top of dlt, this module refuses
next-page links to another origin (the credentials would follow them) and names the resource and the page, never
a header or credential, in every error. dlt is imported only when a read starts, never at DAG parse.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

import pyarrow as pa

from asgard_provider.exceptions import SourceError
from asgard_provider.sources.common import mask

if TYPE_CHECKING:
    from dlt.sources.helpers.rest_client.paginators import BasePaginator

#: Pages one read may fetch before it is refused as a runaway pagination loop.
MAX_PAGES = 100_000
#: Tries of one request on 429, 5xx, a timeout or a dropped connection, and the base of the exponential backoff.
REQUEST_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.5
RETRY_MAX_DELAY_S = 30.0
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True, repr=False)
class RestEndpoint:
    """Base URL and credentials of an API; ``repr`` shows the URL only."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None

    def __repr__(self) -> str:
        """Describe the endpoint without its credentials."""
        return f"RestEndpoint({self.base_url})"

    def secrets(self) -> list[str]:
        """Every credential value, for masking messages."""
        values = [v for k, v in self.headers.items() if k.lower() in ("authorization", "x-api-key")]
        values += [v.split(" ", 1)[-1] for v in values]
        return values + [self.bearer_token or ""] + ([self.basic_auth[1]] if self.basic_auth else [])


@dataclass(frozen=True)
class Pagination:
    """How the API splits a resource into pages."""

    style: Literal["none", "page_number", "cursor", "next_url", "link_header"] = "none"
    page_param: str = "page"
    size_param: str = "per_page"
    size: int = 1000
    first_page: int = 1
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    next_url_path: str = "next"


@dataclass(frozen=True)
class RestRequest:
    """One resource to read: path, query parameters, where the records are and how pages follow."""

    resource: str
    params: Mapping[str, str] = field(default_factory=dict)
    record_path: str = ""
    pagination: Pagination = Pagination()


def _missing_key(body: Any, path: str) -> str | None:
    """Return the first key of the dot-separated ``path`` that ``body`` lacks, or None when it exists."""
    value = body
    for key in filter(None, path.split(".")):
        if not isinstance(value, Mapping) or key not in value:
            return key
        value = value[key]
    return None


def _same_origin(base: str, url: str) -> bool:
    a, b = urlsplit(base), urlsplit(url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _paginator(pages: Pagination) -> BasePaginator:
    """Return dlt's paginator for a pagination style."""
    from dlt.sources.helpers.rest_client import paginators

    if pages.style == "page_number":
        return paginators.PageNumberPaginator(
            base_page=pages.first_page, page=pages.first_page, page_param=pages.page_param, total_path=None
        )
    if pages.style == "cursor":
        return paginators.JSONResponseCursorPaginator(
            cursor_path=pages.cursor_path, cursor_param=pages.cursor_param, stop_after_empty_page=True
        )
    if pages.style == "next_url":
        return paginators.JSONLinkPaginator(next_url_path=pages.next_url_path)
    if pages.style == "link_header":
        return paginators.HeaderLinkPaginator()
    return paginators.SinglePagePaginator()


def _client(endpoint: RestEndpoint) -> Any:
    """Return dlt's RESTClient on a ``requests`` session retrying transient failures (urllib3's ``Retry``).

    dlt's own retrying ``Client`` is not used: its constructor resolves dlt's configuration (environment,
    ``.dlt/*.toml``) and, inside an Airflow task, reads the Airflow Variable ``dlt_secrets_toml`` and warns in the
    task log when it is absent. Passing ``config`` keeps RESTClient from resolving it too.
    """
    import requests
    from dlt.common.configuration.specs import RuntimeConfiguration
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import BearerTokenAuth, HttpBasicAuth
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    auth: Any = None
    if endpoint.bearer_token:
        auth = BearerTokenAuth(token=endpoint.bearer_token)
    elif endpoint.basic_auth:
        auth = HttpBasicAuth(username=endpoint.basic_auth[0], password=endpoint.basic_auth[1])
    retry = Retry(
        total=REQUEST_ATTEMPTS - 1,
        backoff_factor=RETRY_BACKOFF_S,
        backoff_max=RETRY_MAX_DELAY_S,
        status_forcelist=RETRY_STATUSES,
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return RESTClient(
        endpoint.base_url, headers=dict(endpoint.headers), auth=auth, session=session, config=RuntimeConfiguration()
    )


def fetch_pages(
    endpoint: RestEndpoint, request: RestRequest, *, connect_timeout: float, read_timeout: float
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's records, following the pagination until the resource is exhausted."""
    where = f"resource {request.resource!r}"
    first = urljoin(endpoint.base_url.rstrip("/") + "/", request.resource.lstrip("/"))
    if not _same_origin(endpoint.base_url, first):
        raise SourceError(f"{where}: the resource leaves the API's origin ({urlsplit(first).netloc}); refused")
    params: dict[str, Any] = dict(request.params)
    if request.pagination.style == "page_number":
        params[request.pagination.size_param] = request.pagination.size
    pages = _client(endpoint).paginate(
        request.resource,
        params=params,
        paginator=_paginator(request.pagination),
        data_selector=request.record_path or "$",
        timeout=(connect_timeout, read_timeout),
    )
    for number in range(1, MAX_PAGES + 1):
        page = _next_page(pages, endpoint, f"{where} page {number}")
        if page is None:
            return
        records = list(page)
        if not records and (key := _missing_key(page.response.json(), request.record_path)) is not None:
            raise SourceError(f"{where} page {number}: record_path {request.record_path!r} has no key {key!r}")
        if not all(isinstance(r, Mapping) for r in records):
            raise SourceError(f"{where} page {number}: record_path does not hold a list of objects")
        if records:
            yield records
        following = page.request.url  # dlt points the request at the next page before it yields this one
        if page.paginator.has_next_page and not _same_origin(endpoint.base_url, following):
            raise SourceError(f"next page link leaves the API's origin ({urlsplit(following).netloc}); refused")
    raise SourceError(f"{where}: more than {MAX_PAGES} pages; is the pagination looping?")


def _next_page(pages: Iterator[Any], endpoint: RestEndpoint, where: str) -> Any:
    """Return the next ``PageData`` of dlt's paginate (None after the last); failures raise SourceError."""
    import requests

    try:
        return next(pages, None)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        reason = exc.response.reason if exc.response is not None else ""
        raise SourceError(f"{where}: HTTP {status} {reason}".rstrip()) from None
    except requests.JSONDecodeError:
        raise SourceError(f"{where}: the body is not JSON") from None
    except requests.RequestException as exc:
        reason = mask(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, endpoint.secrets())
        raise SourceError(f"{where}: request failed: {type(exc).__name__}: {reason}") from None


def to_batches(pages: Iterator[list[dict[str, Any]]], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Group page records into Arrow batches of up to ``batch_rows`` rows (types inferred per batch)."""
    pending: list[dict[str, Any]] = []
    for records in pages:
        pending.extend(records)
        while len(pending) >= batch_rows:
            yield from pa.Table.from_pylist(pending[:batch_rows]).to_batches()
            pending = pending[batch_rows:]
    if pending:
        yield from pa.Table.from_pylist(pending).to_batches()


def in_window(records: list[dict[str, Any]], cursor: str, lower: datetime, upper: datetime) -> list[dict[str, Any]]:
    """Keep the records whose ``cursor`` lies in ``[lower, upper)``, the cursor parsed (UTC, no tzinfo)."""
    from asgard_provider.sources.common import utc_naive

    kept = []
    for record in records:
        value = record.get(cursor)
        if value is None:
            continue
        when = utc_naive(value, f"cursor {cursor!r}")
        if lower <= when < upper:
            kept.append({**record, cursor: when})
    return kept
