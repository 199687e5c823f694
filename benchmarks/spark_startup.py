"""Where the first Spark transform's time goes: JVM start, catalog session, first query, later sessions.

    .venv/bin/python benchmarks/spark_startup.py

Runs in a temporary ASGARD_HOME with an empty embedded catalog. Times ``SparkHook.get_session`` cold (starts the
JVM with the Iceberg runtime), the same call again (what every later task of a ``dag.test()`` or a test suite
pays), a trivial query, and creating and reading back a small Iceberg table through the JDBC catalog.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import isolated_env, load_average, table


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="asgard-bench-spark-") as tmp:
        os.environ.update(isolated_env(Path(tmp)))
        t0 = time.perf_counter()
        from asgard_provider.catalog import CatalogSettings
        from asgard_provider.hooks.spark import SparkHook, stop_sessions

        imports = time.perf_counter() - t0
        catalog = CatalogSettings.embedded()
        hook = SparkHook()
        timings: list[tuple[str, float]] = [("import asgard_provider.hooks.spark", imports)]

        def step(name: str, fn):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            out = fn()
            timings.append((name, time.perf_counter() - start))
            return out

        spark = step("get_session, cold (JVM start + Iceberg catalog session)", lambda: hook.get_session(catalog))
        step("get_session again (next task in the same process)", lambda: hook.get_session(catalog))
        step("SELECT 1", lambda: spark.sql("SELECT 1").collect())
        step("CREATE NAMESPACE + CREATE TABLE (Iceberg, JDBC catalog)", lambda: _create(spark))
        step("INSERT 100k rows", lambda: spark.sql("INSERT INTO iceberg.bench.t SELECT id, id * 2 FROM range(100000)"))
        step("count(*) read back", lambda: spark.sql("SELECT count(*) FROM iceberg.bench.t").collect())
        step("stop_sessions", stop_sessions)
        print(f"# Spark session costs ({load_average()})\n")
        print(table(["step", "seconds"], timings))


def _create(spark):  # type: ignore[no-untyped-def]
    spark.sql("CREATE NAMESPACE IF NOT EXISTS iceberg.bench")
    spark.sql("CREATE TABLE iceberg.bench.t (id BIGINT, v BIGINT) USING iceberg")


if __name__ == "__main__":
    main()
