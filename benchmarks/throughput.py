"""Stage throughput of the churn pipeline with real source servers: rows/s and peak memory per stage.

    .venv/bin/python benchmarks/throughput.py              # seed scale
    .venv/bin/python benchmarks/throughput.py --scale 1 10

Loads the demo sources into a scratch database (customers in PostgreSQL, transactions in MariaDB, via
``asgard_demo.data --postgres/--mysql``), runs ``customer_churn`` with ``dag.test()`` against them
(ingestion through SqlToIcebergOperator -> IcebergHook.write, Spark SQL transforms, dbt, Feast, MLflow, batch
inference), and reports for each task the rows it handled (its return value), rows/s, and the peak RSS of the
process tree (Airflow process + Spark JVM + training subprocess) sampled every 0.2 s while it ran.
The scratch databases are dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_average, table
from e2e import bench_scale

SCRATCH_DB = "asgard_bench_throughput"

#: (label, task id, what its rows are)
STAGES = (
    ("ingest PostgreSQL -> bronze.customers", "ingest_customers", "rows read and written"),
    ("ingest MariaDB -> bronze.transactions", "ingest_transactions", "rows read and written"),
    ("ingest JSONL -> bronze.support_tickets", "ingest_support_tickets", "rows read and written"),
    ("Spark SQL bronze -> silver.customers_cleaned", "clean_customers", "input rows"),
    ("Spark SQL bronze -> silver.transactions_cleaned", "clean_transactions", "input rows"),
    ("Spark SQL bronze -> silver.support_tickets_cleaned", "clean_support_tickets", "input rows"),
    ("dbt Gold customer_metrics (DuckDB)", "gold.customer_metrics", ""),
    ("Feast register", "register_features", ""),
    ("Feast materialize (online store, beside training)", "materialize_features", ""),
    ("MLflow training", "train_model", ""),
    ("batch inference -> predictions", "batch_inference", "entities scored"),
)


def drop_scratch() -> None:
    import psycopg2
    import pymysql  # type: ignore[import-untyped]

    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
    admin.close()
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")
    conn.close()


def report(res: dict) -> None:
    tasks = {t["task_id"]: t for t in res["dag"]["tasks"]}
    print(f"\n## throughput at {res['scale']:g}x seed scale, sources on servers ({load_average()})\n")
    rows = []
    for label, task_id, what in STAGES:
        t = tasks.get(task_id) or next((v for k, v in tasks.items() if k.startswith(task_id)), None)
        if t is None:
            continue
        secs, n = t["duration"] or 0.0, t["rows"]
        rows.append(
            [label, n if n is not None else "", what, secs, round(n / secs) if n and secs else "", t["peak_rss_mib"]]
        )
    print(table(["stage", "rows", "rows are", "seconds", "rows/s", "peak RSS MiB"], rows))
    peak = max((t["peak_rss_mib"] or 0.0) for t in tasks.values())
    print(f"\npeak RSS of the whole run (process tree): {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="asgard-bench-throughput-") as tmp:
        try:
            for scale in args.scale:
                drop_scratch()
                res = bench_scale(scale, Path(tmp), baseline=False, server_db=SCRATCH_DB)
                report(res)
                results.append(res)
        finally:
            drop_scratch()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
