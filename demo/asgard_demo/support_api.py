"""The churn demo's support API: the generated support tickets served as paginated JSON on 127.0.0.1.

``python -m asgard_demo.support_api --sources DIR [--port 8765] [--token T]`` serves ``DIR/support_tickets.jsonl``
(written by ``asgard_demo.data``) as

    GET /tickets?page=1&per_page=1000[&updated_since=2025-11-10T00:00:00Z]
    -> {"data": [...], "page": 1, "per_page": 1000, "total": 9000,
        "next": "/tickets?page=2&per_page=1000", "next_cursor": "1000"}

``updated_since`` keeps the tickets changed at or after that instant (a ticket's last change is its
``created_at``). The next page is offered three ways, one per pagination style a client may use: ``page + 1``,
the ``next`` link (also in a ``Link: <...>; rel="next"`` header) and ``cursor=<next_cursor>`` (an offset that
replaces ``page``); on the last page ``next`` and ``next_cursor`` are null. With ``--token`` every request
needs ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from asgard_demo.data import TICKETS_FILE

MAX_PER_PAGE = 5000


def _instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SupportApi(ThreadingHTTPServer):
    """HTTP server holding the tickets in memory, sorted by ``created_at`` then ``ticket_id``."""

    daemon_threads = True

    def __init__(self, tickets: list[dict[str, Any]], port: int = 0, token: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.tickets = sorted(tickets, key=lambda t: (t["created_at"], t["ticket_id"]))
        self.changed = [_instant(t["created_at"]) for t in self.tickets]
        self.token = token

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SupportApi

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet (tests and the demo print their own progress)."""

    def do_GET(self) -> None:
        """Serve one page of ``/tickets``."""
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != "/tickets":
            return self._send(404, {"detail": "unknown resource"})
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._send(401, {"detail": "missing or wrong bearer token"})
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            page, per_page = int(query.get("page", 1)), int(query.get("per_page", 1000))
            since = _instant(query["updated_since"]) if "updated_since" in query else None
            start = int(query["cursor"]) if "cursor" in query else (page - 1) * per_page
        except ValueError:
            return self._send(400, {"detail": "page, per_page and cursor are integers, updated_since an ISO timestamp"})
        if page < 1 or start < 0 or not 1 <= per_page <= MAX_PER_PAGE:
            return self._send(400, {"detail": f"page >= 1, cursor >= 0 and 1 <= per_page <= {MAX_PER_PAGE}"})
        rows = self.server.tickets
        if since is not None:
            rows = [t for t, changed in zip(rows, self.server.changed, strict=True) if changed >= since]
        more = start + per_page < len(rows)
        link = None
        if more:
            following = {k: v for k, v in query.items() if k != "cursor"} | {"page": start // per_page + 2}
            link = f"/tickets?{urlencode(following)}"
        body = {"data": rows[start : start + per_page], "page": page, "per_page": per_page, "total": len(rows)}
        body |= {"next": link, "next_cursor": str(start + per_page) if more else None}
        self._send(200, body, link)

    def _send(self, status: int, body: dict[str, Any], link: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if link:
            self.send_header("Link", f'<{link}>; rel="next"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def load_tickets(sources: Path) -> list[dict[str, Any]]:
    """Read the generated tickets of ``sources/support_tickets.jsonl``."""
    with (Path(sources) / TICKETS_FILE).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@contextmanager
def serve(sources: Path, port: int = 0, token: str | None = None) -> Iterator[SupportApi]:
    """Run the API in a background thread for the duration of the block."""
    api = SupportApi(load_tickets(sources), port=port, token=token)
    thread = threading.Thread(target=api.serve_forever, name="support-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.shutdown()
        api.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m asgard_demo.support_api", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", required=True, type=Path, help="directory holding support_tickets.jsonl")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", help="require this bearer token")
    args = parser.parse_args(argv)
    api = SupportApi(load_tickets(args.sources), port=args.port, token=args.token)
    print(f"support API on {api.url}/tickets ({len(api.tickets):,} tickets)", flush=True)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
