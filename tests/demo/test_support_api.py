"""The demo's support API: pages, the updated_since filter, the bearer token and bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from asgard_demo.support_api import serve


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    with (tmp_path / "support_tickets.jsonl").open("w") as fh:
        for i in range(25):
            fh.write(json.dumps({"ticket_id": i, "created_at": f"2025-11-{10 + i // 10:02d}T0{i % 10}:00:00Z"}) + "\n")
    return tmp_path


def test_pages_and_updated_since(tickets: Path) -> None:
    with serve(tickets) as api:
        pages = [
            requests.get(f"{api.url}/tickets", params={"page": p, "per_page": 10}, timeout=10).json()
            for p in (1, 2, 3, 4)
        ]
        assert [len(p["data"]) for p in pages] == [10, 10, 5, 0]
        assert [t["ticket_id"] for p in pages for t in p["data"]] == list(range(25))
        since = requests.get(f"{api.url}/tickets", params={"updated_since": "2025-11-11T00:00:00Z"}, timeout=10)
        assert [t["ticket_id"] for t in since.json()["data"]] == list(range(10, 25))
        assert requests.get(f"{api.url}/tickets", params={"per_page": 0}, timeout=10).status_code == 400
        assert requests.get(f"{api.url}/tickets", params={"updated_since": "x"}, timeout=10).status_code == 400
        assert requests.get(f"{api.url}/orders", timeout=10).status_code == 404


def test_token_is_required_when_set(tickets: Path) -> None:
    with serve(tickets, token="t0k") as api:
        assert requests.get(f"{api.url}/tickets", timeout=10).status_code == 401
        ok = requests.get(f"{api.url}/tickets", headers={"Authorization": "Bearer t0k"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["total"] == 25
