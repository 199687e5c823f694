"""The churn workflow as one bare script: no Airflow, Spark, dbt, Feast, MLflow or Iceberg.

    .venv/bin/python benchmarks/baseline_churn.py --sources .asgard/sources [--as-of 2025-11-11] [--json out.json]

Reads the demo sources (SQLite files + JSONL written by ``asgard_demo.data``) with DuckDB alone (its SQLite
scanner from the ``duckdb-extension-sqlite_scanner`` wheel, ``read_json``), applies the Silver
cleaning rules of ``include/sql/customer_churn/*.sql`` and the Gold features and label of
``include/dbt/customer_churn/models/gold/customer_metrics.sql`` with DuckDB, trains the same random forest
(``n_estimators=100, max_depth=10``, same hash-based holdout as ``TrainingContext.split``) and scores the
``as_of`` snapshot into a Parquet file. It is the lower bound the orchestrated pipeline is compared with in
``benchmarks/e2e.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

#: Feature columns of the feature view, in the order the pipeline config lists them.
FEATURES = [
    "total_purchases",
    "customer_lifetime_value",
    "avg_purchase_value",
    "days_since_last_purchase",
    "purchase_frequency",
    "account_age_days",
    "support_tickets",
    "avg_support_resolution_hours",
]
HORIZON_DAYS = 60
HOLDOUT_FRACTION = 0.2
THRESHOLDS = {"high": 0.7, "medium": 0.4}

# Silver: every rule of include/sql/customer_churn/*.sql; the rows a rule rejects are dropped here (the pipeline
# writes them to a quarantine table). TRY_CAST stands in for Spark's non-ANSI casts (NULL on bad input).
SILVER_CUSTOMERS = """
WITH typed AS (
    SELECT
        TRY_CAST(customer_id AS BIGINT) AS customer_id,
        LOWER(TRIM(email)) AS email,
        COALESCE(first_name, 'Unknown') AS first_name,
        last_name,
        TRY_CAST(registration_date AS DATE) AS registration_date,
        CASE WHEN LOWER(TRIM(status)) IN ('active', 'premium') THEN LOWER(TRIM(status)) ELSE 'inactive' END AS status,
        UPPER(TRIM(country)) AS country,
        city,
        TRY_CAST(created_at AS TIMESTAMP) AS created_at,
        TRY_CAST(updated_at AS TIMESTAMP) AS updated_at
    FROM raw_customers
), versions AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY customer_id
        ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST, email, status, country, city
    ) AS version_rank
    FROM typed
)
SELECT customer_id, email, first_name, last_name, registration_date, status, country, city, created_at
FROM versions
WHERE customer_id IS NOT NULL
  AND email IS NOT NULL AND email LIKE '%@%.%'
  AND registration_date IS NOT NULL
  AND registration_date >= DATE '2020-01-01'
  AND version_rank = 1
"""

SILVER_TRANSACTIONS = """
WITH typed AS (
    SELECT
        TRY_CAST(transaction_id AS BIGINT) AS transaction_id,
        TRY_CAST(customer_id AS BIGINT) AS customer_id,
        order_id,
        TRY_CAST(amount AS DECIMAL(10, 2)) AS amount,
        TRY_CAST(transaction_date AS DATE) AS transaction_date,
        LOWER(TRIM(payment_method)) AS payment_method,
        LOWER(TRIM(status)) AS status,
        TRY_CAST(created_at AS TIMESTAMP) AS created_at
    FROM raw_transactions
), events AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY transaction_id
        ORDER BY created_at DESC NULLS LAST, status, amount DESC NULLS LAST, customer_id, order_id
    ) AS event_rank
    FROM typed
)
SELECT transaction_id, customer_id, order_id, amount, transaction_date, payment_method, status, created_at
FROM events
WHERE transaction_id IS NOT NULL
  AND customer_id IS NOT NULL
  AND amount IS NOT NULL AND amount > 0
  AND transaction_date IS NOT NULL AND transaction_date >= DATE '2023-01-01'
  AND status = 'completed'
  AND event_rank = 1
