"""Serving latency of the Asgard API under `asgard serve --workers N` (uvicorn) with concurrent client processes.

Same throw-away stack as benchmarks/online_scoring.py (synthetic gold table, features materialized to the SQLite
online store, or to Redis with ``--redis-url``, RandomForest 100 trees registered as champion). The server runs in
a child process (`asgard serve --no-auth --model ... [--workers N]`, so the figures exclude JWT checks). Then, for
1 and 8 concurrent clients, each a process of its own (own interpreter and GIL) on its own keep-alive connection,
it times:

- one input by its feature values: ``POST /mlops/inference`` with one feature row;
- one entity by key: ``GET /score/<id>`` (online store read + predict).

One idle client holds a TCP connection open the whole time without sending a byte (reconnecting when the server
closes it: uvicorn drops idle connections after its keep-alive timeout). A request blocked by the idle client would
show as a latency near that timeout, so the maximum is printed with the percentiles.

    .venv/bin/python benchmarks/serving.py [--workers 2] [--requests 2000] [--redis-url redis://127.0.0.1:6379/0]

Target (issue 17.5): p99 < 20 ms at 8 clients on this machine, no request blocked by the idle client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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


def _start_server(port: int, log: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [str(ASGARD), "serve", "--no-auth", "--model", MODEL, "--port", str(port), *extra]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"asgard serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/openapi.json")
            conn.getresponse().read()
            conn.close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"asgard serve did not answer:\n{log.read_text()[-3000:]}")


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


def _client(port: int, kind: str, jobs: list[bytes | str], ready: Any, out: Any) -> None:
    """One client process: wait for the others, then send ``jobs`` one at a time on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    send = _post_inference if kind == "values" else _get_score
    samples = []
    ready.wait()
    began = time.monotonic_ns()
    try:
        for job in jobs:
            start = time.perf_counter_ns()
            send(conn, job)
            samples.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        conn.close()
    out.put((began, time.monotonic_ns(), samples))


def _run(port: int, kind: str, jobs: list[bytes | str], clients: int) -> dict[str, float]:
    """``clients`` processes (own interpreter, own GIL) split ``jobs``; latency of every request, pooled."""
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, kind, jobs[i::clients], ready, out)) for i in range(clients)]
    for proc in procs:
        proc.start()
    ready.wait()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = (max(r[1] for r in results) - min(r[0] for r in results)) / 1e9
    stats = _percentiles([s for r in results for s in r[2]])
    return {**stats, "rps": stats["n"] / elapsed}


def _get_score(conn: http.client.HTTPConnection, entity: bytes | str) -> None:
    conn.request("GET", f"/score/{entity}")
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET /score/{entity}: {response.status} {body[:300]!r}")


def _post_inference(conn: http.client.HTTPConnection, body: bytes | str) -> None:
    conn.request("POST", "/mlops/inference", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"POST /mlops/inference: {response.status} {data[:300]!r}")


def _feature_rows(ids: list[int]) -> dict[int, dict[str, float]]:
    from asgard_provider.hooks.iceberg import IcebergHook

    gold = IcebergHook().load_table("gold.customer_metrics").scan().to_pandas()
    latest = gold[gold["feature_timestamp"] == gold["feature_timestamp"].max()].set_index("customer_id")
    columns = [c for c in latest.columns if c not in ("feature_timestamp", "churned")]
    return {i: {c: float(latest.loc[i, c]) for c in columns} for i in set(ids)}


def _redis_store(home: Path, url: str) -> tuple[str, Callable[[], None]]:
    """Register (and materialize) the features in a Redis online store; its connection id and a clean-up."""
    import redis

    project = f"asgard_bench_{uuid.uuid4().hex[:8]}"
    extra = {
        "project": project,
        "registry": str(home / "feast-redis" / "registry.db"),
        "online_store": url,
        "repo_path": str(home / "feast-redis" / "repo"),
    }
    os.environ["AIRFLOW_CONN_ASGARD_BENCH_REDIS"] = json.dumps({"conn_type": "asgard_feast", "extra": extra})
    _register("asgard_bench_redis")

    def clean() -> None:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"*{project}*", count=1000):
            client.delete(key)
        client.close()

    return "asgard_bench_redis", clean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per measurement (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first (default 200)")
    parser.add_argument("--customers", type=int, default=5000, help="customers in the synthetic table (default 5000)")
    parser.add_argument("--workers", type=int, help="asgard serve --workers (default: the server's, min(CPUs, 4))")
    parser.add_argument("--redis-url", help="serve from this Redis online store instead of the embedded SQLite one")
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
        extra = ["--workers", str(args.workers)] if args.workers else []
        clean: Callable[[], None] = lambda: None  # noqa: E731
        if args.redis_url:
            conn_id, clean = _redis_store(home, args.redis_url)
            extra += ["--feast-conn-id", conn_id]
        trained = _train()
        print(f"setup: {MODEL} v{trained['model_version']} in {time.perf_counter() - started:.0f}s", flush=True)
        rng = np.random.default_rng(args.seed)
        ids = [int(i) for i in rng.integers(FIRST_ID, FIRST_ID + args.customers, args.requests)]
        rows = _feature_rows(ids)
        jobs: dict[str, list[bytes | str]] = {
            "values": [json.dumps({"model_name": MODEL, "inputs": [rows[i]]}).encode() for i in ids],
            "key": [str(i) for i in ids],
        }
        port = _free_port()
        server = _start_server(port, Path(tmp) / "serve.log", extra)
        idle = IdleClient(port)
        try:
            for kind in jobs:  # warm every worker: several clients, so the requests spread over the workers
                _run(port, kind, jobs[kind][: args.warmup], max(CLIENTS))
            idle.start()
            load_before = os.getloadavg()
            results = []
            for clients in CLIENTS:
                for kind, label in (("values", "POST /mlops/inference, 1 input"), ("key", "GET /score/<id>")):
                    results.append((f"{label}, {clients} client(s)", _run(port, kind, jobs[kind], clients)))
        finally:
            idle.stop.set()
            server.terminate()
            server.wait(timeout=60)
            clean()
        _report(results, idle.reopened, args, load_before)
    return 0


def _report(
    results: list[tuple[str, dict[str, Any]]], reopened: int, args: argparse.Namespace, before: tuple[float, ...]
) -> None:
    load = os.getloadavg()
    print(
        f"\nserving latency, ms ({args.requests} requests per row over random ids, after {args.warmup} warm-up; "
        f"asgard serve --workers {args.workers or 'default'}, "
        f"{'Redis' if args.redis_url else 'SQLite'} online store; clients in their own processes; one idle "
        f"connection held open throughout, reopened {reopened} times after the server's keep-alive timeout; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load avg {before[0]:.2f} before, "
        f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} after, python {sys.version.split()[0]})"
    )
    print(f"{'measurement':<44} {'req/s':>6} {'mean':>7} {'p50':>7} {'p99':>7} {'max':>8}  p99/target")
    for label, s in results:
        print(
            f"{label:<44} {s['rps']:6.0f} {s['mean']:7.2f} {s['p50']:7.2f} {s['p99']:7.2f} {s['max']:8.2f}  "
            f"{s['p99'] / TARGET_P99_MS:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
