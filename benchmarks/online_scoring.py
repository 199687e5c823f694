"""Latency of online churn scoring (one customer per request) on the SQLite and Redis online stores.

Builds a throw-away embedded stack in a temporary ASGARD_HOME: a synthetic gold.customer_metrics Iceberg
table, the churn feature view materialized by FeastRegisterOperator, and a model trained by
MLflowTrainOperator with include/training/churn_training.py at the pipeline's hyperparameters
(100 trees, depth 10). Then, per online store, it loads one OnlineScorer (model and FeatureStore once),
warms up, and times N requests over random customer ids: the whole score() call, its two parts (online
read, predict), and scikit-learn's own one-row predict_proba for comparison. The SQLite store is also timed
through the HTTP endpoint (the Asgard API on uvicorn, 127.0.0.1).

    .venv/bin/python benchmarks/online_scoring.py [--requests 1000] [--customers 5000] [--no-redis]

Target (issue 5): p99 < 50 ms per request. Redis must be listening on 127.0.0.1:6379 (or pass --redis-url).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

TARGET_P99_MS = 50.0
AS_OF = date(2025, 11, 11)
PRIOR = AS_OF - timedelta(days=60)
FEATURE_VIEW = "customer_churn_features"
FEATURES = [
    ("total_purchases", "int64"),
    ("customer_lifetime_value", "float64"),
    ("avg_purchase_value", "float64"),
    ("days_since_last_purchase", "int64"),
    ("purchase_frequency", "float64"),
    ("account_age_days", "int64"),
    ("support_tickets", "int64"),
    ("avg_support_resolution_hours", "float64"),
]
MODEL = "customer_churn_predictor"
FIRST_ID = 100_001


def _environment(home: Path) -> None:
    os.environ["ASGARD_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _gold(customers: int, seed: int = 11) -> Any:
    """Two daily snapshots (PRIOR labelled, AS_OF not) whose churn label depends on recency and frequency."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = np.arange(FIRST_ID, FIRST_ID + customers, dtype=np.int64)
    parts = []
    for day, labelled in ((PRIOR, True), (AS_OF, False)):
        age = rng.integers(30, 1500, customers)
        freq = rng.gamma(2.0, 0.6, customers)
        recency = np.minimum(rng.exponential(25.0 / (freq + 0.1)), age).astype(np.int64)
        purchases = rng.poisson(freq * age / 30.0).astype(np.int64)
        value = np.round(rng.lognormal(4.2, 0.4, customers), 2)
        tickets = rng.poisson(1.5, customers).astype(np.int64)
        churned = (-1.0 + 0.035 * recency - 1.2 * freq + 0.35 * tickets + rng.normal(0, 0.5, customers) > 0).astype(
            np.int32
        )
        parts.append(
            pa.table(
                {
                    "customer_id": ids,
                    "feature_timestamp": pa.array([datetime.combine(day, dtime())] * customers, pa.timestamp("us")),
                    "total_purchases": purchases,
                    "customer_lifetime_value": purchases * value,
                    "avg_purchase_value": value,
                    "days_since_last_purchase": recency,
                    "purchase_frequency": np.round(freq, 4),
                    "account_age_days": age.astype(np.int64),
                    "support_tickets": tickets,
                    "avg_support_resolution_hours": np.round(rng.gamma(2.0, 8.0, customers), 2),
                    "churned": pa.array(churned if labelled else [None] * customers, pa.int32()),
                }
            )
        )
    return pa.concat_tables(parts)


def _context() -> dict[str, Any]:
    from airflow.sdk import DAG

    end = datetime.combine(AS_OF, dtime(6), tzinfo=UTC)
    return {
        "dag": DAG(dag_id="customer_churn", schedule=None),
        "run_id": "benchmark__online_scoring",
        "logical_date": end,
        "data_interval_start": end - timedelta(days=1),
        "data_interval_end": end,
    }


def _register(feast_conn_id: str | None = None) -> dict[str, Any]:
    from asgard_provider.operators.feast import FeastRegisterOperator

    extra = {"feast_conn_id": feast_conn_id} if feast_conn_id else {}
    return FeastRegisterOperator(
        task_id="register_features",
        feature_view=FEATURE_VIEW,
        entity="customer",
        join_key="customer_id",
        source_table="gold.customer_metrics",
        timestamp_field="feature_timestamp",
        features=[{"name": n, "dtype": t} for n, t in FEATURES],
        ttl_days=90,
        **extra,
    ).execute(_context())


def _train() -> dict[str, Any]:
    from asgard_provider.operators.mlflow import MLflowTrainOperator

    return MLflowTrainOperator(
        task_id="train_model",
        script="churn_training.py",
        experiment_name="customer_churn_prediction",
        registered_model_name=MODEL,
        features=[f"{FEATURE_VIEW}:{n}" for n, _ in FEATURES],
        label_table="gold.customer_metrics",
        label_column="churned",
        entity_key="customer_id",
        timestamp_field="feature_timestamp",
        hyperparameters={"n_estimators": 100, "max_depth": 10},
        min_metrics={"roc_auc": 0.75},
        timeout=1800,
    ).execute(_context())


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(samples_ms)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "n": len(values),
        "mean": float(values.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
    }