"""

SILVER_TICKETS = """
WITH typed AS (
    SELECT
        TRY_CAST(ticket_id AS BIGINT) AS ticket_id,
        TRY_CAST(customer_id AS BIGINT) AS customer_id,
        TRY_CAST(created_at AS TIMESTAMP) AS created_at,
        TRY_CAST(resolution_time_hours AS DOUBLE) AS resolution_time_hours,
        TRY_CAST(satisfaction_score AS INT) AS satisfaction_score
    FROM raw_tickets
), events AS (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY ticket_id
        ORDER BY created_at DESC NULLS LAST, resolution_time_hours DESC NULLS LAST, satisfaction_score, customer_id
    ) AS event_rank
    FROM typed
)
SELECT ticket_id, customer_id, created_at, resolution_time_hours, satisfaction_score
FROM events
WHERE ticket_id IS NOT NULL
  AND customer_id IS NOT NULL
  AND created_at IS NOT NULL
  AND (resolution_time_hours IS NULL OR resolution_time_hours >= 0)
  AND event_rank = 1
"""

# Gold: customer_metrics.sql with the dbt macros expanded for DuckDB; {as_of} and {horizon} are substituted.
GOLD = """
WITH snapshots AS (
    SELECT DATE '{as_of}' AS snapshot_date, CAST(NULL AS DATE) AS label_until
    UNION ALL
    SELECT CAST(DATE '{as_of}' - INTERVAL {horizon} DAY AS DATE), DATE '{as_of}'
),
tickets AS (
    SELECT customer_id, created_at, resolution_time_hours,
           created_at + to_minutes(CAST(round(resolution_time_hours * 60) AS INTEGER)) AS resolved_at
    FROM silver_tickets
),
population AS (
    SELECT s.snapshot_date, s.label_until, c.customer_id, c.registration_date, c.country, c.status
    FROM snapshots s JOIN silver_customers c ON c.registration_date < s.snapshot_date
),
history AS (
    SELECT s.snapshot_date, t.customer_id, count(*) AS total_purchases, sum(t.amount) AS customer_lifetime_value,
           avg(t.amount) AS avg_purchase_value, max(t.transaction_date) AS last_purchase_date,
           min(t.transaction_date) AS first_purchase_date
    FROM snapshots s JOIN silver_transactions t ON t.transaction_date < s.snapshot_date
    GROUP BY s.snapshot_date, t.customer_id
),
future AS (
    SELECT s.snapshot_date, t.customer_id, count(*) AS future_purchases
    FROM snapshots s JOIN silver_transactions t
      ON t.transaction_date >= s.snapshot_date AND t.transaction_date < s.label_until
    GROUP BY s.snapshot_date, t.customer_id
),
support AS (
    SELECT s.snapshot_date, k.customer_id, count(*) AS support_tickets,
           avg(CASE WHEN k.resolved_at < CAST(s.snapshot_date AS TIMESTAMP)
                    THEN CAST(k.resolution_time_hours AS DECIMAL(14, 4)) END) AS avg_support_resolution_hours
    FROM snapshots s JOIN tickets k ON k.created_at < CAST(s.snapshot_date AS TIMESTAMP)
    GROUP BY s.snapshot_date, k.customer_id
)
SELECT
    p.customer_id,
    p.snapshot_date,
    CAST(coalesce(h.total_purchases, 0) AS BIGINT) AS total_purchases,
    CAST(coalesce(h.customer_lifetime_value, 0) AS DOUBLE) AS customer_lifetime_value,
    CAST(coalesce(h.avg_purchase_value, 0) AS DOUBLE) AS avg_purchase_value,
    CAST(date_diff('day', coalesce(h.last_purchase_date, p.registration_date), p.snapshot_date) AS BIGINT)
        AS days_since_last_purchase,
    CAST(CASE WHEN h.total_purchases IS NULL THEN 0
         ELSE h.total_purchases * 30.0 / greatest(date_diff('day', h.first_purchase_date, p.snapshot_date), 1)
    END AS DOUBLE) AS purchase_frequency,
    CAST(date_diff('day', p.registration_date, p.snapshot_date) AS BIGINT) AS account_age_days,
    CAST(coalesce(k.support_tickets, 0) AS BIGINT) AS support_tickets,
    CAST(coalesce(k.avg_support_resolution_hours, 0) AS DOUBLE) AS avg_support_resolution_hours,
    p.country,
    p.status,
    CAST(CASE WHEN p.label_until IS NULL THEN NULL WHEN f.future_purchases IS NULL THEN 1 ELSE 0 END AS INTEGER)
        AS churned
