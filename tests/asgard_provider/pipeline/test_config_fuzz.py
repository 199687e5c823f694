"""Property: any mutation of a real pipeline YAML loads or raises PipelineConfigError, within 2 s.

``benchmarks/fuzz_config.py`` runs the same mutations for longer and reports inputs tried, crashes and the slowest.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
SEEDS = sorted([*(INCLUDE / "pipelines").glob("*.yaml"), *(REPO / "tests/fixtures/pipelines/good").glob("*.yaml")])
LIMIT_SECONDS = 2.0
_ODD_SCALARS = ["~", "2025-02-30", "!!int x", "!!timestamp y", "*nope", "&a", "{", "[", "|", ">-", "'", '"', "\t", "@x"]
_ODD_SCALARS += ["0 6 * * * *", ".inf", "-1", "1e999", "9" * 5000, "https://:tok3n@host", "a\nb", "\x00", "\ufeff"]

Draw = Callable[..., Any]


def _flip(draw: Draw, data: bytes) -> bytes:
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]


def _truncate(draw: Draw, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _duplicate_line(draw: Draw, data: bytes) -> bytes:
    lines = data.split(b"\n")
    line = lines[draw(st.integers(0, len(lines) - 1))]
    lines.insert(draw(st.integers(0, len(lines))), line)
    return b"\n".join(lines)


def _alias(draw: Draw, data: bytes) -> bytes:
    levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rows = (f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * width)}]\n" for i in range(1, levels))
    anchors = "x0: &x0 [lol]\n" + "".join(rows)
    use = draw(st.sampled_from([f"*x{levels - 1}", "*x0", "*undefined", "&x0 [*x0]", f"{{<<: *x{levels - 1}}}"]))
    return anchors.encode() + data.replace(b": ", f": {use} #".encode(), draw(st.integers(0, 2)))


def _scalar_into_key(draw: Draw, data: bytes) -> bytes:
    lines = data.split(b"\n")
    keyed = [i for i, line in enumerate(lines) if b": " in line] or [0]
    i = draw(st.sampled_from(keyed))
    value = draw(st.one_of(st.sampled_from(_ODD_SCALARS), st.text(max_size=30), st.integers(), st.floats()))
    key = lines[i].split(b": ", 1)[0]
    lines[i] = key + b": " + str(value).encode("utf-8", "surrogatepass")
    return b"\n".join(lines)


def _insert_bytes(draw: Draw, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(max_size=16)) + data[at:]


MUTATIONS = [_flip, _truncate, _duplicate_line, _alias, _scalar_into_key, _insert_bytes]


@st.composite
def mutated_pipeline(draw: Draw) -> tuple[str, bytes]:
    """A seed pipeline's file name and its bytes after one to four mutations."""
    seed = draw(st.sampled_from(SEEDS))
    data = seed.read_bytes()
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    return seed.name, data


def load_mutation(folder: Path, name: str, data: bytes) -> float:
    """Load one mutated file; return the seconds it took. Anything but PipelineConfigError propagates."""
    path = folder / name
    path.write_bytes(data)
    started = time.perf_counter()
    try:
        load_pipeline_config(path, base_dir=INCLUDE)
    except PipelineConfigError:
        pass
    return time.perf_counter() - started


_FOLDER = Path(tempfile.mkdtemp(prefix="asgard-fuzz-"))


@settings(
    max_examples=300,
    deadline=timedelta(seconds=LIMIT_SECONDS),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(mutated_pipeline())
def test_mutated_pipeline_yaml_raises_only_pipeline_config_error_quickly(case: tuple[str, bytes]) -> None:
    assert load_mutation(_FOLDER, *case) < LIMIT_SECONDS
