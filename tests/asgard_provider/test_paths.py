"""Path containment (issue 14.10): SQL files, dbt projects and training scripts stay in their include/ folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asgard_provider.exceptions import PipelineConfigError, TransformError
from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator
from asgard_provider.pipeline.config import load_pipeline_config

INGEST = "ingest:\n  - {name: ingest_c, source: {connection: c, table: customers}, target: bronze.customers}\n"


def _include(tmp_path: Path) -> Path:
    base = tmp_path / "include"
    for folder in ("pipelines", "sql", "dbt", "training"):
        (base / folder).mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.sql").write_text("SELECT * FROM iceberg.bronze.customers")
    (outside / "dbt_project.yml").write_text("name: x\n")
    return base


def _load(base: Path, body: str) -> str:
    path = base / "pipelines" / "p.yaml"
    path.write_text(f"pipeline: p\n{body}")
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=base)
    return str(info.value)


def test_a_sql_symlink_out_of_include_sql_is_refused(tmp_path: Path) -> None:
    base = _include(tmp_path)
    (base / "sql" / "link.sql").symlink_to(tmp_path / "outside" / "x.sql")
    body = INGEST + "transform:\n  - {name: t, sql: link.sql, output_table: silver.c}\n"
    assert "transform[0].sql: 'link.sql' leaves include/sql/" in _load(base, body)


def test_a_dbt_project_symlink_out_of_include_dbt_is_refused(tmp_path: Path) -> None:
    base = _include(tmp_path)
    (base / "dbt" / "proj").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert "dbt.project: 'proj' leaves include/dbt/" in _load(base, "dbt: {project: proj}\n")


def _operator(runner: str, sql: str) -> Any:
    if runner == "local":
        return SparkIcebergTransformOperator(task_id="t", sql=sql, output_table="silver.c")
    from asgard_provider.operators.spark_kubernetes import SparkIcebergKubernetesOperator

    return SparkIcebergKubernetesOperator(task_id="t", sql=sql, output_table="silver.c", image="spark:3.5")


@pytest.mark.parametrize("runner", ["local", "kubernetes"])
@pytest.mark.parametrize("sql", ["../outside.sql", "link.sql"])
def test_the_transform_operators_refuse_sql_leaving_include_sql_at_run_time(
    sql: str, runner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _include(tmp_path)
    (base / "sql" / "link.sql").symlink_to(tmp_path / "outside" / "x.sql")
    (base / "outside.sql").write_text("SELECT 1")
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(base))
    op = _operator(runner, sql)
    with pytest.raises(TransformError, match=rf"t: SQL file '{sql}' leaves include/sql/"):
        op.render_template_fields({})  # type: ignore[arg-type]
