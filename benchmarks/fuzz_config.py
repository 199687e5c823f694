"""Fuzz the pipeline loader longer than the property test: inputs tried, crashes, slowest input.

    .venv/bin/python benchmarks/fuzz_config.py [--seconds 120] [--batch 2000] [--keep DIR]

Feeds the mutations of ``tests/asgard_provider/pipeline/test_config_fuzz.py`` (byte flips, truncation, duplicated
lines and keys, anchors/aliases and alias bombs, odd scalars into keys, inserted bytes) of the shipped and the good
fixture pipelines to ``load_pipeline_config``, in random batches until the time budget is spent. A crash is any
exception other than ``PipelineConfigError``; each distinct one is printed with the input that raised it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, load_average, table

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config


def _property_test() -> ModuleType:
    path = REPO / "tests" / "asgard_provider" / "pipeline" / "test_config_fuzz.py"
    spec = importlib.util.spec_from_file_location("test_config_fuzz", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tally:
    """Outcomes of every input tried."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.crashes: dict[str, tuple[str, bytes]] = {}
        self.slowest: tuple[float, str, bytes] = (0.0, "", b"")

    def record(self, folder: Path, name: str, data: bytes) -> None:
        """Load one input and count what happened."""
        path = folder / name
        path.write_bytes(data)
        started = time.perf_counter()
        try:
            load_pipeline_config(path, base_dir=REPO / "include")
            self.outcomes["loaded"] += 1
        except PipelineConfigError:
            self.outcomes["PipelineConfigError"] += 1
        except Exception as exc:  # a crash: keep the first input per exception type and raising line
            self.outcomes["crash"] += 1
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            self.crashes.setdefault(where, (str(exc)[:200], data))
        took = time.perf_counter() - started
        if took > self.slowest[0]:
            self.slowest = (took, name, data)


def _run_batch(strategy: Any, tally: Tally, folder: Path, size: int) -> None:
    @settings(max_examples=size, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def batch(case: tuple[str, bytes]) -> None:
        tally.record(folder, *case)

    batch()


def main() -> None:
    """Run batches until ``--seconds`` have passed and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="write the slowest input and one input per crash into this folder")
    args = parser.parse_args()
    strategy = _property_test().mutated_pipeline()
    tally, started = Tally(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asgard-fuzz-") as tmp:
        while time.perf_counter() - started < args.seconds:
            _run_batch(strategy, tally, Path(tmp), args.batch)
    elapsed = time.perf_counter() - started
    tried = sum(tally.outcomes.values())
    took, name, data = tally.slowest
    print(load_average())
    rows = [
        ["inputs tried", tried],
        ["loaded (still valid)", tally.outcomes["loaded"]],
        ["PipelineConfigError", tally.outcomes["PipelineConfigError"]],
        ["crashes (any other exception)", tally.outcomes["crash"]],
        ["wall time (s)", elapsed],
        ["slowest input (ms)", took * 1000],
    ]
    print(table(["figure", "value"], rows))
    print(f"slowest input: mutated {name}, {len(data)} bytes: {data[:200]!r}")
    for where, (message, example) in tally.crashes.items():
        print(f"CRASH {where}: {message}\n  input: {example[:300]!r}")
    if args.keep:
        _keep(args.keep, tally)
    sys.exit(1 if tally.crashes else 0)


def _keep(folder: Path, tally: Tally) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"slowest-{tally.slowest[1]}").write_bytes(tally.slowest[2])
    for i, (_, example) in enumerate(tally.crashes.values()):
        (folder / f"crash-{i}.yaml").write_bytes(example)


if __name__ == "__main__":
    main()
