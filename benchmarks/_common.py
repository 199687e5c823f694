"""Helpers shared by the benchmark scripts: isolated Asgard/Airflow environments, timing, RSS, tables."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
AIRFLOW = REPO / ".venv" / "bin" / "airflow"
#: The demo data is as of today (UTC), as `make data` writes it: the run a scheduler creates finds data.
AS_OF = datetime.now(UTC).date().isoformat()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_env(home: Path, *, sources: str = "sqlite", db: str | None = None) -> dict[str, str]:
    """Environment of `make demo` with ASGARD_HOME/AIRFLOW_HOME under ``home`` (nothing shared with .asgard/)."""
    env = dict(os.environ)
    env.update(
        {
            "ASGARD_HOME": str(home),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    customers: dict[str, object]
    transactions: dict[str, object]
    if sources == "sqlite":
        customers = {"conn_type": "sqlite", "host": str(home / "sources" / "customers.db")}
        transactions = {"conn_type": "sqlite", "host": str(home / "sources" / "transactions.db")}
    else:
        assert db is not None
        customers = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}
        transactions = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": db}
    env["AIRFLOW_CONN_ASGARD_CUSTOMERS_DB"] = json.dumps(customers)
    env["AIRFLOW_CONN_ASGARD_TRANSACTIONS_DB"] = json.dumps(transactions)
    # The demo's support API (asgard_demo.support_api.serve), started around each run on this port.
    env["ASGARD_SUPPORT_API_PORT"] = str(free_port())
    support = {"conn_type": "http", "host": f"http://127.0.0.1:{env['ASGARD_SUPPORT_API_PORT']}"}
    env["AIRFLOW_CONN_ASGARD_SUPPORT_API"] = json.dumps(support)
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    return env


def run(cmd: Sequence[object], env: dict[str, str] | None = None, *, log: Path | None = None) -> float:
    """Run ``cmd`` (output to ``log`` or captured); return its wall time; on failure show the output tail and exit."""
    start = time.perf_counter()
    result: subprocess.CompletedProcess[Any]
    if log is not None:
        with open(log, "w") as fh:
            result = subprocess.run(list(map(str, cmd)), env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        output = log.read_text(errors="replace")
    else:
        result = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, cwd=REPO)
        output = (result.stdout or "") + (result.stderr or "")
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(output[-6000:])
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(map(str, cmd))}")
    return elapsed


def generate_sources(home: Path, scale: float, env: dict[str, str], extra: Sequence[object] = ()) -> float:
    """Write the demo sources at ``scale`` x seed size into ``home/sources``; return seconds taken."""
    cmd: list[object] = [PYTHON, "-m", "asgard_demo.data", "--out", home / "sources", "--as-of", AS_OF]
    return run([*cmd, "--scale", str(scale), *extra], env)


def migrate_airflow_db(env: dict[str, str]) -> float:
    """Create the (SQLite) Airflow metadata database of the isolated environment."""
    return run([AIRFLOW, "db", "migrate"], env)


def self_rss_mib() -> float:
    """Peak RSS of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_rss_mib() -> float:
    """Largest peak RSS among this process's waited-for children so far (MiB), e.g. a Spark JVM."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def tree_rss_kib(pid: int) -> int:
    """Current RSS of ``pid`` and all its descendants (KiB), from /proc."""
    total = 0
    stack = [pid]
    seen: set[int] = set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as fh:
                stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


class RssTimeline:
    """Background sampler of the RSS of this process and its descendants (Spark JVM, training subprocesses).

    ``peak_between(start, end)`` gives the peak (MiB) inside a wall-clock window, e.g. one task instance.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            self.samples.append((time.time(), tree_rss_kib(pid) / 1024))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> float:
        """RSS (MiB) of the last sample at or before ``moment`` (what earlier tasks left resident)."""
        before = [mib for t, mib in self.samples if t <= moment]
        return before[-1] if before else 0.0

    def peak_between(self, start: float, end: float) -> float:
        inside = [mib for t, mib in self.samples if start <= t <= end]
        return max(inside, default=0.0)


@contextmanager
def tree_peak_rss(interval: float = 0.1) -> Iterator[dict[str, float]]:
    """Sample the RSS of this process plus its children (the Spark JVM) while the block runs.

    Yields a dict whose ``peak_mib`` is filled in when the block ends.
    """
    out = {"peak_mib": 0.0}
    stop = threading.Event()
    pid = os.getpid()

    def sample() -> None:
        while not stop.is_set():
            out["peak_mib"] = max(out["peak_mib"], tree_rss_kib(pid) / 1024)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = max(out["peak_mib"], tree_rss_kib(pid) / 1024)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a Markdown table (pasteable into docs/performance.md)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def load_average() -> str:
    """1/5/15-minute load average, printed with results (another suite on the machine makes timings noisy)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
