"""Config values are data (issue 14.1): only templated fields render, only allow-listed ``${VAR}`` expand."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgard_provider.exceptions import SourceError
from asgard_provider.operators.ingest import FileToIcebergOperator
from asgard_provider.pipeline.config import load_pipeline_config
from asgard_provider.values import expand_env, template_problem

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "text",
    ["{{ ds }}", "{{ data_interval_start | ds }}", "{{ params.since | default('2025-01-01') }}", "{{ params['x'] }}"],
)
def test_documented_variables_are_allowed_in_templated_fields(text: str) -> None:
    assert template_problem(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ conn.asgard_customers_db.password | reverse }}", "uses conn"),
        ("{{ var.value.api_key }}", "uses var"),
        ("{{ ti.xcom_pull('x') }}", "uses ti"),
        ("{{ ds | attr('upper') }}", "filter 'attr'"),
        ("{% for p in params %}{{ p.secret }}{% endfor %}", "attribute or item"),
        ("{{ params.x.__class__ }}", "attribute or item"),
        ("{% include 'x.sql' %}", "loads a template"),
        ("{{ ds ", "not a valid Jinja template"),
    ],
)
def test_other_variables_attributes_filters_and_includes_are_refused(text: str, reason: str) -> None:
    assert reason in (template_problem(text) or "")


def test_a_templated_dbt_var_validates(tmp_path: Path) -> None:
    path = tmp_path / "dbt_vars.yaml"
    path.write_text(
        "pipeline: dbt_vars\ndbt:\n  project: customer_churn\n"
        "  vars: {since: '{{ data_interval_start | ds }}', region: '{{ params.region }}'}\n"
    )
    cfg = load_pipeline_config(path, base_dir=REPO / "include")
    assert cfg.dbt is not None and cfg.dbt.vars["since"] == "{{ data_interval_start | ds }}"


def test_only_allow_listed_variables_expand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGARD_HOME", "/srv/asgard")
    monkeypatch.setenv("AIRFLOW_CONN_X", '{"password": "hunter2"}')
    assert expand_env("${ASGARD_HOME}/sources/$ASGARD_HOME.jsonl") == "/srv/asgard/sources//srv/asgard.jsonl"
    with pytest.raises(ValueError, match=r"\$\{AIRFLOW_CONN_X\} may not be expanded") as info:
        expand_env("${AIRFLOW_CONN_X}/x.jsonl")
    assert "hunter2" not in str(info.value)


def test_a_missing_file_is_named_as_configured_not_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASGARD_HOME", str(tmp_path / "h7-private-home"))
    op = FileToIcebergOperator(task_id="t", path="${ASGARD_HOME}/nope.jsonl", target_table="bronze.t")
    with pytest.raises(SourceError, match=r"source file \$\{ASGARD_HOME\}/nope\.jsonl does not exist") as info:
        op.execute({})  # type: ignore[arg-type]
    assert "h7-private-home" not in str(info.value)
