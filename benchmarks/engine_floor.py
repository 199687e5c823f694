"""What each engine the pipeline runs on costs before it touches any data, against the bare script's budget.

    .venv/bin/python benchmarks/engine_floor.py                         # fixed costs + the 1x bare script
    .venv/bin/python benchmarks/engine_floor.py --no-fixed --online-entities 1000000 --batch-rows 10000 50000

Each probe is a fresh process in a temporary ASGARD_HOME doing the least that stage must do on every run, on
almost no data. Airflow is timed from outside (interpreter start included): it runs a DAG of as many no-op
tasks as ``customer_churn`` has (counted first) with ``dag.test()``. The others are timed inside a process that
has already imported what the orchestrator and every stage share (``airflow.sdk``, numpy, pandas, pyarrow), so
nothing is counted twice: Spark starts its session with the Iceberg runtime and writes and reads one row; dbt
parses the churn project (the run date is a dbt var, so every run parses); Feast imports and opens the embedded
store; MLflow (with scikit-learn and skops) logs a 10-row model into an existing tracking store, as
``TrainingContext`` does. The sum is a floor for ``benchmarks/e2e.py``'s orchestrated run, whatever is
optimized around the engines. ``--online-entities N`` also times writing N entities x 8 features into the
SQLite online store, through Feast's own store and the embedded default's (``BulkSqliteOnlineStore``): the
part of materialization that grows with the data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import AS_OF, PYTHON, REPO, generate_sources, isolated_env, load_average, migrate_airflow_db, run, table

from asgard_provider.engines.feature_batches import MATERIALIZE_BATCH_ROWS
from asgard_provider.engines.stores import BULK_SQLITE_TYPE

PROBES = ("airflow", "spark", "dbt", "feast", "mlflow")


def probe_churn_tasks(home: Path) -> None:
    """Write how many tasks ``customer_churn`` has to ``home/churn_tasks`` (not timed: it sizes the Airflow probe)."""
    from airflow.dag_processing.dagbag import DagBag

    tasks = len(
        DagBag(dag_folder=str(REPO / "dags" / "customer_churn.py"), safe_mode=False).dags["customer_churn"].tasks
    )
    (home / "churn_tasks").write_text(str(tasks))


def probe_airflow(home: Path) -> None:
    """Run a chain of as many no-op tasks as ``customer_churn`` has with dag.test(), as e2e.py runs it."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # its own folder, so dag.test() can serialize it
    tasks = int((home / "churn_tasks").read_text())
    (dags / "floor.py").write_text(
        "from airflow.sdk import dag, task\n"
        "@dag(schedule=None)\n"
        "def engine_floor():\n"
        "    previous = None\n"
        f"    for i in range({tasks}):\n"
        "        current = task(task_id=f'noop_{i}')(lambda: None)()\n"
        "        if previous is not None:\n"
        "            previous >> current\n"
        "        previous = current\n"
        "engine_floor()\n"
    )
    from datetime import UTC, datetime

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags / "floor.py"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    state = bag.dags["engine_floor"].test(logical_date=datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)).state
    assert state == "success", state


def probe_spark(home: Path) -> None:
    """Start the local Spark session on the embedded Iceberg catalog; write and read back one row."""
    from asgard_provider.catalog import CatalogSettings
    from asgard_provider.hooks.spark import SparkHook, stop_sessions

    spark = SparkHook().get_session(CatalogSettings.embedded())
    spark.sql("CREATE NAMESPACE IF NOT EXISTS iceberg.floor")
    spark.sql("CREATE TABLE iceberg.floor.t (id BIGINT) USING iceberg")
    spark.sql("INSERT INTO iceberg.floor.t VALUES (1)")
    assert spark.sql("SELECT count(*) FROM iceberg.floor.t").collect()[0][0] == 1
    stop_sessions()


def probe_dbt(home: Path) -> None:
    """Parse the churn dbt project from scratch (a fresh ASGARD_HOME holds no manifest)."""
    from asgard_provider.dbt.cosmos import ensure_manifest

    assert ensure_manifest(REPO / "include" / "dbt" / "customer_churn", target="duckdb").is_file()


def probe_feast(home: Path) -> None:
    """Import Feast and open the embedded store, as register_features and materialize_features do."""
    from asgard_provider.engines.stores import FeastSettings, FeastStore

    assert FeastStore(FeastSettings.embedded()).store.list_feature_views() == []


def _tracking(home: Path) -> None:
    """Point MLflow at the probe's SQLite tracking store and experiment."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    mlflow.set_experiment("engine_floor")


def probe_mlflow_setup(home: Path) -> None:
    """Create the tracking store (once per installation, so not part of the floor)."""
    _tracking(home)


def probe_mlflow(home: Path) -> None:
    """Log a 10-row scikit-learn model with skops into the existing tracking store, in one run."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    _tracking(home)
    x, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5)
    with mlflow.start_run():
        mlflow.log_metric("roc_auc", 0.5)
        mlflow.sklearn.log_model(
            LogisticRegression().fit(x, y),
            name="model",
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )


