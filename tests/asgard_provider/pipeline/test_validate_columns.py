"""Column checks before any run: features, dtypes, keys, timestamp and label against the Gold model's columns.

The shipped customer_churn project's documented columns (compiled manifest) back the fixtures in
``tests/fixtures/pipelines/broken/``; the contract cases use the ``shop`` project of ``tests/fixtures/dbt/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asgard_provider.cli import main
from asgard_provider.exceptions import PipelineConfigError
from asgard_provider.pipeline.config import load_pipeline_config, pipeline_warnings

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
COLUMNS = FIXTURES / "pipelines" / "columns"
BROKEN = sorted(p for p in COLUMNS.glob("*.yaml") if p.read_text().startswith("# expect: "))
STUB = (
    '"""Airflow DAG for {name}."""\n\nfrom asgard_provider.pipeline.factory import dag_from_file\n\n'
    "dag = dag_from_file(__file__)\n"
)
VISITS_WARNING = (
    "features.join_key, features.timestamp_field, features.features[0].name: not checked: gold.visits has no "
    "declared columns (model visits of include/dbt/shop has no schema YAML); document every column under the "
    "model's columns: (or add a contract) in its schema YAML"
)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asgard_home: Path) -> tuple[Path, Path]:
    """A DAG bundle holding the ``shop`` dbt project, a training script and a Silver SQL transform."""
    include, dags = tmp_path / "bundle" / "include", tmp_path / "bundle" / "dags"
    shutil.copytree(FIXTURES / "dbt" / "shop", include / "dbt" / "shop")
    (include / "training").mkdir()
    shutil.copy(REPO / "include" / "training" / "churn_training.py", include / "training")
    (include / "sql").mkdir()
    (include / "sql" / "t.sql").write_text("SELECT * FROM iceberg.bronze.customers")
    (include / "pipelines").mkdir()
    dags.mkdir()
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(include))
    monkeypatch.setenv("ASGARD_DBT_MANIFESTS", str(asgard_home / "manifests"))  # none built for shop yet
    return include, dags


def _install(include: Path, dags: Path, fixture: str) -> Path:
    path = include / "pipelines" / fixture
    shutil.copy(COLUMNS / fixture, path)
    (dags / f"{path.stem}.py").write_text(STUB.format(name=path.stem))
    return path


def _expected(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ")


@pytest.mark.parametrize("fixture", BROKEN, ids=[p.stem for p in BROKEN])
def test_a_contract_is_checked_without_a_manifest(shop: tuple[Path, Path], fixture: Path) -> None:
    include, _ = shop
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(fixture, base_dir=include)
    assert str(fixture) in str(info.value)
    assert _expected(fixture) in info.value.problems  # the whole problem: key, table, file and columns


def test_a_features_stage_over_a_silver_table_is_not_checked(shop: tuple[Path, Path]) -> None:
    include, _ = shop
    cfg = load_pipeline_config(COLUMNS / "silver_source_not_checked.yaml", base_dir=include)
    assert cfg.features is not None and cfg.features.source_table == "silver.t"
    assert pipeline_warnings(cfg, include) == []


def test_a_model_without_declared_columns_warns_and_fails_strict_validation(
    shop: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, dags = shop
    path = _install(include, dags, "undeclared_columns.yaml")
    cfg = load_pipeline_config(path, base_dir=include)
    assert pipeline_warnings(cfg, include) == [], "without a manifest nothing is known (the DAG build says so)"
    assert main(["dbt", "compile"]) == 0
    capsys.readouterr()
    assert pipeline_warnings(cfg, include) == [VISITS_WARNING]

    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert f"ok   {path}  (pipeline undeclared_columns)\n  warning: {VISITS_WARNING}\n" in out
    assert main(["validate", "--strict"]) == 1
    assert f"FAIL invalid pipeline config {path}:\n  - {VISITS_WARNING} (--strict)" in capsys.readouterr().out

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags), safe_mode=True)
    assert bag.import_errors == {} and bag.dag_ids == ["undeclared_columns"], "a warning does not stop the DAG"


def test_validate_and_the_dagbag_report_the_same_column_problem(
    shop: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, dags = shop
    path = _install(include, dags, "contract_dtype_mismatch.yaml")
    expected = _expected(path)
    assert main(["validate", "--strict"]) == 1
    assert f"FAIL invalid pipeline config {path}:\n  - {expected}\n" in capsys.readouterr().out

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags), safe_mode=True)
    assert bag.dag_ids == []
    assert [Path(p).name for p in bag.import_errors] == ["contract_dtype_mismatch.py"]
    assert expected in next(iter(bag.import_errors.values()))


def test_documented_columns_come_from_the_manifest_by_iceberg_table(
    shop: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    include, _ = shop
    path = tmp_path / "order_lines.yaml"
    path.write_text(
        "pipeline: order_lines\ndbt: {project: shop, produces: [gold.order_lines]}\n"
        "features: {feature_view: f, entity: e, join_key: order_id, source_table: gold.order_lines,\n"
        "  timestamp_field: ordered_at, features: [{name: quantity, dtype: int64}, {name: qty, dtype: int64}]}\n"
    )
    assert load_pipeline_config(path, base_dir=include), "no manifest yet: documented columns are not known"
    assert main(["dbt", "compile"]) == 0
    capsys.readouterr()
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(path, base_dir=include)
    assert info.value.problems == [
        "features.features[1].name: 'qty' is not a column of gold.order_lines; its columns "
        "(include/dbt/shop/models/gold/order_lines_v2.yml, documented columns of model order_lines_v2): "
        "order_id, ordered_at, quantity"
    ]
