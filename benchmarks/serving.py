"""Serving latency of the Asgard API under `asgard serve` (uvicorn, its own process) with concurrent clients.

Same throw-away stack as benchmarks/online_scoring.py (synthetic gold table, features materialized to the SQLite
online store, RandomForest 100 trees registered as champion). The server runs in a child process
(`asgard serve --no-auth --model ...`, so the figures exclude JWT checks). Then, for 1 and 8 concurrent
clients, each on its own keep-alive connection, it times:

- one input: ``POST /mlops/inference`` with one feature row;
- one entity by key: ``GET /score/<id>`` (online store read + predict).

One idle client holds a TCP connection open the whole time without sending a byte (reconnecting when the server
closes it: uvicorn drops idle connections after its keep-alive timeout). A request blocked by the idle client would
show as a latency near that timeout, so the maximum is printed with the percentiles.

    .venv/bin/python benchmarks/serving.py [--requests 400] [--customers 5000]

Target (issue 17.5): p99 < 20 ms at 8 clients on this machine, no request blocked by the idle client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_scoring import FIRST_ID, MODEL, _environment, _gold, _percentiles, _register, _train

TARGET_P99_MS = 20.0
CLIENTS = (1, 8)
ASGARD = Path(sys.executable).parent / "asgard"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int, log: Path) -> subprocess.Popen:
    cmd = [str(ASGARD), "serve", "--no-auth", "--model", MODEL, "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"asgard serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"asgard serve did not listen:\n{log.read_text()[-3000:]}")


class IdleClient(threading.Thread):
    """Holds a connection that never sends a byte, reopening it whenever the server closes it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.reopened, self.stop = port, 0, threading.Event()

    def run(self) -> None:
        """Connect, wait for the server to give up on us, count it, reconnect; until stopped."""
        while not self.stop.is_set():
            with socket.create_connection(("127.0.0.1", self.port)) as sock:
                sock.settimeout(0.5)
                while not self.stop.is_set():
                    try:
                        if sock.recv(1) == b"":
                            break
                    except TimeoutError:
                        continue
            if not self.stop.is_set():
                self.reopened += 1


def _client(port: int, request: Callable[[http.client.HTTPConnection, int], None], ids: list[int]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    try:
        for entity in ids:
            start = time.perf_counter_ns()
            request(conn, entity)
            samples.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        conn.close()
    return samples


def _run(port: int, request: Callable[..., None], ids: list[int], clients: int) -> dict[str, float]:
    """Each of ``clients`` threads sends ``ids`` one request at a time; latency of every request, pooled."""
    results: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients)

    def work(i: int) -> None:
        start.wait()
        results[i] = _client(port, request, ids[i::clients] if clients > 1 else ids)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    stats = _percentiles([s for r in results for s in r])
    return {**stats, "rps": stats["n"] / elapsed}


def _get_score(conn: http.client.HTTPConnection, entity: int) -> None:
    conn.request("GET", f"/score/{entity}")
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET /score/{entity}: {response.status} {body[:300]!r}")


def _inference(rows: dict[int, dict[str, float]]) -> Callable[[http.client.HTTPConnection, int], None]:
    def post(conn: http.client.HTTPConnection, entity: int) -> None:
        body = json.dumps({"model_name": MODEL, "inputs": [rows[entity]]})
        conn.request("POST", "/mlops/inference", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"POST /mlops/inference: {response.status} {data[:300]!r}")

    return post


def _feature_rows(ids: list[int]) -> dict[int, dict[str, float]]:
    from asgard_provider.hooks.iceberg import IcebergHook

    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    latest = gold[gold["feature_timestamp"] == gold["feature_timestamp"].max()].set_index("customer_id")
    columns = [c for c in latest.columns if c not in ("feature_timestamp", "churned")]
    return {i: {c: float(latest.loc[i, c]) for c in columns} for i in set(ids)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="timed requests per measurement (default 400)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first (default 50)")
    parser.add_argument("--customers", type=int, default=5000, help="customers in the synthetic table (default 5000)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="asgard-bench-serving-") as tmp:
        home = Path(tmp) / "asgard"
        home.mkdir()
        _environment(home)
        import numpy as np

        from asgard_provider.hooks.iceberg import IcebergHook

        started = time.perf_counter()
        IcebergHook().write("gold.customer_metrics", [_gold(args.customers)], mode="overwrite")
        _register()
        trained = _train()
        print(f"setup: {MODEL} v{trained['model_version']} in {time.perf_counter() - started:.0f}s", flush=True)
        rng = np.random.default_rng(args.seed)
        ids = [int(i) for i in rng.integers(FIRST_ID, FIRST_ID + args.customers, args.requests)]
        inference = _inference(_feature_rows(ids))

        port = _free_port()
        server = _start_server(port, Path(tmp) / "serve.log")
        idle = IdleClient(port)
        try:
            _run(port, _get_score, ids[: args.warmup], 1)
            _run(port, inference, ids[: args.warmup], 1)
            idle.start()
            results = []
            for clients in CLIENTS:
                results.append(
                    (f"POST /mlops/inference, 1 input, {clients} client(s)", _run(port, inference, ids, clients))
                )
                results.append((f"GET /score/<id>, {clients} client(s)", _run(port, _get_score, ids, clients)))
        finally:
            idle.stop.set()
            server.terminate()
            server.wait(timeout=30)
        _report(results, idle.reopened, args)
    return 0


def _report(results: list[tuple[str, dict[str, Any]]], reopened: int, args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(
        f"\nserving latency, ms ({args.requests} requests per row over random ids, after {args.warmup} warm-up; "
        f"one idle connection held open throughout, reopened {reopened} times after the server's keep-alive "
        f"timeout; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load avg {load[0]:.1f}/{load[1]:.1f}, python {sys.version.split()[0]})"
    )
    print(f"{'measurement':<44} {'req/s':>6} {'mean':>7} {'p50':>7} {'p99':>7} {'max':>8}  p99/target")
    for label, s in results:
        print(
            f"{label:<44} {s['rps']:6.0f} {s['mean']:7.2f} {s['p50']:7.2f} {s['p99']:7.2f} {s['max']:8.2f}  "
            f"{s['p99'] / TARGET_P99_MS:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
