"""The ``asgard`` CLI: scaffold, show and tables against real files and a real embedded Iceberg catalog."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty DAG bundle (include/ + dags/) that the CLI finds through $ASGARD_INCLUDE_DIR."""
    include, dags = tmp_path / "bundle" / "include", tmp_path / "bundle" / "dags"
    (include / "pipelines").mkdir(parents=True)
    dags.mkdir()
    monkeypatch.setenv("ASGARD_INCLUDE_DIR", str(include))
    return include, dags


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_new_pipeline_scaffold_passes_strict_validation_and_builds_its_dag(
    bundle: tuple[Path, Path], asgard_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    include, dags = bundle
    monkeypatch.setenv("ASGARD_DBT_MANIFESTS", str(asgard_home / "manifests"))  # nothing built for this bundle yet
    code, out, _ = _run(capsys, "new", "pipeline", "store_sales")
    assert code == 0
    expected = [
        include / "pipelines" / "store_sales.yaml",
        include / "sql" / "store_sales" / "store_sales_cleaned.sql",
        include / "dbt" / "store_sales" / "dbt_project.yml",
        include / "dbt" / "store_sales" / "profiles.yml",
        include / "dbt" / "store_sales" / "models" / "gold" / "store_sales_features.sql",
        include / "training" / "store_sales_training.py",
        dags / "store_sales.py",
    ]
    for path in expected:
        assert path.is_file(), path
        assert f"created {path}" in out
    assert "__NAME__" not in "".join(p.read_text() for p in include.rglob("*") if p.is_file())

    # A new dbt project has no manifest yet: the DAG file and `validate` (which builds it) name the command.
    from asgard_provider.exceptions import TransformError
    from asgard_provider.pipeline.factory import dag_from_file

    with pytest.raises(TransformError, match=r"store_sales \(target duckdb\).*Run `asgard dbt compile`"):
        dag_from_file(dags / "store_sales.py")
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 1 and "the DAG does not build (TransformError" in out and "asgard dbt compile" in out
    code, out, _ = _run(capsys, "dbt", "compile")
    assert code == 0, out
    assert "store_sales-duckdb-" in out
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 0, out
    assert out.startswith("ok ") and "pipeline store_sales" in out

    # The DAG stub builds every stage, and `show` lists exactly its tasks.
    dag = dag_from_file(dags / "store_sales.py")
    capsys.readouterr()  # Cosmos logs its rendering to stdout
    code, out, _ = _run(capsys, "show", "store_sales", "--json")
    assert code == 0
    shown = json.loads(out)
    assert [s["stage"] for s in shown["stages"]] == ["ingest", "transform", "dbt", "features", "train", "predict"]
    listed = {task for stage in shown["stages"] for task in stage["tasks"]}
    assert listed == {t for t in dag.task_ids if not t.startswith("gold.")} | {"gold.store_sales_features"}
    assert any(t.startswith("gold.store_sales_features") for t in dag.task_ids)


def test_new_pipeline_refuses_to_overwrite_and_rejects_bad_names(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, _ = bundle
    sql = include / "sql" / "demand" / "demand_cleaned.sql"
    sql.parent.mkdir(parents=True)
    sql.write_text("-- mine\nSELECT 1")
    code, _, err = _run(capsys, "new", "pipeline", "demand")
    assert code == 1
    assert str(sql) in err and "already exists" in err
    assert sql.read_text() == "-- mine\nSELECT 1"
    assert not (include / "pipelines" / "demand.yaml").exists(), "nothing is written when one file exists"

    code, _, err = _run(capsys, "new", "pipeline", "Bad-Name")
    assert code == 1 and "lowercase letters" in err
    assert list((include / "pipelines").iterdir()) == []


def test_show_lists_stages_tasks_and_tables_of_the_churn_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "show", "customer_churn", "--json")
    assert code == 0
    stages = {s["name"]: s for s in json.loads(out)["stages"]}
    assert stages["ingest_transactions"]["reads"] == ["sql:asgard_transactions_db/transactions"]
    assert stages["ingest_transactions"]["writes"] == ["bronze.transactions"]
    assert stages["clean_customers"]["tasks"] == ["clean_customers", "check_clean_customers"]
    assert stages["clean_customers"]["reads"] == ["bronze.customers"]
    assert stages["clean_customers"]["writes"] == ["silver.customers_cleaned", "silver.customers_cleaned_quarantine"]
    assert set(stages["customer_churn"]["reads"]) == {
        "silver.customers_cleaned",
        "silver.transactions_cleaned",
        "silver.support_tickets_cleaned",
    }
    assert stages["customer_churn"]["writes"] == ["gold.customer_metrics"]
    predict = stages["gold.customer_churn_predictions"]
    assert predict["reads"] == ["mlflow:customer_churn_predictor@champion", "gold.customer_metrics"]

    code, text, _ = _run(capsys, "show", "customer_churn")
    assert code == 0
    assert "transform: clean_transactions" in text and "writes  gold.customer_metrics" in text


def test_show_names_unknown_and_invalid_pipelines(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, _ = bundle
    (include / "pipelines" / "broken.yaml").write_text("pipeline: broken\nschedule: 'every day'\n")
    code, _, err = _run(capsys, "show", "nope")
    assert code == 1 and "no pipeline 'nope'" in err and "broken" in err
    code, _, err = _run(capsys, "show", "broken")
    assert code == 1 and "broken.yaml" in err and "schedule" in err


def test_tables_reports_snapshot_rows_and_commit_time(asgard_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asgard_provider.hooks.iceberg import IcebergHook

    code, out, _ = _run(capsys, "tables")
    assert code == 0 and out.strip() == "no tables"

    hook = IcebergHook()
    before = datetime.now(UTC).replace(microsecond=0)
    hook.write("bronze.events", [pa.table({"id": list(range(5))})], mode="overwrite")
    hook.write("bronze.events", [pa.table({"id": list(range(3))})], mode="append")
    hook.write("gold.scores", [pa.table({"id": [1, 2], "score": [0.1, 0.9]})], mode="overwrite")

    code, out, _ = _run(capsys, "tables", "--json")
    assert code == 0
    rows = {r["table"]: r for r in json.loads(out)}
    assert set(rows) == {"bronze.events", "gold.scores"}
    events = hook.load_table("bronze.events").current_snapshot()
    assert rows["bronze.events"]["snapshot_id"] == events.snapshot_id
    assert rows["bronze.events"]["rows"] == 8
    assert rows["gold.scores"]["rows"] == 2
    committed = datetime.fromisoformat(rows["bronze.events"]["committed_at"])
    assert committed == datetime.fromtimestamp(events.timestamp_ms // 1000, UTC)
    assert committed >= before

    code, out, _ = _run(capsys, "tables", "--namespace", "gold")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["table", "snapshot_id", "rows"]
    assert len(lines) == 2 and lines[1].split()[:3] == ["gold.scores", str(rows["gold.scores"]["snapshot_id"]), "2"]


def test_tables_reports_an_unreachable_catalog(
    asgard_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = {"conn_type": "asgard_iceberg", "host": "http://127.0.0.1:9/catalog", "extra": {"catalog_type": "rest"}}
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_CATALOG", json.dumps(conn))
    code, _, err = _run(capsys, "tables", "--conn-id", "broken_catalog")
    assert code == 1
    assert err.startswith("FAIL ")
    assert "cannot open Iceberg catalog 'broken_catalog'" in err and "Connection refused" in err, err


def test_docs_config_prints_the_committed_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "docs", "config")
    assert code == 0
    assert out == (REPO / "docs" / "config.md").read_text(), (
        "docs/config.md is stale: asgard docs config > docs/config.md"
    )


def test_config_reference_documents_every_key_of_every_model() -> None:
    from asgard_provider.config_docs import _models, config_reference
    from asgard_provider.pipeline.config import PipelineConfig

    text = config_reference()
    models = _models(PipelineConfig)
    assert {"IngestStage", "TransformStage", "DbtStage", "FeaturesStage", "TrainStage", "PredictStage"} <= {
        m.__name__ for m in models
    }
    for model in models:
        section = text.split(f"\n## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name in model.model_fields:
            assert f"| `{name}` |" in section, f"{model.__name__}.{name} missing from docs/config.md"


MINIMAL = REPO / "tests" / "fixtures" / "pipelines" / "good" / "minimal_ingest.yaml"
STUB = (
    '"""Airflow DAG for {name}."""\n\nfrom asgard_provider.pipeline.factory import dag_from_file\n\n'
    "dag = dag_from_file(__file__)\n"
)


def _pipeline(include: Path, dags: Path, name: str, extra: str = "", stub: str = STUB) -> None:
    text = MINIMAL.read_text().replace("pipeline: minimal_ingest", f"pipeline: {name}")
    (include / "pipelines" / f"{name}.yaml").write_text(text + extra)
    (dags / f"{name}.py").write_text(stub.format(name=name))


def test_validate_builds_each_dag_and_fails_where_the_dagbag_would(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, dags = bundle
    _pipeline(include, dags, "builds")
    # valid as config, but 10**13 minutes overflows the SparkApplication's timedelta when the DAG is built
    k8s = "{image: spark:3.5, timeout_minutes: 10000000000000}"
    (include / "sql").mkdir()
    (include / "sql" / "t.sql").write_text("SELECT * FROM iceberg.bronze.customers")
    _pipeline(
        include,
        dags,
        "overflows",
        f"transform:\n  - {{name: t, sql: t.sql, output_table: silver.t, runner: kubernetes, kubernetes: {k8s}}}\n",
    )
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 1
    assert "ok   " in out and "(pipeline builds)" in out
    assert "overflows.yaml:\n  - the DAG does not build (OverflowError" in out
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags), safe_mode=True)
    assert sorted(bag.dag_ids) == ["builds"] and [Path(p).name for p in bag.import_errors] == ["overflows.py"]


def test_a_composite_key_validates_and_its_dag_registers_every_key_column(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, dags = bundle
    features = (
        "features:\n  {feature_view: store_sku, entity: series, join_keys: [store_id, sku_id], "
        "source_table: bronze.customers, timestamp_field: ts, features: [{name: units, dtype: float64}]}\n"
    )
    _pipeline(include, dags, "series", features)
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 0, out
    assert "(pipeline series)" in out
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags), safe_mode=True)
    assert bag.import_errors == {} and sorted(bag.dag_ids) == ["series"]
    tasks = bag.dags["series"].task_dict
    assert tasks["register_features"].join_keys == ["store_id", "sku_id"]  # type: ignore[attr-defined]
    assert tasks["materialize_features"].join_keys == ["store_id", "sku_id"]  # type: ignore[attr-defined]


def test_strict_refuses_a_dag_stub_the_dag_processor_would_skip(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    include, dags = bundle
    _pipeline(
        include,
        dags,
        "skipped",
        stub="from asgard_provider.pipeline.factory import dag_from_file\n\nd = dag_from_file(__file__)\n",
    )
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 1
    assert (
        f"DAG file {dags / 'skipped.py'} does not contain the word(s) 'airflow', so the DAG processor skips it" in out
    )
    assert _run(capsys, "validate")[0] == 0, "without --strict the DAG files are not checked"


@pytest.mark.parametrize("source", ["sql", "rest", "s3"])
def test_new_pipeline_scaffolds_each_source_kind(
    bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str], source: str
) -> None:
    from asgard_provider.pipeline.config import load_pipeline_config
    from asgard_provider.stages.ingest import FileSource, RestSource, SqlSource

    include, _ = bundle
    code, _, err = _run(capsys, "new", "pipeline", "store_sales", "--source", source)
    assert code == 0, err
    config = load_pipeline_config(include / "pipelines" / "store_sales.yaml", base_dir=include)
    kind = {"sql": SqlSource, "rest": RestSource, "s3": FileSource}[source]
    assert isinstance(config.ingest[0].source, kind)


@pytest.mark.parametrize(
    ("task", "label_type", "predict_key", "column"),
    [
        ("multiclass_classification", "integer", "class_column", "store_sales_class"),
        ("regression", "double", "prediction_column", "store_sales_amount_next_30d"),
    ],
)
def test_new_pipeline_scaffolds_each_task_type_valid_under_strict(
    bundle: tuple[Path, Path],
    asgard_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    label_type: str,
    predict_key: str,
    column: str,
) -> None:
    import ast

    from asgard_provider.pipeline.config import load_pipeline_config

    include, _ = bundle
    monkeypatch.setenv("ASGARD_DBT_MANIFESTS", str(asgard_home / "manifests"))
    code, _, err = _run(capsys, "new", "pipeline", "store_sales", "--task", task)
    assert code == 0, err
    config = load_pipeline_config(include / "pipelines" / "store_sales.yaml", base_dir=include)
    assert config.train is not None and config.train.task == task
    assert getattr(config.predict, predict_key) == column
    assert (config.predict.thresholds is None) == (task != "binary_classification")
    contract = (include / "dbt" / "store_sales" / "models" / "gold" / "store_sales_features.yml").read_text()
    assert f"{{name: label, data_type: {label_type}}}" in contract
    ast.parse((include / "training" / "store_sales_training.py").read_text())
    assert _run(capsys, "dbt", "compile")[0] == 0
    code, out, _ = _run(capsys, "validate", "--strict")
    assert code == 0, out


def test_new_pipeline_names_the_task_types(bundle: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from asgard_provider.scaffold import scaffold_files

    with pytest.raises(Exception, match="--task 'forecast': use one of binary_classification, multiclass"):
        scaffold_files("store_sales", task="forecast")