def _time(call: Callable[[int], Any], ids: list[int], warmup: int) -> list[float]:
    for customer in ids[:warmup]:
        call(customer)
    samples = []
    for customer in ids:
        start = time.perf_counter_ns()
        call(customer)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _measure(label: str, scorer: Any, ids: list[int], warmup: int) -> list[tuple[str, dict[str, float]]]:
    import pandas as pd

    results = [(f"{label}: score() end to end", _percentiles(_time(scorer.score, ids, warmup)))]
    results.append((f"{label}:   online read only", _percentiles(_time(scorer.features, ids, warmup))))
    rows = {c: scorer.features(c)[0] for c in ids}
    results.append(
        (f"{label}:   predict only", _percentiles(_time(lambda c: scorer.probability(rows[c]), ids, warmup)))
    )
    frames = {c: pd.DataFrame([list(v.values())], columns=scorer.columns) for c, v in rows.items()}
    results.append(
        (
            f"{label}:   (sklearn predict_proba, 1 row)",
            _percentiles(_time(lambda c: scorer.model.predict_proba(frames[c].astype("float64")), ids, warmup)),
        )
    )
    return results


def _measure_http(scorer: Any, ids: list[int], warmup: int) -> tuple[str, dict[str, float]]:
    import uvicorn

    from asgard_provider.api import create_app

    app = create_app(auth=False, model_name=scorer.model_name)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/score/"

    def get(customer: int) -> None:
        with urllib.request.urlopen(base + str(customer), timeout=10) as response:
            json.loads(response.read())

    try:
        return "sqlite: HTTP GET /score/<id> (Asgard API on uvicorn, loopback)", _percentiles(_time(get, ids, warmup))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per store (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests first (default 100)")
    parser.add_argument("--customers", type=int, default=5000, help="customers in the synthetic table (default 5000)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis online store to measure")
    parser.add_argument("--no-redis", action="store_true", help="measure the SQLite online store only")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP endpoint measurement")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="asgard-bench-online-") as tmp:
        home = Path(tmp) / "asgard"
        home.mkdir()
        _environment(home)
        import numpy as np

        from asgard_provider.hooks.iceberg import IcebergHook
        from asgard_provider.serving import OnlineScorer

        started = time.perf_counter()
        IcebergHook().write("gold.customer_metrics", [_gold(args.customers)], mode="overwrite")
        materialized = _register()["materialized_rows"]
        trained = _train()
        print(
            f"setup: {args.customers} customers, {materialized} materialized, {MODEL} v{trained['model_version']} "
            f"(RandomForest 100 trees, holdout roc_auc {trained['metrics'].get('roc_auc', float('nan')):.3f}) "
            f"in {time.perf_counter() - started:.0f}s",
            flush=True,
        )
        rng = np.random.default_rng(args.seed)
        ids = [int(i) for i in rng.integers(FIRST_ID, FIRST_ID + args.customers, args.requests)]
        results: list[tuple[str, dict[str, float]]] = []

        started = time.perf_counter()
        sqlite = OnlineScorer(MODEL)
        print(f"sqlite scorer loaded in {time.perf_counter() - started:.1f}s (once per process)", flush=True)
        results += _measure("sqlite", sqlite, ids, args.warmup)
        if not args.no_http:
            results.append(_measure_http(sqlite, ids, args.warmup))

        if not args.no_redis:
            import redis

            project = f"asgard_bench_{uuid.uuid4().hex[:8]}"
            os.environ["AIRFLOW_CONN_ASGARD_BENCH_REDIS"] = json.dumps(
                {
                    "conn_type": "asgard_feast",
                    "extra": {
                        "project": project,
                        "registry": str(home / "feast-redis" / "registry.db"),
                        "online_store": args.redis_url,
                        "repo_path": str(home / "feast-redis" / "repo"),
                    },
                }
            )
            client = redis.Redis.from_url(args.redis_url)
            try:
                _register("asgard_bench_redis")
                on_redis = OnlineScorer(MODEL, feast_conn_id="asgard_bench_redis")
                same = all(on_redis.score(c).value == sqlite.score(c).value for c in ids[:50])
                print(f"redis scores equal sqlite scores on 50 ids: {same}", flush=True)
                results += _measure("redis", on_redis, ids, args.warmup)
            finally:
                for key in client.scan_iter(f"*{project}*", count=1000):
                    client.delete(key)
                client.close()

    load = os.getloadavg()
    print(
        f"\nonline scoring latency, ms ({args.requests} requests over random ids after {args.warmup} warm-up; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load avg {load[0]:.1f}/{load[1]:.1f}, python {sys.version.split()[0]})"
    )
    print(f"{'measurement':<48} {'mean':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8}  p99/target")
    for label, stats in results:
        print(
            f"{label:<48} {stats['mean']:7.2f} {stats['p50']:7.2f} {stats['p95']:7.2f} {stats['p99']:7.2f} "
            f"{stats['max']:8.2f}  {stats['p99'] / TARGET_P99_MS:.2f}"
        )
    verdicts = [
        f"{label.split(':')[0]} p99 {stats['p99']:.1f} ms {'<' if stats['p99'] < TARGET_P99_MS else '>='} "
        f"{TARGET_P99_MS:.0f} ms"
        for label, stats in results
        if label.endswith("end to end")
    ]
    print("target: " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
