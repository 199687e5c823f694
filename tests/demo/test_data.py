"""The demo source generator: row counts, planted dirty rows, determinism, server loads and a learnable signal."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.json as pajson
import pytest

from asgard_demo import data as demo_data
from asgard_demo.data import DIRTY_RATES, file_digest, generate, load_mysql, load_postgres

AS_OF = date(2025, 11, 11)
SMALL = {"customers": 2_000, "transactions": 24_000, "tickets": 900}
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
MYSQL_SERVER = "mysql+pymysql://root@127.0.0.1:3306"


def _read(path: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(path) as conn:
        return pd.read_sql(f"SELECT * FROM {table}", conn)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "sources"
    return out, generate(out, as_of=AS_OF, seed=11, **SMALL)


@pytest.fixture(scope="module")
def frames(small: tuple[Path, dict]) -> dict[str, pd.DataFrame]:
    out, _ = small
    return {
        "customers": _read(out / "customers.db", "customers"),
        "transactions": _read(out / "transactions.db", "transactions"),
        "support_tickets": pd.read_json(out / "support_tickets.jsonl", lines=True, dtype=False, convert_dates=False),
    }


def _silver(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The Silver rules of the use case guide, in pandas."""
    c = frames["customers"]
    c = c[c["email"].notna() & c["email"].str.contains("@", na=False) & (c["registration_date"] >= "2020-01-01")]
    c = c.sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    t = frames["transactions"]
    t = t[
        (t["amount"] > 0)
        & t["customer_id"].notna()
        & (t["status"].str.lower() == "completed")
        & (t["transaction_date"] >= "2023-01-01")
    ].drop_duplicates("transaction_id")
    k = frames["support_tickets"]
    k = k[k["customer_id"].notna()].drop_duplicates("ticket_id")
    return {"customers": c, "transactions": t, "support_tickets": k}


def test_row_counts_match_request_and_manifest(small: tuple[Path, dict], frames: dict[str, pd.DataFrame]) -> None:
    out, manifest = small
    assert manifest["customers"] == len(frames["customers"]) == SMALL["customers"]
    assert manifest["transactions"] == len(frames["transactions"]) == SMALL["transactions"]
    assert manifest["support_tickets"] == len(frames["support_tickets"]) == SMALL["tickets"]
    assert manifest["distinct_customers"] == frames["customers"]["customer_id"].nunique()
    assert frames["customers"]["customer_id"].min() == 1001
    assert frames["transactions"]["transaction_id"].min() == 5001
    assert frames["support_tickets"]["ticket_id"].min() == 7001
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["as_of"] == "2025-11-11"
    assert set(on_disk["dirty"]) == {"customers", "transactions", "support_tickets"}


