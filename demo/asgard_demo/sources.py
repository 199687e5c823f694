"""Helpers shared by the use-case generators (fraud, readmission): SQLite writers, dirty-row counts, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MANIFEST_FILE = "manifest.json"
SECONDS_PER_DAY = 86_400


def dirty_count(rate: float, total: int) -> int:
    """Rows of one dirty category: the rate's share, at least one once a source has 200 rows."""
    count = round(rate * total)
    return max(count, 1) if total >= 200 else count


def timestamps(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS' text (UTC wall-clock time)."""
    text = np.datetime_as_string(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"), unit="s")
    return np.char.replace(text, "T", " ")


def epoch_seconds(day: date) -> int:
    """Midnight UTC of ``day`` in epoch seconds."""
    return (day - date(1970, 1, 1)).days * SECONDS_PER_DAY


def write_sqlite(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Replace ``path`` by a fresh SQLite database holding each frame as a table (NULL for missing values)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        for table, frame in tables.items():
            frame.to_sql(table, conn, index=False, chunksize=50_000)
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, path)


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (row counts, planted dirty rows, signal) next to the sources."""
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def run_cli(
    prog: str,
    description: str,
    generate: Callable[..., dict[str, Any]],
    summary: Callable[[dict[str, Any]], list[str]],
    argv: list[str] | None = None,
) -> int:
    """Command line ``python -m asgard_demo.<module> --out DIR [--as-of DATE] [--scale S] [--seed N]``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", required=True, type=Path, help="directory for the SQLite sources")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default row counts")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        manifest = generate(args.out, as_of=args.as_of, scale=args.scale, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - began
    print(f"{prog} sources in {args.out} (as_of {manifest['as_of']}, seed {args.seed}, {seconds:.1f}s)")
    for line in summary(manifest):
        print(f"  {line}")
    return 0
