"""Records from a paginated JSON REST API as Arrow batches (requests; no Airflow).

A resource is a path under the connection's base URL. Pagination follows one of three styles: page numbers
(``page`` / ``per_page`` until a short or empty page), a cursor taken from the body, or a next-page URL taken
from the body. Records are the list at ``record_path`` (dot-separated keys) in each body. Every error names the
resource and the page, never a header or credential.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import pyarrow as pa

from asgard_provider.exceptions import SourceError
from asgard_provider.sources.common import mask

#: Pages one read may fetch before it is refused as a runaway pagination loop.
MAX_PAGES = 100_000


@dataclass(frozen=True, repr=False)
class RestEndpoint:
    """Base URL and credentials of an API; ``repr`` shows the URL only."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None

    def __repr__(self) -> str:
        """Describe the endpoint without its credentials."""
        return f"RestEndpoint({self.base_url})"

    def secrets(self) -> list[str]:
        """Every credential value, for masking messages."""
        values = [v for k, v in self.headers.items() if k.lower() in ("authorization", "x-api-key")]
        values += [v.split(" ", 1)[-1] for v in values]
        return values + ([self.basic_auth[1]] if self.basic_auth else [])


@dataclass(frozen=True)
class Pagination:
    """How the API splits a resource into pages."""

    style: Literal["none", "page_number", "cursor", "next_url"] = "none"
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


def lookup(body: Any, path: str) -> Any:
    """Follow a dot-separated ``path`` into a JSON body (``""`` is the body itself); ``KeyError`` if absent."""
    value = body
    for key in filter(None, path.split(".")):
        if not isinstance(value, Mapping) or key not in value:
            raise KeyError(key)
        value = value[key]
    return value


def _same_origin(base: str, url: str) -> bool:
    a, b = urlsplit(base), urlsplit(url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def fetch_pages(
    endpoint: RestEndpoint, request: RestRequest, *, connect_timeout: float, read_timeout: float, session: Any = None
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's records, following the pagination until the resource is exhausted."""
    import requests

    http = session or requests.Session()
    pages = request.pagination
    url = urljoin(endpoint.base_url.rstrip("/") + "/", request.resource.lstrip("/"))
    params: dict[str, Any] = dict(request.params)
    if pages.style == "page_number":
        params.update({pages.page_param: pages.first_page, pages.size_param: pages.size})
    for number in range(1, MAX_PAGES + 1):
        body = _get(http, endpoint, url, params, request.resource, number, (connect_timeout, read_timeout))
        try:
            records = lookup(body, request.record_path)
        except KeyError as exc:
            raise SourceError(
                f"resource {request.resource!r} page {number}: record_path {request.record_path!r} has no key {exc}"
            ) from None
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise SourceError(
                f"resource {request.resource!r} page {number}: record_path does not hold a list of objects"
            )
        if records:
            yield records
        following = _next(body, pages, url, params, len(records), endpoint.base_url)
        if following is None:
            return
        url, params = following
    raise SourceError(f"resource {request.resource!r}: more than {MAX_PAGES} pages; is the pagination looping?")


def _next(
    body: Any, pages: Pagination, url: str, params: dict[str, Any], count: int, base: str
) -> tuple[str, dict[str, Any]] | None:
    """URL and parameters of the next page, or None after the last one."""
    if pages.style == "page_number":
        if count < pages.size:
            return None
        return url, {**params, pages.page_param: int(params[pages.page_param]) + 1}
    if pages.style == "cursor":
        cursor = _optional(body, pages.cursor_path)
        return None if cursor in (None, "") or count == 0 else (url, {**params, pages.cursor_param: cursor})
    if pages.style == "next_url":
        link = _optional(body, pages.next_url_path)
        if not link:
            return None
        target = urljoin(base, str(link))
        if not _same_origin(base, target):
            raise SourceError(f"next page link leaves the API's origin ({urlsplit(target).netloc}); refused")
        return target, {}
    return None


def _optional(body: Any, path: str) -> Any:
    try:
        return lookup(body, path)
    except KeyError:
        return None


def _get(
    http: Any,
    endpoint: RestEndpoint,
    url: str,
    params: dict[str, Any],
    resource: str,
    number: int,
    timeout: tuple[float, float],
) -> Any:
    import requests

    try:
        response = http.get(
            url, params=params, headers=dict(endpoint.headers), auth=endpoint.basic_auth, timeout=timeout
        )
    except requests.RequestException as exc:
        reason = mask(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, endpoint.secrets())
        raise SourceError(
            f"resource {resource!r} page {number}: request failed: {type(exc).__name__}: {reason}"
        ) from None
    if response.status_code != 200:
        raise SourceError(f"resource {resource!r} page {number}: HTTP {response.status_code} {response.reason}")
    try:
        return response.json()
    except ValueError:
        raise SourceError(f"resource {resource!r} page {number}: the body is not JSON") from None


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
