"""Stage throughput of the churn pipeline with real source servers: rows/s and peak memory per stage.

    .venv/bin/python benchmarks/throughput.py              # seed scale
    .venv/bin/python benchmarks/throughput.py --scale 1 10

Loads the demo sources into a scratch database (customers in PostgreSQL, transactions in MariaDB, via
``asgard_demo.data --postgres/--mysql``), runs ``customer_churn`` with ``dag.test()`` against them
(ingestion through SqlToIcebergOperator -> IcebergHook.write, Spark SQL transforms, dbt, Feast, MLflow, batch
inference), and reports for each task the rows it handled (its return value), rows/s, and the peak RSS of the
process tree (Airflow process + Spark JVM + training subprocess) sampled every 0.2 s while it ran.
The scratch databases are dropped afterwards.

    .venv/bin/python benchmarks/throughput.py --ingest-only --scale 10

only loads the sources and compares the ingestion paths side by side, each reading the table and writing it to
a Bronze Iceberg table in one commit: the previous row-by-row path (SQLAlchemy tuples -> ``pa.array`` per
column, as SqlSourceHook did before the Arrow readers) against :class:`SqlSourceHook` (ADBC for PostgreSQL and
SQLite, connectorx for MariaDB). ``--db NAME --sources DIR`` reuses sources loaded before.

    .venv/bin/python benchmarks/throughput.py --rest-only --tickets 5000

serves that many tickets from the demo's support API on 127.0.0.1 and compares, side by side, the import cost
(fresh interpreters) and the fetch rate (pages of 500 into Arrow) of a plain ``requests`` page loop (what the
hand-written client did) against :class:`RestSourceHook` on dlt's RESTClient and paginators.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import AS_OF, PYTHON, load_average, run, table
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


#: (label, connection type, source table) of the ingest comparison; the scratch DB name is the schema/database.
INGEST_SOURCES = (
    ("PostgreSQL customers", "postgres", "customers"),
    ("MariaDB transactions", "mysql", "transactions"),
    ("SQLite customers", "sqlite", "customers"),
    ("SQLite transactions", "sqlite", "transactions"),
)


def _connection(kind: str, db: str, sources: Path, table: str) -> dict[str, object]:
    if kind == "sqlite":
        return {"conn_type": "sqlite", "host": str(sources / f"{table}.db")}
    port, login = (5432, "postgres") if kind == "postgres" else (3306, "root")
    return {"conn_type": kind, "host": "127.0.0.1", "port": port, "login": login, "schema": db}


def _old_batches(conn: dict[str, object], table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The previous path: SQLAlchemy rows, one ``pa.array`` per column and batch."""
    from sqlalchemy import create_engine, text

    kind = conn["conn_type"]
    if kind == "sqlite":
        url = f"sqlite:///{conn['host']}"
    else:
        driver = "postgresql+psycopg2" if kind == "postgres" else "mysql+pymysql"
        url = f"{driver}://{conn['login']}@{conn['host']}:{conn['port']}/{conn['schema']}"
    with create_engine(url).connect() as c:
        result = c.execution_options(stream_results=True, yield_per=batch_rows).execute(text(f"SELECT * FROM {table}"))
        names = list(result.keys())
        for rows in result.partitions(batch_rows):
            cols = [pa.array(list(col)) for col in zip(*rows, strict=True)]
            yield pa.RecordBatch.from_arrays(cols, names=names)


def _timed_ingest(batches: Iterator[pa.RecordBatch], target: str) -> tuple[int, float]:
    """Write ``batches`` to ``target`` in one commit; return rows and seconds."""
    from asgard_provider.hooks.iceberg import IcebergHook

    start = time.perf_counter()
    rows = IcebergHook().write(target, batches, mode="overwrite")["rows_written"]
    return int(rows), time.perf_counter() - start


def compare_ingest(scale: float, workdir: Path, db: str | None, sources: Path | None, old: bool) -> None:
    """Load the sources (unless given), then ingest each with the old and the new path; print both."""
    import os

    if db is None or sources is None:
        db, sources = SCRATCH_DB, workdir / "sources"
        drop_scratch()
        gen = [PYTHON, "-m", "asgard_demo.data", "--out", sources, "--scale", scale, "--as-of", AS_OF]
        gen += ["--postgres", f"postgresql://postgres@127.0.0.1:5432/{db}"]
        gen += ["--mysql", f"mysql+pymysql://root@127.0.0.1:3306/{db}"]
        seconds = run(gen)
        print(f"[{scale:g}x] sources loaded in {seconds:.0f}s", flush=True)
    os.environ["ASGARD_HOME"] = str(workdir / "home")
    _timed_ingest(iter([pa.record_batch({"x": [1]})]), "bronze.warm_up")  # imports and catalog set-up, untimed
    rows = []
    for label, kind, source_table in INGEST_SOURCES:
        conn = _connection(kind, db, sources, source_table)
        os.environ["AIRFLOW_CONN_BENCH_SOURCE"] = json.dumps(conn)
        from asgard_provider.hooks.sql_source import SqlSourceHook

        new = _timed_ingest(
            SqlSourceHook("bench_source").stream_table(source_table), f"bronze.new_{kind}_{source_table}"
        )
        old_batches = _old_batches(conn, source_table, 100_000)
        before = _timed_ingest(old_batches, f"bronze.old_{kind}_{source_table}") if old else None
        row: list[object] = [label, new[0], new[1], round(new[0] / new[1])]
        if before is not None:
            row += [before[1], round(before[0] / before[1]), f"{before[1] / new[1]:.1f}x"]
        rows.append(row)
        print(f"  {label}: {row[1:]}", flush=True)
    print(f"\n## ingestion at {scale:g}x seed scale: read + one Iceberg commit ({load_average()})\n")
    head = ["source", "rows", "new s", "new rows/s"]
    print(table(head + (["old s", "old rows/s", "speed-up"] if old else []), rows))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the benchmark process: {peak:.0f} MiB (batches of 100,000 rows)")