FROM population p
LEFT JOIN history h ON h.snapshot_date = p.snapshot_date AND h.customer_id = p.customer_id
LEFT JOIN future f ON f.snapshot_date = p.snapshot_date AND f.customer_id = p.customer_id
LEFT JOIN support k ON k.snapshot_date = p.snapshot_date AND k.customer_id = p.customer_id
"""


SILVER_TABLES = ("silver_customers", "silver_transactions", "silver_tickets")


def holdout_mask(keys: pd.Series, fraction: float = HOLDOUT_FRACTION, salt: str = "asgard") -> np.ndarray:
    """The holdout rule of ``TrainingContext.split``: sha256(salt:key) in the lowest ``fraction`` of the range."""
    cutoff = int(fraction * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(f"{salt}:{k}".encode()).digest()[:8], "big") < cutoff for k in keys.astype(str)),
        dtype=bool,
        count=len(keys),
    )


def load_scanner(db: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load a DuckDB scanner extension from its PyPI wheel (``duckdb-extension-<name>``): nothing downloads."""
    package = importlib.import_module(f"duckdb_extension_{name}")
    (path,) = Path(package.__file__).parent.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension")
    db.load_extension(str(path))


def read_sources(db: duckdb.DuckDBPyConnection, sources: Path) -> None:
    """Scan the SQLite files in place into raw tables, every column as text (the Silver rules cast them)."""
    load_scanner(db, "sqlite_scanner")
    db.execute("SET sqlite_all_varchar = true")
    for name, table in (("customers", "customers"), ("transactions", "transactions")):
        db.execute(f"CREATE TABLE raw_{name} AS SELECT * FROM sqlite_scan(?, '{table}')", [str(sources / f"{name}.db")])
    db.execute(
        "CREATE TABLE raw_tickets AS SELECT * FROM read_json(?, format='newline_delimited', columns={"
        "'ticket_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'created_at': 'VARCHAR', "
        "'resolution_time_hours': 'VARCHAR', 'satisfaction_score': 'VARCHAR'})",
        [str(sources / "support_tickets.jsonl")],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, required=True, help="folder written by asgard_demo.data")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 11, 11))
    parser.add_argument("--out", type=Path, help="predictions Parquet file (default: a temporary file)")
    parser.add_argument("--json", type=Path, help="write timings and metrics to this file")
    args = parser.parse_args()

    stages: dict[str, float] = {}
    start = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[name] = now - last
        last = now

    db = duckdb.connect()
    read_sources(db, args.sources)
    lap("read sources")

    for name, sql in (
        ("silver_customers", SILVER_CUSTOMERS),
        ("silver_transactions", SILVER_TRANSACTIONS),
        ("silver_tickets", SILVER_TICKETS),
    ):
        db.execute(f"CREATE TABLE {name} AS {sql}")
    silver_rows = {n: db.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in SILVER_TABLES}
    lap("silver")

    gold = db.sql(GOLD.format(as_of=args.as_of.isoformat(), horizon=HORIZON_DAYS)).df()
    lap("gold")

    labelled = gold[gold["churned"].notna()].sort_values(["snapshot_date", "customer_id"], ignore_index=True)
    held = holdout_mask(labelled["customer_id"])
    train, holdout = labelled[~held], labelled[held]
    model = RandomForestClassifier(n_estimators=100, max_depth=10, min_samples_leaf=1, random_state=42, n_jobs=-1)
    model.fit(train[FEATURES].astype("float64"), train["churned"].astype("int64"))
    proba = model.predict_proba(holdout[FEATURES].astype("float64"))[:, list(model.classes_).index(1)]
    roc_auc = float(roc_auc_score(holdout["churned"].astype("int64"), proba))
    lap("train")

    latest = gold[gold["snapshot_date"] == pd.Timestamp(args.as_of)].reset_index(drop=True)
    scores = model.predict_proba(latest[FEATURES].astype("float64"))[:, list(model.classes_).index(1)]
    predictions = pd.DataFrame(
        {
            "customer_id": latest["customer_id"],
            "churn_probability": scores,
            "prediction": (scores >= 0.5).astype("int32"),
            "risk_level": np.where(
                scores >= THRESHOLDS["high"], "high", np.where(scores >= THRESHOLDS["medium"], "medium", "low")
            ),
            "as_of_date": args.as_of,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "predictions.parquet"
        predictions.to_parquet(out, index=False)
        lap("score + write")

    total = time.perf_counter() - start
    result = {
        "stages": stages,
        "total_s": total,
        "roc_auc": roc_auc,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "gold_rows": len(gold),
        "silver_rows": silver_rows,
        "scored_rows": len(predictions),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for name, secs in stages.items():
        print(f"{name:>14}: {secs:7.2f}s")
    print(f"{'total':>14}: {total:7.2f}s  roc_auc {roc_auc:.4f}  gold rows {len(gold):,}  scored {len(predictions):,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
