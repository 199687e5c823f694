from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config, validate_all

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
FIXTURES = REPO / "tests" / "fixtures" / "pipelines"
BROKEN = sorted((FIXTURES / "broken").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_bytes().splitlines()[0].decode()  # the rest may be deliberately not UTF-8
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <message fragment>'"
    return first.removeprefix("# expect: ")


def test_there_are_at_least_fifteen_broken_fixtures() -> None:
    assert len(BROKEN) >= 15


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_config_fails_naming_file_and_key(path: Path) -> None:
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=INCLUDE)
    message = str(info.value)
    assert str(path) in message
    assert _expected(path) in message
    assert "<unicode string>" not in message
    assert "hunter2" not in message, "a secret value was echoed"


def test_every_shipped_pipeline_is_valid() -> None:
    results = validate_all(INCLUDE)
    assert results, "include/pipelines/ holds no pipeline"
    bad = {str(p): str(r) for p, r in results.items() if isinstance(r, PipelineConfigError)}
    assert bad == {}


def test_every_shipped_pipeline_has_a_dag_file() -> None:
    for path in (INCLUDE / "pipelines").glob("*.yaml"):
        assert (REPO / "dags" / f"{path.stem}.py").is_file(), f"no dags/{path.stem}.py for {path}"


def test_minimal_config_gets_defaults() -> None:
    cfg = load_pipeline_config(FIXTURES / "good" / "minimal_ingest.yaml", base_dir=INCLUDE)
    assert cfg.pipeline == "minimal_ingest"
    assert cfg.schedule == "@daily"
    assert cfg.ingest[0].target == "bronze.customers"
    assert cfg.ingest[0].engine == "embedded"
    assert cfg.retries == 1


def test_iceberg_prefixed_table_names_are_normalised() -> None:
    cfg = load_pipeline_config(FIXTURES / "good" / "minimal_ingest.yaml", base_dir=INCLUDE)
    data = cfg.model_dump()
    data["ingest"][0]["target"] = "iceberg.bronze.customers"
    assert type(cfg).model_validate(data).ingest[0].target == "bronze.customers"


def test_duplicate_pipeline_id_across_files(tmp_path: Path) -> None:
    base = tmp_path / "include"
    (base / "pipelines").mkdir(parents=True)
    shutil.copy(FIXTURES / "good" / "minimal_ingest.yaml", base / "pipelines" / "minimal_ingest.yaml")
    shutil.copy(FIXTURES / "good" / "minimal_ingest.yaml", base / "pipelines" / "minimal_ingest.yml")
    results = validate_all(base)
    errors = [r for r in results.values() if isinstance(r, PipelineConfigError)]
    assert len(errors) == 1
    assert "already declared in" in str(errors[0])


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("pipeline: many\nretries: -1\nschedule: 'every day'\nbogus: 1\n")
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=INCLUDE)
    assert {p.split(":")[0] for p in info.value.problems} == {"retries", "schedule", "bogus"}