IMPORTS = {
    "requests (hand-written client before dlt)": "import requests",
    "dlt.sources.helpers.rest_client (RESTClient, paginators, auth)": "import dlt.sources.helpers.rest_client."
    "paginators, dlt.sources.helpers.rest_client.auth",
    "dlt.sources.rest_api (declarative source)": "import dlt.sources.rest_api",
}


def _import_seconds(statement: str, repeat: int = 3) -> float:
    """Best wall time of ``statement`` in a fresh interpreter that already imported the ingest operator."""
    import subprocess

    code = f"import time, asgard_provider.operators.ingest\nt = time.perf_counter()\n{statement}\n"
    code += "print(time.perf_counter() - t)"
    runs = [subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True) for _ in range(repeat)]
    return min(float(r.stdout.split()[-1]) for r in runs)


def _requests_pages(url: str, size: int) -> Iterator[list[dict[str, object]]]:
    """The baseline: a plain requests loop over page numbers, as the hand-written client did."""
    import requests

    with requests.Session() as http:
        for page in range(1, 100_000):
            records = http.get(f"{url}/tickets", params={"page": page, "per_page": size}, timeout=30).json()["data"]
            if records:
                yield records
            if len(records) < size:
                return


def compare_rest(tickets: int, workdir: Path, size: int = 500) -> None:
    """Import cost and fetch rate of the REST paths against the demo support API on 127.0.0.1."""
    import os

    from asgard_demo.support_api import serve

    start = (1_700_000_000, 3600)
    with (workdir / "support_tickets.jsonl").open("w") as fh:
        for i in range(tickets):
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start[0] + i * start[1]))
            row = {"ticket_id": i, "customer_id": 1000 + i % 97, "subject": f"ticket {i}", "created_at": created}
            fh.write(json.dumps(row) + "\n")
    imports = [[label, round(_import_seconds(stmt), 2)] for label, stmt in IMPORTS.items()]
    print(f"\n## REST client import, after the ingest operator ({load_average()})\n")
    print(table(["module", "best of 3 s"], imports))
    from asgard_provider.hooks.rest_source import RestSourceHook
    from asgard_provider.sources.common import Columns
    from asgard_provider.sources.rest import Pagination, RestRequest, to_batches

    rows = []
    with serve(workdir) as api:
        os.environ["AIRFLOW_CONN_BENCH_API"] = json.dumps({"conn_type": "http", "host": api.url})
        request = RestRequest("tickets", record_path="data", pagination=Pagination("page_number", size=size))
        paths = {
            "requests page loop": lambda: to_batches(_requests_pages(api.url, size), 100_000),
            "RestSourceHook (dlt RESTClient)": lambda: RestSourceHook("bench_api").stream(
                request, columns=Columns.of(None, None)
            ),
        }
        for label, read in paths.items():
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                n = sum(b.num_rows for b in read())
                best = min(best, time.perf_counter() - t)
            rows.append([label, n, round(best, 3), round(n / best)])
    print(f"\n## REST fetch, {tickets:,} tickets in pages of {size}, best of 3 ({load_average()})\n")
    print(table(["path", "rows", "seconds", "rows/s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ingest-only", action="store_true", help="compare the ingestion paths only")
    parser.add_argument("--no-old", action="store_true", help="with --ingest-only: skip the old row-by-row path")
    parser.add_argument("--db", help="with --ingest-only: scratch database already loaded")
    parser.add_argument("--sources", type=Path, help="with --ingest-only: the SQLite sources of --db")
    parser.add_argument("--rest-only", action="store_true", help="compare the REST client paths only")
    parser.add_argument("--tickets", type=int, default=5000, help="with --rest-only: tickets the API serves")
    args = parser.parse_args()
    if args.rest_only:
        with tempfile.TemporaryDirectory(prefix="asgard-bench-rest-") as tmp:
            compare_rest(args.tickets, Path(tmp))
        return
    if args.ingest_only:
        for scale in args.scale:
            with tempfile.TemporaryDirectory(prefix="asgard-bench-ingest-") as tmp:
                try:
                    compare_ingest(scale, Path(tmp), args.db, args.sources, old=not args.no_old)
                finally:
                    if args.db is None:
                        drop_scratch()
        return
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