def probe_online(home: Path, entities: int, store_type: str, batch_rows: int) -> float:
    """Write ``entities`` x 8 features through the online store ``store_type`` in batches; return the seconds."""
    from datetime import timedelta

    import numpy as np
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64

    online = {"type": store_type, "path": str(home / "online.db")}
    config = RepoConfig(
        project="floor", provider="local", registry=str(home / "registry.db"), online_store=online,
        offline_store={"type": "file"}, entity_key_serialization_version=3, repo_path=str(home),
    )  # fmt: skip
    store = FeatureStore(config=config)
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    schema = [Field(name=f"f{i}", dtype=Float64) for i in range(7)] + [Field(name="n", dtype=Int64)]
    source = FileSource(path=str(home / "unused.parquet"), timestamp_field="ts")
    store.apply([entity, FeatureView(name="v", entities=[entity], schema=schema, source=source)])
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.random(entities) for i in range(7)})
    frame["n"], frame["entity_id"] = rng.integers(0, 100, entities), np.arange(entities)
    frame["ts"] = pd.Timestamp(AS_OF, tz="UTC") - timedelta(hours=1)
    start = time.perf_counter()
    for offset in range(0, entities, batch_rows):
        batch = frame.iloc[offset : offset + batch_rows]
        store.write_to_online_store("v", df=batch, transform_on_write=False)
    return time.perf_counter() - start


def _probe(name: str, env: dict[str, str], home: Path, extra: Sequence[object] = ()) -> tuple[float, float]:
    """Run probe ``name`` in a fresh process; return its wall seconds and the seconds it printed last."""
    out = home / f"{name}.out"
    seconds = run([PYTHON, __file__, "--probe", name, "--home", home, *extra], env, log=out)
    return seconds, float(out.read_text().split()[-1])


def _baseline(work: Path) -> float:
    """Seconds of the bare script at seed scale (``baseline_churn.py``, whole process) on fresh sources."""
    home = work / "baseline"
    env = isolated_env(home)
    generate_sources(home, 1.0, env)
    cmd = [PYTHON, REPO / "benchmarks" / "baseline_churn.py", "--sources", home / "sources", "--as-of", AS_OF]
    return run([*cmd, "--json", home / "baseline.json"], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--online-entities", type=int, default=0, help="also time the online write of N entities")
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[MATERIALIZE_BATCH_ROWS], help="online batches")
    parser.add_argument("--no-baseline", action="store_true", help="skip the 1x bare script")
    parser.add_argument("--no-fixed", action="store_true", help="skip the fixed-cost probes")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store-type", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe == "online":
        print(probe_online(args.home, args.online_entities, args.store_type, args.batch_rows[0]))
        return
    if args.probe:
        import airflow.sdk  # noqa: F401  (shared with the orchestrator and every stage: not counted)
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401

        start = time.perf_counter()
        globals()[f"probe_{args.probe}"](args.home)
        print(time.perf_counter() - start)
        return
    with tempfile.TemporaryDirectory(prefix="asgard-bench-floor-") as tmp:
        work = Path(tmp)
        if not args.no_fixed:
            report_fixed(work, not args.no_baseline)
        if args.online_entities:
            report_online(work, args.online_entities, args.batch_rows)


def report_fixed(work: Path, baseline: bool) -> None:
    """Run every fixed-cost probe (and the baseline), then print the floor against the 3x budget."""
    rows: list[tuple[str, float]] = []
    for name in PROBES:
        home = work / name
        env = isolated_env(home)
        if name == "airflow":
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
            (home / "dags").mkdir()
            migrate_airflow_db(env)
            _probe("churn_tasks", env, home)
        if name == "mlflow":
            _probe("mlflow_setup", env, home)
        wall, inside = _probe(name, env, home)
        rows.append((name, wall if name == "airflow" else inside))
    floor = sum(seconds for _, seconds in rows)
    print(f"# Engine floor, fresh process per engine ({load_average()})\n")
    print(table(["engine (no data)", "seconds"], [*rows, ("sum: the floor", floor)]))
    if baseline:
        bare = _baseline(work)
        budget = f"3x budget {3 * bare:.1f} s"
        print(f"\nbare script at 1x {bare:.1f} s; {budget}; the floor alone is {floor / bare:.2f}x the script")


def report_online(work: Path, entities: int, batch_rows: Sequence[int]) -> None:
    """Time the online write of ``entities`` through Feast's SQLite store and the embedded default's."""
    rows = []
    print(f"\n# Online write, {entities:,} entities x 8 features, SQLite ({load_average()})\n")
    for store_type in ("sqlite", BULK_SQLITE_TYPE):
        label = store_type.rsplit(".", 1)[-1]
        for batch in batch_rows:
            home = work / f"online-{label}-{batch}"
            extra = ["--online-entities", entities, "--store-type", store_type, "--batch-rows", batch]
            seconds = _probe("online", isolated_env(home), home, extra)[1]
            rows.append((label, batch, seconds, entities / seconds))
            shutil.rmtree(home)
    print(table(["online store", "entities per batch", "seconds", "entities/s"], rows))
    print(f"\n({load_average()} at the end)")


if __name__ == "__main__":
    main()
