"""The churn example pipeline, end to end through Airflow's dag.test() on the embedded default."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 11, 11)
SCALE = {"customers": 20_000, "transactions": 240_000, "tickets": 9_000}


def _counts(hook, name: str) -> int:
    return hook.load_table(name).scan().to_arrow().num_rows


def _drop_databases(name: str) -> None:
    import psycopg2
    import pymysql

    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(params=["embedded", pytest.param("servers", marks=[pytest.mark.postgres, pytest.mark.mysql])])
def embedded_sources(request: pytest.FixtureRequest, asgard_home: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo sources: SQLite files (embedded default) or customers in PostgreSQL + transactions in MariaDB."""
    from asgard_demo.data import generate

    out = asgard_home / "sources"
    if request.param == "embedded":
        manifest = generate(out, as_of=AS_OF, seed=7, **SCALE)
        customers = {"conn_type": "sqlite", "host": str(out / "customers.db")}
        transactions = {"conn_type": "sqlite", "host": str(out / "transactions.db")}
    else:
        db = f"asgard_e2e_{os.getpid()}"
        _drop_databases(db)
        request.addfinalizer(lambda: _drop_databases(db))
        manifest = generate(
            out,
            as_of=AS_OF,
            seed=7,
            postgres_url=f"postgresql://postgres@127.0.0.1:5432/{db}",
            mysql_url=f"mysql+pymysql://root@127.0.0.1:3306/{db}",
            **SCALE,
        )
        customers = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}
        transactions = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": db}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_CUSTOMERS_DB", json.dumps(customers))
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_TRANSACTIONS_DB", json.dumps(transactions))
    start_support_api(request, out, monkeypatch)
    return manifest


def start_support_api(request: pytest.FixtureRequest, sources: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve the generated tickets on 127.0.0.1 for the test (with a bearer token) and point the connection at it."""
    from asgard_demo.support_api import serve

    token = "e2e-support-token"
    server = serve(sources, token=token)
    api = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    connection = {"conn_type": "http", "host": api.url, "password": token, "extra": {"auth": "bearer"}}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_SUPPORT_API", json.dumps(connection))
    return api.url


#: Audit columns that record when a row was written (or by which model run and version), not what it says.
AUDIT_COLUMNS = {"processed_at", "scored_at", "computed_at", "model_version", "reference_run_id"}


def _contents(hook) -> dict[str, tuple[int, str]]:
    """Row count and a hash of the sorted business columns of every table in bronze/silver/gold."""
    import hashlib

    out = {}
    for namespace in ("bronze", "silver", "gold"):
        for ident in hook.catalog.list_tables(namespace):
            frame = hook.catalog.load_table(ident).scan().to_pandas()
            frame = frame[sorted(c for c in frame.columns if c not in AUDIT_COLUMNS)]
            # A random forest averages its trees on parallel threads: probabilities may differ in the last bit.
            frame = frame.round({c: 9 for c in frame.columns if frame[c].dtype.kind == "f"})
            frame = frame.sort_values(list(frame.columns), ignore_index=True, na_position="first")
            digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
            out[".".join(ident)] = (len(frame), digest)
    return out


def _forget_runs(dag_id: str) -> None:
    """Delete the DAG's runs so dag.test() can run the same logical date again (a rerun of that date)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.dag_id == dag_id).all():
            session.delete(run)


def _asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name)
            .order_by(AssetEvent.id)
            .all()
        )
        return [dict(r.extra or {}) for r in rows]


def _run_churn_dag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "customer_churn.py"), safe_mode=False)
    assert bag.import_errors == {}
    dag = bag.dags["customer_churn"]
    return dag.test(logical_date=datetime(AS_OF.year, AS_OF.month, AS_OF.day, 6, tzinfo=UTC))


@pytest.mark.e2e
@pytest.mark.spark
def test_churn_pipeline_end_to_end(airflow_db: Path, embedded_sources: dict) -> None:
    from asgard_provider.hooks.iceberg import IcebergHook
    from asgard_provider.hooks.mlflow import MLflowHook

    run = _run_churn_dag()
    assert run.state == "success"
    hook = IcebergHook()

    # Bronze holds every source row; Silver + quarantine reconcile with Bronze exactly.
    for source, bronze in (
        ("customers", "bronze.customers"),
        ("transactions", "bronze.transactions"),
        ("support_tickets", "bronze.support_tickets"),
    ):
        assert _counts(hook, bronze) == embedded_sources[source], bronze
    for bronze, silver in (
        ("bronze.customers", "silver.customers_cleaned"),
        ("bronze.transactions", "silver.transactions_cleaned"),
        ("bronze.support_tickets", "silver.support_tickets_cleaned"),
    ):
        kept, removed = _counts(hook, silver), _counts(hook, f"{silver}_quarantine")
        assert kept + removed == _counts(hook, bronze), silver
        assert removed > 0, f"{silver}: the generator plants dirty rows, so some must be quarantined"
    silver_customers = hook.load_table("silver.customers_cleaned").scan().to_arrow()
    assert len(set(silver_customers.column("customer_id").to_pylist())) == silver_customers.num_rows

    # The model beats a trivial baseline on held-out data.
    client = MLflowHook().client()
    champion = client.get_model_version_by_alias("customer_churn_predictor", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["roc_auc"] > 0.75
    assert {"accuracy", "precision", "recall", "f1_score", "baseline_accuracy"} <= set(metrics)

    # Every customer of the latest snapshot is scored exactly once.
    gold = hook.load_table("gold.customer_metrics").scan().to_pandas()
    latest = gold[gold["feature_timestamp"].dt.date == AS_OF]
    predictions = hook.load_table("gold.customer_churn_predictions").scan().to_pandas()
    assert len(predictions) == len(latest) > 0
    assert set(predictions["customer_id"]) == set(latest["customer_id"])
    assert predictions["customer_id"].is_unique
    assert set(predictions["risk_level"]) <= {"low", "medium", "high"}
    assert predictions["churn_probability"].between(0, 1).all()
    assert set(predictions["model_version"].astype(str)) == {str(champion.version)}

    # Every written table is an asset whose event carries the snapshot it committed.
    for table in (
        "bronze.transactions",
        "silver.customers_cleaned",
        "gold.customer_metrics",
        "gold.customer_churn_predictions",
    ):
        events = _asset_events(table)
        assert events, f"no asset event for {table}"
        assert events[-1]["snapshot_id"] == hook.load_table(table).current_snapshot().snapshot_id, table


@pytest.mark.e2e
@pytest.mark.spark
@pytest.mark.parametrize("embedded_sources", ["embedded"], indirect=True)
def test_rerunning_the_same_date_reproduces_every_table(airflow_db: Path, embedded_sources: dict) -> None:
    """Run one logical date twice: same rows and contents in every table, no duplicates."""
    from asgard_provider.hooks.iceberg import IcebergHook

    assert _run_churn_dag().state == "success"
    first = _contents(IcebergHook())
    _forget_runs("customer_churn")
    assert _run_churn_dag().state == "success"
    assert _contents(IcebergHook()) == first
