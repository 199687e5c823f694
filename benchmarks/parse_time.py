"""DAG-processor-style parse time of Asgard's dags/ with 1..100 pipeline configs, against dag-factory.

    .venv/bin/python benchmarks/parse_time.py [--configs 1 10 50 100] [--dbt-models 1 20] [--repeat 3]

Every measurement runs in a fresh interpreter (as a DAG processor parses a bundle): Airflow is imported first
(the processor has it loaded already; reported separately), then ``DagBag`` collects the folder and the time
of that call is the parse time. Each case is a temporary bundle: ``include/`` copied from the repo with N copies
of ``customer_churn.yaml`` (pipeline ids ``churn_000``...), and ``dags/`` with one three-line stub per config,
like ``dags/customer_churn.py``. The dbt project gets 1 model (the real one) or 20 (19 renamed copies) to show
that parsing stays free of dbt: ``asgard dbt compile`` builds the manifests first (its time is shown), "cold" is
the first parse after it, "warm" every later parse.

"slowest file" is the first file of the folder: it pays the imports (Asgard's factory, pydantic, Cosmos) that
later files in the same interpreter reuse. Airflow 3's DAG processor parses every file in a fresh child process
(it pre-imports only ``airflow.*`` modules), so each file costs about "slowest file" there, not the median.

dag-factory (``benchmarks/requirements.txt``) builds DAGs of the same shape (same task ids, groups and edges,
``EmptyOperator`` tasks; per number of dbt models) from one YAML per DAG, loaded by one stub per YAML.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, REPO, isolated_env, load_average, table

ASGARD_STUB = (
    '"""Pipeline {name} (parse benchmark copy of customer_churn)."""\n\n'
    "from airflow.providers.asgard import dag_from_file\n\n"
    "dag = dag_from_file(__file__)\n"
)
DAGFACTORY_STUB = (
    '"""dag-factory loader for {name}.yaml (parse benchmark)."""\n\n'
    "import dagfactory\n\n"
    'dagfactory.load_yaml_dags(globals_dict=globals(), config_filepath="{path}")\n'
)
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"


def measure(dags_dir: Path, out: Path) -> None:
    """In a fresh interpreter: import Airflow, then time DagBag over ``dags_dir``."""
    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    imported = time.perf_counter() - t0
    t1 = time.perf_counter()
    bag = DagBag(dag_folder=str(dags_dir), safe_mode=False, load_op_links=False)
    parse = time.perf_counter() - t1
    durations = sorted(s.duration.total_seconds() for s in bag.dagbag_stats)
    import resource

    result = {
        "airflow_import_s": imported,
        "parse_s": parse,
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "errors": {k: v[-500:] for k, v in bag.import_errors.items()},
        "first_file_s": max(durations) if durations else 0.0,
        "median_file_s": statistics.median(durations) if durations else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if bag.dags:
        dag = next(iter(bag.dags.values()))
        result["shape"] = [
            {
                "task_id": t.task_id,
                "group": t.task_group.group_id if t.task_group else None,
                "upstream": sorted(t.upstream_task_ids),
            }
            for t in dag.tasks
        ]
    out.write_text(json.dumps(result))


def measure_processor(dags_dir: Path, out: Path) -> None:
    """As Airflow 3's DAG processor parses: per file, pre-import its ``airflow.*`` imports, then fork a child.

    The child's CPU time for ``DagBag(file)`` is what every file costs in every parse loop.
    """
    import resource

    import structlog
    from airflow.dag_processing.dagbag import DagBag
    from airflow.dag_processing.processor import _pre_import_airflow_modules

    cpu, errors = [], {}
    for path in sorted(dags_dir.glob("*.py")):
        _pre_import_airflow_modules(str(path), structlog.get_logger())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            start = time.process_time()
            bag = DagBag(dag_folder=str(path), safe_mode=False, load_op_links=False)
            report = {
                "cpu_s": time.process_time() - start,
                "errors": {k: v[-500:] for k, v in bag.import_errors.items()},
            }
            os.write(write, json.dumps(report).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = json.loads(pipe.read() or '{"cpu_s": 0, "errors": {"child": "no report"}}')
        os.waitpid(pid, 0)
        cpu.append(report["cpu_s"])
        errors.update(report["errors"])
    result = {
        "files": len(cpu),
        "cpu_per_file_s": statistics.median(cpu) if cpu else 0.0,
        "cpu_per_loop_s": sum(cpu),
        "parent_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "errors": errors,
    }
    out.write_text(json.dumps(result))


def asgard_bundle(root: Path, configs: int, dbt_models: int) -> Path:
    """A bundle with ``configs`` churn pipelines whose dbt project has ``dbt_models`` models; returns dags/."""
    include = root / "include"
    shutil.copytree(REPO / "include", include, ignore=shutil.ignore_patterns("target", "logs", "__pycache__"))
    for old in (include / "pipelines").glob("*.y*ml"):
        old.unlink()
    gold = include / "dbt" / "customer_churn" / "models" / "gold"
    model = (gold / "customer_metrics.sql").read_text()
    for k in range(1, dbt_models):
        copy = model.replace("gold.customer_metrics", f"gold.customer_metrics_{k:02d}")
        copy = copy.replace("/customer_metrics-", f"/customer_metrics_{k:02d}-")
        (gold / f"customer_metrics_{k:02d}.sql").write_text(copy)
    source = (REPO / "include" / "pipelines" / "customer_churn.yaml").read_text()
    dags = root / "dags"
    dags.mkdir()
    for i in range(configs):
        name = f"churn_{i:03d}"
        text = re.sub(r"^pipeline: .*$", f"pipeline: {name}", source, count=1, flags=re.MULTILINE)
        (include / "pipelines" / f"{name}.yaml").write_text(text)
        (dags / f"{name}.py").write_text(ASGARD_STUB.format(name=name))
    return dags


def dagfactory_bundle(root: Path, configs: int, shape: list[dict]) -> Path:
    """``configs`` dag-factory YAML files with the task shape of the churn DAG, one loader stub each."""
    yamls, dags = root / "configs", root / "dags"
    yamls.mkdir(parents=True)
    dags.mkdir(parents=True)
    groups = sorted({t["group"] for t in shape if t["group"]})
    for i in range(configs):
        name = f"churn_{i:03d}"
        tasks = []
        for t in shape:
            entry: dict = {
                "task_id": t["task_id"].rsplit(".", 1)[-1] if t["group"] else t["task_id"],
                "operator": EMPTY,
            }
            if t["group"]:
                entry["task_group_name"] = t["group"]
            ups = [u.rsplit(".", 1)[-1] for u in t["upstream"]]
            if ups:
                entry["dependencies"] = ups
            tasks.append(entry)
        config = {
            name: {
                "default_args": {"owner": "asgard", "start_date": "2025-11-01", "retries": 1},
                "schedule": "0 6 * * *",
                "catchup": False,
                "tags": ["churn", "ml"],
                "description": "dag-factory equivalent of the churn pipeline",
                "task_groups": [{"group_name": g} for g in groups],
                "tasks": tasks,
            }
        }
        path = yamls / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        (dags / f"{name}.py").write_text(DAGFACTORY_STUB.format(name=name, path=path))
    return dags


def run_compile(include: Path, env: dict[str, str]) -> float:
    """Build the bundle's dbt manifests with `asgard dbt compile`; return its wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(PYTHON.parent / "asgard"), "dbt", "compile", "--include-dir", str(include)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"asgard dbt compile failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def run_measure(dags: Path, env: dict[str, str], mode: str = "--measure") -> dict:
    out = dags.parent / f"measure-{time.monotonic_ns()}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([str(PYTHON), __file__, mode, str(dags), str(out)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"parse measurement of {dags} failed")
    result = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - t0
    if result["errors"]:
        raise SystemExit(f"import errors in {dags}: {json.dumps(result['errors'], indent=1)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--dbt-models", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--repeat", type=int, default=3, help="warm measurements per case (the median is shown)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure-processor", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    if args.measure_processor:
        measure_processor(*args.measure_processor)
        return

    print(f"# parse time ({load_average()})\n")
    results = []
    shapes: dict[int, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="asgard-bench-parse-") as tmp:
        work = Path(tmp)
        for models in args.dbt_models:
            for n in args.configs:
                case = work / f"asgard-{models}m-{n}"
                dags = asgard_bundle(case, n, models)
                env = isolated_env(case / "home")
                env["ASGARD_INCLUDE_DIR"] = str(case / "include")
                env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
                # Manifests are built ahead of parsing (as `make install` and the image build do); "cold" is
                # the first parse after that build, with the default import timeout.
                compile_s = run_compile(case / "include", env)
                cold = run_measure(dags, env)
                cold["compile_s"] = compile_s
                warm = [run_measure(dags, env) for _ in range(args.repeat)]
                med = sorted(warm, key=lambda r: r["parse_s"])[len(warm) // 2]
                if models not in shapes and med.get("shape"):
                    shapes[models] = med["shape"]
                med["processor"] = run_measure(dags, env, "--measure-processor")
                results.append({"tool": "asgard", "dbt_models": models, "configs": n, "cold": cold, "warm": med})
                print(
                    f"asgard   {models:>2} dbt models {n:>3} configs: {med['dags']} DAGs/{med['tasks']} tasks, "
                    f"parse {med['parse_s']:.2f}s warm, {cold['parse_s']:.2f}s cold "
                    f"(after `asgard dbt compile`: {compile_s:.1f}s)",
                    flush=True,
                )
        env = isolated_env(work / "df-home")
        env["AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY"] = "False"
        for (models, shape), n in itertools.product(shapes.items(), args.configs):
            case = work / f"dagfactory-{models}m-{n}"
            dags = dagfactory_bundle(case, n, shape)
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
            warm = [run_measure(dags, env) for _ in range(args.repeat)]
            med = sorted(warm, key=lambda r: r["parse_s"])[len(warm) // 2]
            med["processor"] = run_measure(dags, env, "--measure-processor")
            results.append({"tool": "dag-factory", "dbt_models": models, "configs": n, "cold": med, "warm": med})
            print(
                f"dag-factory {models:>2} dbt models' shape {n:>3} configs: {med['dags']} DAGs/{med['tasks']} tasks, "
                f"parse {med['parse_s']:.2f}s",
                flush=True,
            )

    print()
    rows = []
    by_key = {(r["tool"], r["dbt_models"], r["configs"]): r for r in results}
    for r in results:
        warm, cold = r["warm"], r["cold"]
        ref = by_key.get(("dag-factory", r["dbt_models"], r["configs"]))
        ratio = f"{warm['parse_s'] / ref['warm']['parse_s']:.2f}x" if ref and r["tool"] == "asgard" else ""
        rows.append(
            [
                r["tool"],
                r["dbt_models"],
                r["configs"],
                f"{warm['dags']}/{warm['tasks']}",
                warm["parse_s"],
                cold["parse_s"] if r["tool"] == "asgard" else "-",
                warm["parse_s"] / r["configs"] * 1000,
                warm["first_file_s"],
                warm["median_file_s"] * 1000,
                warm["airflow_import_s"],
                warm["peak_rss_mib"],
                ratio,
                warm["processor"]["cpu_per_file_s"],
                warm["processor"]["cpu_per_loop_s"],
            ]
        )
    print(
        table(
            [
                "tool",
                "dbt models",
                "configs",
                "DAGs/tasks",
                "parse s (warm)",
                "parse s (cold)",
                "ms/config",
                "slowest file s",
                "median file ms",
                "airflow import s",
                "peak RSS MiB",
                "vs dag-factory",
                "processor CPU s/file",
                "processor CPU s/loop",
            ],
            rows,
        )
    )
    for r in results:
        proc = r["warm"]["processor"]
        ref = by_key.get(("dag-factory", r["dbt_models"], r["configs"]))
        if r["tool"] == "asgard" and ref:
            per_file = proc["cpu_per_file_s"]
            print(
                f"DAG-processor style, {r['configs']} configs, {r['dbt_models']} dbt models: {per_file:.3f} s CPU per "
                f"pipeline per loop (target 0.3 s: {'meets' if per_file <= 0.3 else 'misses'}), "
                f"{proc['cpu_per_loop_s'] / ref['warm']['processor']['cpu_per_loop_s']:.2f}x dag-factory"
            )
    big = [r for r in results if r["tool"] == "asgard" and r["configs"] == max(args.configs)]
    for r in big:
        ref = by_key.get(("dag-factory", r["dbt_models"], r["configs"]))
        if ref:
            ratio = r["warm"]["parse_s"] / ref["warm"]["parse_s"]
            print(
                f"\n{r['configs']} configs, {r['dbt_models']} dbt models: {r['warm']['parse_s']:.2f}s in one "
                f"interpreter, {ratio:.2f}x dag-factory (target 1.5x: {'meets' if ratio <= 1.5 else 'misses'})"
            )
    flat = {
        r["dbt_models"]: r["warm"]["parse_s"]
        for r in results
        if r["tool"] == "asgard" and r["configs"] == max(args.configs)
    }
    if len(flat) > 1:
        lo, hi = min(flat), max(flat)
        print(f"{hi} vs {lo} dbt models at {max(args.configs)} configs: {flat[hi] / flat[lo]:.2f}x parse time")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    os.environ.pop("ASGARD_INCLUDE_DIR", None)


if __name__ == "__main__":
    main()
