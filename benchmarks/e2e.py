"""End-to-end wall time of the churn pipeline on the embedded default, per stage, against a bare baseline.

    .venv/bin/python benchmarks/e2e.py                 # seed scale (100k customers, 1.2M transactions, 45k tickets)
    .venv/bin/python benchmarks/e2e.py --scale 1 10    # and 10x
    .venv/bin/python benchmarks/e2e.py --scheduler     # also under a real scheduler (scripts/airflow-local.sh)
    .venv/bin/python benchmarks/e2e.py --scale 30 --scheduler --no-dags-test   # the largest scale: scheduler only

For each scale: generate the sources (SQLite, as `make data`) under a temporary ASGARD_HOME, migrate a fresh
Airflow metadata database, run `customer_churn` with ``dag.test()`` in a fresh process and read every task
instance's start/end from the metadata database; then run ``baseline_churn.py`` (same cleaning, Gold features,
training and scoring in one process, no orchestration) on the same sources. Prints per-task and per-stage
times, the orchestrated/baseline ratio and both models' ROC AUC.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    AS_OF,
    PYTHON,
    REPO,
    generate_sources,
    isolated_env,
    load_average,
    migrate_airflow_db,
    run,
    table,
)
from _scheduler import run_scheduler

#: Seed runtime quoted for this workflow (../shared/seeds): about 50 minutes.
SEED_MINUTES = 50.0

STAGES = (
    ("ingest", ("ingest_",)),
    ("silver (Spark)", ("clean_", "check_clean_")),
    ("gold (dbt)", ("gold.", "check_gold")),
    ("features (Feast)", ("register_features", "materialize_features")),
    ("train (MLflow)", ("train_model",)),
    ("predict", ("batch_inference",)),
)


def stage_of(task_id: str) -> str:
    for stage, prefixes in STAGES:
        if task_id.startswith(prefixes):
            return stage
    return "other"


def task_rows(returned: object) -> int | None:
    """Rows a task processed, from its return value: ingest and dbt checks write, transforms read, inference scores."""
    if not isinstance(returned, dict):
        return None
    if "rows_quarantined" in returned:  # Spark transform: every input row lands in the output or the quarantine
        return int(returned.get("rows_written", 0)) + int(returned["rows_quarantined"])
    for key in ("rows_written", "rows"):
        if isinstance(returned.get(key), int):
            return int(returned[key])
    return None


def run_dag(out: Path) -> None:
    """Inside the isolated environment: parse, dag.test(), then read task instance timings."""
    from datetime import UTC, datetime

    from _common import RssTimeline, self_rss_mib

    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "customer_churn.py"), safe_mode=False)
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.dags["customer_churn"]
    parse = time.perf_counter() - t0
    day = datetime.fromisoformat(AS_OF).replace(hour=6, tzinfo=UTC)
    t1 = time.perf_counter()
    with RssTimeline() as rss:
        dag_run = dag.test(logical_date=day)
    wall = time.perf_counter() - t1

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        returned = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.query(XComModel).filter(
                XComModel.dag_id == "customer_churn",
                XComModel.run_id == dag_run.run_id,
                XComModel.key == "return_value",
            )
        }
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == "customer_churn", TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        tasks = [
            {
                "task_id": ti.task_id,
                "state": str(ti.state),
                "start": ti.start_date.timestamp() if ti.start_date else None,
                "end": ti.end_date.timestamp() if ti.end_date else None,
                "duration": ti.duration,
                "rows": task_rows(returned.get(ti.task_id)),
                "peak_rss_mib": rss.peak_between(ti.start_date.timestamp(), ti.end_date.timestamp())
                if ti.start_date and ti.end_date
                else None,
                "start_rss_mib": rss.at(ti.start_date.timestamp()) if ti.start_date else None,
            }
            for ti in tis
        ]
    from asgard_provider.hooks.mlflow import MLflowHook

    client = MLflowHook().client()
    champion = client.get_model_version_by_alias("customer_churn_predictor", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    result = {
        "state": str(dag_run.state),
        "parse_s": parse,
        "dag_test_s": wall,
        "tasks": tasks,
        "roc_auc": metrics.get("roc_auc"),
        "peak_rss_mib_python": self_rss_mib(),
    }
    out.write_text(json.dumps(result, indent=1))


def bench_scale(
    scale: float,
    workdir: Path,
    baseline: bool,
    server_db: str | None = None,
    scheduler: bool = False,
    dags_test: bool = True,
) -> dict:
    """Generate sources, run the DAG (and the baseline); ``server_db``: ingest from PostgreSQL + MariaDB."""
    home = workdir / f"scale-{scale:g}"
    shutil.rmtree(home, ignore_errors=True)
    if server_db:
        env = isolated_env(home, sources="servers", db=server_db)
        extra = [
            "--postgres",
            f"postgresql://postgres@127.0.0.1:5432/{server_db}",
            "--mysql",
            f"mysql+pymysql://root@127.0.0.1:3306/{server_db}",
        ]
    else:
        env, extra = isolated_env(home), []
    gen = generate_sources(home, scale, env, extra)
    manifest = json.loads((home / "sources" / "manifest.json").read_text())
    mig = migrate_airflow_db(env)
    dbt = run([PYTHON.parent / "asgard", "dbt", "compile"], env)
    print(
        f"[{scale:g}x] sources generated in {gen:.1f}s, Airflow DB migrated in {mig:.1f}s, "
        f"dbt manifests built in {dbt:.1f}s (ahead of parsing, as `make install` does)",
        flush=True,
    )

    dag_result, process_wall = _dags_test(home, env) if dags_test else (None, None)

    base = None
    if baseline:
        bout = home / "baseline.json"
        t0 = time.perf_counter()
        baseline_cmd = [PYTHON, REPO / "benchmarks" / "baseline_churn.py", "--sources", home / "sources"]
        run([*baseline_cmd, "--as-of", AS_OF, "--json", bout], env)
        base = json.loads(bout.read_text())
        base["process_wall_s"] = time.perf_counter() - t0
    sched = run_scheduler(home, workdir / f"scheduler-{scale:g}") if scheduler else None
    return {
        "scale": scale,
        "manifest": manifest,
        "dag": dag_result,
        "process_wall_s": process_wall,
        "baseline": base,
        "scheduler": sched,
    }


def _dags_test(home: Path, env: dict[str, str]) -> tuple[dict, float]:
    """Run the DAG with dag.test() in a fresh process (the support API served around it); return its figures."""
    out = home / "dag_result.json"
    t0 = time.perf_counter()
    from asgard_demo.support_api import serve

    with serve(home / "sources", port=int(env["ASGARD_SUPPORT_API_PORT"])):
        run([PYTHON, __file__, "--run-dag", out], env, log=home / "dag_test.log")
    process_wall = time.perf_counter() - t0
    dag_result = json.loads(out.read_text())
    if dag_result["state"] != "success":
        raise SystemExit(f"customer_churn finished {dag_result['state']}: see {home}/airflow")
    return dag_result, process_wall


def report(res: dict) -> None:
    scale, dag = res["scale"], res["dag"]
    if dag is None:
        print(f"\n## {scale:g}x seed scale ({load_average()}): no dags test run")
        return
    tasks = sorted(dag["tasks"], key=lambda t: t["start"] or 0)
    first = min(t["start"] for t in tasks if t["start"])
    last = max(t["end"] for t in tasks if t["end"])
    print(f"\n## {scale:g}x seed scale ({load_average()})\n")
    rows = [
        [
            t["task_id"],
            stage_of(t["task_id"]),
            t["duration"] or 0.0,
            t["rows"] if t["rows"] is not None else "",
            round(t["rows"] / t["duration"]) if t["rows"] and t["duration"] else "",
            t["peak_rss_mib"] or 0.0,
            t.get("start_rss_mib") or 0.0,
            (t["peak_rss_mib"] or 0.0) - (t.get("start_rss_mib") or 0.0),
            t["state"],
        ]
        for t in tasks
    ]
    heads = ["task", "stage", "seconds", "rows", "rows/s", "peak RSS MiB (process tree)", "RSS at start", "rise"]
    print(table([*heads, "state"], rows))
    worst = max(tasks, key=lambda t: t["peak_rss_mib"] or 0.0)
    print(
        f"\nhighest task peak RSS: {worst['task_id']} {(worst['peak_rss_mib'] or 0.0) / 1024:.2f} GiB (target <= 3 GiB)"
    )
    stages: dict[str, float] = {}
    for t in tasks:
        stages[stage_of(t["task_id"])] = stages.get(stage_of(t["task_id"]), 0.0) + (t["duration"] or 0.0)
    task_sum = sum(stages.values())
    print()
    srows = [[name, secs, f"{100 * secs / task_sum:.0f}%"] for name, secs in stages.items()]
    srows.append(["sum of tasks", task_sum, "100%"])
    srows.append(["first task start -> last task end", last - first, ""])
    srows.append(["dag.test() call", dag["dag_test_s"], ""])
    srows.append(["DAG file parse", dag["parse_s"], ""])
    srows.append(["whole process (imports, parse, run)", res["process_wall_s"], ""])
    print(table(["stage", "seconds", "share"], srows))
    total = res["process_wall_s"]
    print(
        f"\ntotal {total:.1f}s = {total / 60:.2f} min; the seed quotes ~{SEED_MINUTES:.0f} min: "
        f"{SEED_MINUTES * 60 / total:.1f}x faster"
    )
    print(
        f"orchestrated model roc_auc {dag['roc_auc']:.4f}, "
        f"peak RSS of the Airflow process {dag['peak_rss_mib_python']:.0f} MiB"
    )
    base = res["baseline"]
    if base:
        print()
        brows = [[k, v] for k, v in base["stages"].items()]
        brows.append(["total (in script)", base["total_s"]])
        brows.append(["whole process (imports included)", base["process_wall_s"]])
        print(table(["baseline step", "seconds"], brows))
        ratio = total / base["process_wall_s"]
        print(
            f"\nratio orchestrated/baseline {ratio:.2f}x (target < 3x); "
            f"roc_auc orchestrated {dag['roc_auc']:.4f} vs baseline {base['roc_auc']:.4f}; "
            f"baseline peak RSS {base['peak_rss_mib']:.0f} MiB"
        )


def report_scheduler(res: dict) -> None:
    """Per-task seconds under the scheduler beside dag.test(), and the ratios to dag.test() and the baseline."""
    sched = res["scheduler"]
    if not sched:
        return
    dags_test = {t["task_id"]: t["duration"] or 0.0 for t in (res["dag"] or {"tasks": []})["tasks"]}
    rows = [
        [t["task_id"], dags_test.get(t["task_id"], 0.0), t["duration"] or 0.0, t.get("peak_rss_mib"), t["state"]]
        for t in sorted(sched["tasks"], key=lambda t: t["task_id"])
    ]
    print(f"\n### under the scheduler (LocalExecutor, PostgreSQL metadata DB; {load_average()})\n")
    print(table(["task", "dags test s", "scheduler s", "peak RSS MiB (task process tree)", "state"], rows))
    peak = max(sched["tasks"], key=lambda t: t.get("peak_rss_mib") or 0.0)
    if peak.get("peak_rss_mib"):
        gib = peak["peak_rss_mib"] / 1024
        print(f"\nhighest task peak RSS under the scheduler: {peak['task_id']} {gib:.2f} GiB (target <= 3 GiB)")
    wall, dag_wall = sched["wall_s"], res["process_wall_s"]
    visible = sched["dag_visible_s"]
    line = f"\nscheduler run {wall:.1f}s (unpause -> run finished; DAG visible {visible:.0f}s after start)"
    if dag_wall:
        line += f" vs dags test {dag_wall:.1f}s: {wall / dag_wall:.2f}x (target <= 1.5x)"
    if res["baseline"]:
        base = res["baseline"]
        line += f"; vs bare script {wall / base['process_wall_s']:.2f}x (target <= 3x at 1x, <= 2x at 10x)"
        line += f"; bare script {base['process_wall_s']:.1f}s, roc_auc {base['roc_auc']:.4f}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0], help="data scales to run, e.g. 1 10")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare single-process baseline")
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="also run the DAG under `make airflow`'s scheduler (LocalExecutor, PostgreSQL) on the same sources",
    )
    parser.add_argument(
        "--no-dags-test", action="store_true", help="skip dag.test() (with --scheduler: the scheduler run only)"
    )
    parser.add_argument("--workdir", type=Path, help="keep state here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--run-dag", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_dag:
        run_dag(args.run_dag)
        return
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="asgard-bench-e2e-")
        workdir = Path(tmp.name)
    results = []
    try:
        for scale in args.scale:
            res = bench_scale(
                scale, workdir, not args.no_baseline, scheduler=args.scheduler, dags_test=not args.no_dags_test
            )
            report(res)
            report_scheduler(res)
            results.append(res)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