def test_columns_follow_the_seed(frames: dict[str, pd.DataFrame]) -> None:
    assert list(frames["customers"].columns) == [
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "registration_date",
        "status",
        "country",
        "city",
        "created_at",
        "updated_at",
    ]
    assert list(frames["transactions"].columns) == [
        "transaction_id",
        "customer_id",
        "order_id",
        "amount",
        "transaction_date",
        "payment_method",
        "status",
        "created_at",
    ]
    assert list(frames["support_tickets"].columns) == [
        "ticket_id",
        "customer_id",
        "created_at",
        "resolution_time_hours",
        "satisfaction_score",
    ]
    t = frames["transactions"]
    assert t["transaction_date"].max() <= "2025-11-11"
    assert t["transaction_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert t["created_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
    assert (t["created_at"].str[:10] == t["transaction_date"]).all()
    assert len(t["payment_method"].unique()) > 5  # mixed casing
    assert {"completed", "refunded", "pending"} <= set(t["status"].str.lower())
    c = frames["customers"]
    assert {"active", "premium", "inactive"} <= set(c["status"])
    assert (c["country"].str.len() == 2).all()
    assert c["country"].str.islower().any()
    assert (c["created_at"] <= c["updated_at"]).all()
    assert c["registration_date"].max() <= "2025-11-11"
    k = frames["support_tickets"]
    assert k["created_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").all()
    assert k["satisfaction_score"].dropna().between(1, 5).all()
    assert (k["resolution_time_hours"].dropna() > 0).all()


def test_support_api_file_reads_as_typed_json_lines(small: tuple[Path, dict]) -> None:
    out, manifest = small
    table = pajson.read_json(out / "support_tickets.jsonl")
    assert table.num_rows == manifest["support_tickets"]
    assert str(table.schema.field("ticket_id").type) == "int64"
    assert str(table.schema.field("customer_id").type) == "int64"
    assert str(table.schema.field("resolution_time_hours").type) == "double"
    assert table.column("customer_id").null_count == manifest["dirty"]["support_tickets"]["null_customer_id"]


def test_dirty_customers_are_planted_at_their_rates(small: tuple[Path, dict], frames: dict[str, pd.DataFrame]) -> None:
    dirty = small[1]["dirty"]["customers"]
    c = frames["customers"]
    bad_email = c["email"].isna() | ~c["email"].str.contains("@", na=False)
    assert bad_email.sum() == dirty["invalid_email"]
    assert c["email"].isna().sum() > 0 and (c["email"].notna() & bad_email).sum() > 0  # both kinds
    assert (c["registration_date"] < "2020-01-01").sum() == dirty["registered_before_2020"] > 0
    assert len(c) - c["customer_id"].nunique() == dirty["duplicate_customer_id"] > 0
    assert dirty["invalid_email"] == pytest.approx(DIRTY_RATES["customers"]["invalid_email"] * len(c), abs=1)
    assert dirty["duplicate_customer_id"] == pytest.approx(0.003 * len(c), abs=1)
    # A duplicate is an older version: same id, earlier updated_at, otherwise valid.
    dups = c[c["customer_id"].duplicated(keep=False)]
    for _, versions in dups.groupby("customer_id"):
        assert versions["updated_at"].nunique() == len(versions)
        assert versions["email"].str.contains("@").all()


def test_dirty_transactions_are_planted_at_their_rates(
    small: tuple[Path, dict], frames: dict[str, pd.DataFrame]
) -> None:
    dirty = small[1]["dirty"]["transactions"]
    t = frames["transactions"]
    n = len(t)
    assert (t["amount"] <= 0).sum() == dirty["non_positive_amount"]
    assert t["customer_id"].isna().sum() == dirty["null_customer_id"]
    assert (t["status"].str.lower() != "completed").sum() == dirty["not_completed"]
    assert (t["transaction_date"] < "2023-01-01").sum() == dirty["before_2023"] > 0
    assert n - t["transaction_id"].nunique() == dirty["duplicate"]
    assert t.duplicated().sum() == dirty["duplicate"]  # exact copies, every column
    for name, rate in DIRTY_RATES["transactions"].items():
        assert dirty[name] == pytest.approx(rate * n, abs=1), name
    assert t["order_id"].str.startswith("ORD-").all()


def test_dirty_tickets_are_planted(small: tuple[Path, dict], frames: dict[str, pd.DataFrame]) -> None:
    dirty = small[1]["dirty"]["support_tickets"]
    k = frames["support_tickets"]
    assert k["customer_id"].isna().sum() == dirty["null_customer_id"] > 0
    assert len(k) - k["ticket_id"].nunique() == dirty["duplicate"] > 0
    assert k.duplicated().sum() == dirty["duplicate"]


def test_every_dirty_row_has_exactly_one_defect(small: tuple[Path, dict], frames: dict[str, pd.DataFrame]) -> None:
    manifest = small[1]
    silver = _silver(frames)
    for source, kept in silver.items():
        assert len(kept) == manifest[source] - sum(manifest["dirty"][source].values()), source
    assert (
        len(silver["customers"])
        == manifest["distinct_customers"]
        - manifest["dirty"]["customers"]["invalid_email"]
        - manifest["dirty"]["customers"]["registered_before_2020"]
    )


def test_same_seed_gives_identical_files(tmp_path: Path, small: tuple[Path, dict]) -> None:
    first, _ = small
    again = tmp_path / "again"
    generate(again, as_of=AS_OF, seed=11, **SMALL)
    for name in ("customers.db", "transactions.db", "support_tickets.jsonl", "manifest.json"):
        assert file_digest(first / name) == file_digest(again / name), name
    other = tmp_path / "other"
    generate(other, as_of=AS_OF, seed=12, **SMALL)
    assert file_digest(first / "transactions.db") != file_digest(other / "transactions.db")


def test_rerun_replaces_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "sources"
    generate(out, as_of=AS_OF, seed=1, customers=300, transactions=3_000, tickets=100)
    generate(out, as_of=AS_OF, seed=1, customers=400, transactions=4_000, tickets=150)
    assert len(_read(out / "customers.db", "customers")) == 400
    assert len(_read(out / "transactions.db", "transactions")) == 4_000
    assert sorted(p.name for p in out.iterdir()) == [
        "customers.db",
        "manifest.json",
        "support_tickets.jsonl",
        "transactions.db",
    ]


def test_invalid_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 10 customers"):
        generate(tmp_path, as_of=AS_OF, seed=1, customers=5, transactions=100, tickets=10)
    with pytest.raises(ValueError, match="as_of"):
        generate(tmp_path, as_of=date(2023, 2, 1), seed=1, customers=100, transactions=1_000, tickets=10)


def test_cli_writes_sources_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = demo_data.main(["--out", str(out), "--scale", "0.005", "--as-of", "2025-11-11", "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "customers" in printed and "churn rate at 2025-09-12" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["customers"] == 500 and manifest["transactions"] == 6_000 and manifest["support_tickets"] == 225


# --------------------------------------------------------------------------------------------------- signal


def _features(silver: dict[str, pd.DataFrame], snapshot: pd.Timestamp) -> pd.DataFrame:
    """RFM + tenure + ticket features at ``snapshot`` and the 60-day churn label, as gold computes them."""
    c, t, k = silver["customers"], silver["transactions"].copy(), silver["support_tickets"].copy()
    t["day"] = pd.to_datetime(t["transaction_date"])
    k["day"] = pd.to_datetime(k["created_at"]).dt.tz_localize(None).dt.normalize()
    c = c[pd.to_datetime(c["registration_date"]) <= snapshot]
    past = (
        t[t["day"] <= snapshot]
        .groupby("customer_id")
        .agg(
            purchases=("amount", "size"),
            value=("amount", "sum"),
            avg_value=("amount", "mean"),
            last=("day", "max"),
            first=("day", "min"),
        )
    )
    tickets = (
        k[k["day"] <= snapshot]
        .groupby("customer_id")
        .agg(tickets=("ticket_id", "size"), resolution=("resolution_time_hours", "mean"))
    )
    f = (
        c[["customer_id", "registration_date"]]
        .merge(past, on="customer_id", how="left")
        .merge(tickets, on="customer_id", how="left")
    )
    f["recency"] = (snapshot - f["last"]).dt.days.fillna(10_000)
    f["tenure"] = (snapshot - pd.to_datetime(f["registration_date"])).dt.days
    f["frequency"] = f["purchases"] / ((snapshot - f["first"]).dt.days / 30.0).clip(lower=1.0)
    f = f.fillna({"purchases": 0, "value": 0, "avg_value": 0, "frequency": 0, "tickets": 0, "resolution": 0})
    future = t[(t["day"] > snapshot) & (t["day"] <= snapshot + pd.Timedelta(days=60))]["customer_id"].unique()
    f["churned"] = (~f["customer_id"].isin(future)).astype(int)
    return f


def test_churn_label_is_learnable_from_point_in_time_features(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    out = tmp_path / "signal"
    manifest = generate(out, as_of=AS_OF, seed=5, customers=5_000, transactions=60_000, tickets=2_250)
    frames = {
        "customers": _read(out / "customers.db", "customers"),
        "transactions": _read(out / "transactions.db", "transactions"),
        "support_tickets": pd.read_json(out / "support_tickets.jsonl", lines=True, dtype=False, convert_dates=False),
    }
    snapshot = pd.Timestamp(AS_OF - timedelta(days=60))
    data = _features(_silver(frames), snapshot)
    rate = data["churned"].mean()
    assert 0.10 <= rate <= 0.25
    assert rate == pytest.approx(manifest["signal"]["churn_rate"], abs=0.02)

    columns = ["purchases", "value", "avg_value", "recency", "frequency", "tenure", "tickets", "resolution"]
    x_train, x_test, y_train, y_test = train_test_split(
        data[columns], data["churned"], test_size=0.3, random_state=0, stratify=data["churned"]
    )
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(x_train, y_train)
    forest_auc = roc_auc_score(y_test, forest.predict_proba(x_test)[:, 1])
    assert 0.75 < forest_auc < 0.97  # learnable, but not a giveaway
    logistic = LogisticRegression(max_iter=2_000).fit(np.log1p(x_train.clip(lower=0)), y_train)
    assert roc_auc_score(y_test, logistic.predict_proba(np.log1p(x_test.clip(lower=0)))[:, 1]) > 0.72
    # Support tickets carry signal on their own (churners complain first).
    tickets_only = RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0).fit(
        x_train[["tickets", "resolution"]], y_train
    )
    assert roc_auc_score(y_test, tickets_only.predict_proba(x_test[["tickets", "resolution"]])[:, 1]) > 0.55


# --------------------------------------------------------------------------------------------------- servers


@pytest.fixture
def pg_database() -> Iterator[str]:
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"asgard_test_{uuid.uuid4().hex[:10]}"
    yield name
    conn = psycopg2.connect(f"{PG_SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture
def mysql_database() -> Iterator[str]:
    pymysql = pytest.importorskip("pymysql")
    name = f"asgard_test_{uuid.uuid4().hex[:10]}"
    yield name
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.mark.postgres
def test_customers_load_into_postgres_with_real_types(tmp_path: Path, pg_database: str) -> None:
    import psycopg2

    url = f"{PG_SERVER}/{pg_database}"
    manifest = generate(
        tmp_path / "src", as_of=AS_OF, seed=2, customers=1_500, transactions=15_000, tickets=500, postgres_url=url
    )
    assert manifest["postgres_rows"] == 1_500
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name, data_type, numeric_precision FROM information_schema.columns "
                "WHERE table_name = 'customers' ORDER BY ordinal_position"
            )
            types = {name: kind for name, kind, _ in cur.fetchall()}
            cur.execute(
                "SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE email IS NULL), "
                "min(registration_date), max(updated_at) FROM customers"
            )
            rows, distinct, null_emails, first_registration, last_update = cur.fetchone()
    finally:
        conn.close()
    assert types == {
        "customer_id": "bigint",
        "email": "character varying",
        "first_name": "character varying",
        "last_name": "character varying",
        "registration_date": "date",
        "status": "character varying",
        "country": "character varying",
        "city": "character varying",
        "created_at": "timestamp without time zone",
        "updated_at": "timestamp without time zone",
    }
    assert rows == 1_500 and distinct == manifest["distinct_customers"]
    assert 0 < null_emails < manifest["dirty"]["customers"]["invalid_email"] + 1
    assert first_registration < date(2020, 1, 1)
    assert last_update.date() <= AS_OF
    # Loading again replaces the table instead of appending; frames read back from SQLite load too
    # (nullable ids arrive as floats there).
    sqlite_rows = _read(tmp_path / "src" / "customers.db", "customers")
    assert load_postgres(url, sqlite_rows.head(100), table="customers") == 100
    transactions = _read(tmp_path / "src" / "transactions.db", "transactions")
    assert transactions["customer_id"].dtype == "float64"
    assert load_postgres(url, transactions, table="transactions") == 15_000
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE customer_id IS NULL), sum(amount), "
                "pg_typeof(min(amount))::text FROM transactions"
            )
            nulls, total, amount_type = cur.fetchone()
    finally:
        conn.close()
    assert nulls == manifest["dirty"]["transactions"]["null_customer_id"]
    assert float(total) == pytest.approx(transactions["amount"].sum(), abs=0.01)
    assert amount_type == "numeric"


@pytest.mark.mysql
@pytest.mark.parametrize("local_infile", [True, False], ids=["load-data", "insert-batches"])
def test_transactions_load_into_mariadb_with_real_types(
    tmp_path: Path, mysql_database: str, local_infile: bool
) -> None:
    import pymysql

    url = f"{MYSQL_SERVER}/{mysql_database}"
    out = tmp_path / "src"
    manifest = generate(out, as_of=AS_OF, seed=4, customers=1_000, transactions=12_000, tickets=300)
    frame = _read(out / "transactions.db", "transactions")
    assert load_mysql(url, frame, local_infile=local_infile) == 12_000
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=mysql_database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name, column_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'transactions' ORDER BY ordinal_position",
                (mysql_database,),
            )
            types = dict(cur.fetchall())
            cur.execute(
                "SELECT SUM(customer_id IS NULL), SUM(amount <= 0), COUNT(*) - COUNT(DISTINCT transaction_id), "
                "ROUND(SUM(amount), 2), MAX(transaction_date) FROM transactions"
            )
            nulls, non_positive, duplicates, total, last_day = cur.fetchone()
    finally:
        conn.close()
    assert types == {
        "transaction_id": "bigint(20)",
        "customer_id": "bigint(20)",
        "order_id": "varchar(32)",
        "amount": "decimal(10,2)",
        "transaction_date": "date",
        "payment_method": "varchar(32)",
        "status": "varchar(32)",
        "created_at": "datetime",
    }
    dirty = manifest["dirty"]["transactions"]
    assert (int(nulls), int(non_positive), duplicates) == (
        dirty["null_customer_id"],
        dirty["non_positive_amount"],
        dirty["duplicate"],
    )
    assert float(total) == pytest.approx(frame["amount"].sum(), abs=0.01)
    assert last_day <= AS_OF


@pytest.mark.mysql
def test_generate_loads_transactions_into_mariadb(tmp_path: Path, mysql_database: str) -> None:
    manifest = generate(
        tmp_path / "src",
        as_of=AS_OF,
        seed=4,
        customers=500,
        transactions=6_000,
        tickets=100,
        mysql_url=f"{MYSQL_SERVER}/{mysql_database}",
    )
    assert manifest["mysql_rows"] == 6_000
    assert json.loads((tmp_path / "src" / "manifest.json").read_text())["mysql_rows"] == 6_000


def test_unreachable_server_raises_source_error_naming_the_database(tmp_path: Path) -> None:
    from asgard_provider.exceptions import SourceError

    frame = pd.DataFrame({name: [] for name, _ in demo_data.TABLE_COLUMNS["customers"]})
    with pytest.raises(SourceError, match="asgard_nowhere"):
        load_postgres("postgresql://postgres@127.0.0.1:1/asgard_nowhere", frame)
