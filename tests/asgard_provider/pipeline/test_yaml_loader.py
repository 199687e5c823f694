from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from asgard_provider.cli import main
from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import PipelineConfig, load_pipeline_config, validate_all
from asgard_provider.pipeline.yaml_loader import MAX_DEPTH, load_yaml

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
FIXTURES = REPO / "tests" / "fixtures" / "pipelines"
MINIMAL = (FIXTURES / "good" / "minimal_ingest.yaml").read_text()


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / f"{name}.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_alias_bomb_is_refused_in_well_under_a_second_naming_the_file() -> None:
    path = FIXTURES / "broken" / "alias_bomb.yaml"
    started = time.perf_counter()
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=INCLUDE)
    assert time.perf_counter() - started < 0.5
    assert str(path) in str(info.value)
    assert "expands to more than 10000 values" in str(info.value)


def test_nesting_that_would_overflow_libyaml_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "deep", "a:\n  " + "- " * 200_000 + "x\n")
    with pytest.raises(PipelineConfigError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_yaml(path)


def test_anchors_and_merge_keys_within_bounds_still_work(tmp_path: Path) -> None:
    text = MINIMAL.replace("ingest:", "x_source: &src {connection: asgard_customers_db}\ningest:")
    raw = load_yaml(_write(tmp_path, "anchored", text + "checks: {<<: *src, table: t}\n"))
    assert raw["checks"] == {"connection": "asgard_customers_db", "table": "t"}


def test_duplicate_keys_in_a_nested_mapping_name_the_key_and_both_lines(tmp_path: Path) -> None:
    text = "pipeline: p\ntrain:\n  script: a.py\n  experiment: e\n  script: b.py\n"
    with pytest.raises(PipelineConfigError) as info:
        load_yaml(_write(tmp_path, "p", text))
    assert info.value.problems == [
        "line 5: duplicate key 'script' (first at line 3); YAML would silently keep only the last value"
    ]


def test_a_value_its_tag_cannot_hold_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="line 2, column 10: the value is not a valid int"):
        load_yaml(_write(tmp_path, "p", "pipeline: p\nretries: !!int many\n"))


def test_valid_dates_still_load_as_dates() -> None:
    cfg = load_pipeline_config(INCLUDE / "pipelines" / "customer_churn.yaml", base_dir=INCLUDE)
    assert cfg.start_date.isoformat() == "2025-11-01"


@pytest.mark.parametrize("schedule", ["0 6 * * *", "*/15 * * * 1-5", "@daily"])
def test_five_field_cron_and_presets_are_accepted(schedule: str) -> None:
    assert PipelineConfig.model_validate({"pipeline": "p", "schedule": schedule}).schedule == schedule


def test_secret_looking_words_inside_other_words_are_not_secrets(tmp_path: Path) -> None:
    dbt = "dbt: {project: customer_churn, produces: [gold.customer_metrics], vars: "
    dbt += "{passes: 3, pass_rate: 0.9, author: me, authority: x, compass: n, homepage: 'https://example.com/a@b'}}\n"
    cfg = load_pipeline_config(_write(tmp_path, "minimal_ingest", MINIMAL + dbt), base_dir=INCLUDE)
    assert cfg.dbt is not None and cfg.dbt.vars["author"] == "me"


@pytest.mark.parametrize(
    ("key", "value"),
    [("pwd", "hunter2"), ("smtpPass", "hunter2"), ("credentials", "hunter2"), ("auth", "Bearer hunter2")],
)
def test_short_secret_keys_are_refused_without_echoing_the_value(tmp_path: Path, key: str, value: str) -> None:
    text = MINIMAL + f"description: '{value}'\ndbt: {{project: customer_churn, vars: {{{key}: '{value}'}}}}\n"
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(_write(tmp_path, "minimal_ingest", text), base_dir=INCLUDE)
    assert f"dbt.vars.{key}: secrets must not be written" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_secret_url_in_a_value_that_another_check_quotes_is_never_echoed(tmp_path: Path) -> None:
    text = "pipeline: p\nschedule: 'postgres://etl:hunter2@db/orders'\n"
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(_write(tmp_path, "p", text), base_dir=INCLUDE)
    assert info.value.problems == ["schedule: the URL embeds a password; use an Airflow connection instead"]


def _bundle_with_broken_files(tmp_path: Path) -> Path:
    base = tmp_path / "include"
    shutil.copytree(INCLUDE, base, ignore=shutil.ignore_patterns("pipelines"))
    (base / "pipelines").mkdir()
    shutil.copy(FIXTURES / "good" / "minimal_ingest.yaml", base / "pipelines")
    for name in ("not_utf8", "bad_start_date", "alias_bomb", "tab_indentation", "duplicate_key"):
        shutil.copy(FIXTURES / "broken" / f"{name}.yaml", base / "pipelines")
    return base


def test_validate_all_reports_every_broken_file_and_the_good_one(tmp_path: Path) -> None:
    results = validate_all(_bundle_with_broken_files(tmp_path))
    outcome = {path.stem: type(result).__name__ for path, result in results.items()}
    assert outcome.pop("minimal_ingest") == "PipelineConfig"
    assert set(outcome.values()) == {"PipelineConfigError"} and len(outcome) == 5


def test_asgard_validate_prints_each_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _bundle_with_broken_files(tmp_path)
    assert main(["validate", "--include-dir", str(base)]) == 1
    out, err = capsys.readouterr()
    assert out.count("FAIL invalid pipeline config") == 5
    assert "ok   " in out and "minimal_ingest" in out
    assert "Traceback" not in out + err
    assert "start_date: '2025-02-30' is not a calendar date" in out


def test_thousands_of_bad_list_items_give_a_short_message(tmp_path: Path) -> None:
    path = _write(tmp_path, "p", "pipeline: p\ntags: [" + ", ".join(["1"] * 5000) + "]\n")
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=INCLUDE)
    assert len(info.value.problems) == 51
    assert info.value.problems[-1] == "... and 4950 more problems of the same kind"


_YAML_LEVEL = ["alias_bomb", "deep_nesting", "recursive_alias", "duplicate_key", "not_utf8", "tab_indentation"]


def test_the_pure_python_loader_refuses_the_same_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    import yaml

    from asgard_provider.pipeline import yaml_loader

    monkeypatch.delattr(yaml, "CSafeLoader")
    pure = importlib.reload(yaml_loader)
    try:
        assert pure._BASE is yaml.SafeLoader
        for name in [*_YAML_LEVEL, "invalid_yaml"]:
            with pytest.raises(PipelineConfigError, match=name):
                pure.load_yaml(FIXTURES / "broken" / f"{name}.yaml")
        with pytest.raises(PipelineConfigError, match="not valid YAML at line 2"):  # raised by the reader itself
            pure.load_yaml(_write(tmp_path, "nul", "pipeline: p\na: \x00\n"))
    finally:
        monkeypatch.undo()
        importlib.reload(yaml_loader)
