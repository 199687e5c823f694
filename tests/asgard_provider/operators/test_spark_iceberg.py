"""SparkIcebergTransformOperator on real Spark: Silver SQL files, write modes, quarantine, and failures."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform, MonthTransform

from asgard_provider.exceptions import CatalogError, TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.operators.spark_iceberg import SparkIcebergTransformOperator

pytestmark = pytest.mark.spark

# Bronze rows as the ingest stage writes them from SQLite (dates and timestamps as text); comments: expected fate.
CUSTOMERS = [
    # customer_id, email, first_name, last_name, registration_date, status, country, city, created_at, updated_at
    (
        1,
        " Alice@Example.COM ",
        None,
        "Smith",
        "2021-03-04",
        "ACTIVE",
        "no",
        "Oslo",
        "2021-03-04 10:00:00",
        "2024-01-01 00:00:00",
    ),  # kept, normalised
    (
        2,
        "bob@example.com",
        "Bob",
        "Berg",
        "2022-05-06",
        "Premium",
        "SE",
        "Stockholm",
        "2022-05-06 09:00:00",
        "2024-06-01 00:00:00",
    ),  # kept (latest version)
    (
        2,
        "bob@example.com",
        "Bob",
        "Berg",
        "2022-05-06",
        "active",
        "SE",
        "Stockholm",
        "2022-05-06 09:00:00",
        "2023-01-01 00:00:00",
    ),  # duplicate (stale version)
    (
        3,
        "carol@example.com",
        "Carol",
        "Hansen",
        "2023-01-01",
        "suspended",
        "DK",
        "Copenhagen",
        "2023-01-01 08:00:00",
        "2023-02-01 00:00:00",
    ),  # kept, status -> inactive
    (
        4,
        "dave.example.com",
        "Dave",
        "Olsen",
        "2021-01-01",
        "active",
        "NO",
        "Bergen",
        "2021-01-01 08:00:00",
        "2021-02-01 00:00:00",
    ),  # invalid_email
    (
        5,
        None,
        "Eve",
        "Lee",
        "2021-01-01",
        "active",
        "NO",
        "Bergen",
        "2021-01-01 08:00:00",
        "2021-02-01 00:00:00",
    ),  # invalid_email
    (
        6,
        "frank@example.com",
        "Frank",
        "Moore",
        "2019-12-31",
        "active",
        "US",
        "Austin",
        "2019-12-31 08:00:00",
        "2020-02-01 00:00:00",
    ),  # registered_before_2020
    (
        7,
        "grace@example.com",
        "Grace",
        "White",
        None,
        "active",
        "US",
        "Austin",
        "2021-05-01 08:00:00",
        "2021-06-01 00:00:00",
    ),  # invalid_registration_date
]
CUSTOMER_COLUMNS = [
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

TRANSACTIONS = [
    # transaction_id, customer_id, order_id, amount, transaction_date, payment_method, status, created_at
    (101, 1, "ORD-101", 10.5, "2024-01-05", "Credit_Card ", "Completed", "2024-01-05 12:00:00"),  # kept
    (102, 2, "ORD-102", 20.0, "2024-02-10", "paypal", "completed", "2024-02-10 13:00:00"),  # kept
    (103, 1, "ORD-103", -5.0, "2024-03-01", "paypal", "completed", "2024-03-01 10:00:00"),  # non_positive_amount
    (104, 1, "ORD-104", 0.0, "2024-03-02", "paypal", "completed", "2024-03-02 10:00:00"),  # non_positive_amount
    (105, 1, "ORD-105", None, "2024-03-03", "paypal", "completed", "2024-03-03 10:00:00"),  # invalid_amount
    (106, None, "ORD-106", 12.0, "2024-03-04", "paypal", "completed", "2024-03-04 10:00:00"),  # null_customer_id
    (107, 2, "ORD-107", 15.0, "2022-12-31", "paypal", "completed", "2022-12-31 10:00:00"),  # before_2023
    (108, 2, "ORD-108", 15.0, "2024-03-05", "paypal", "refunded", "2024-03-05 10:00:00"),  # status_not_completed
    (109, 3, "ORD-109", 15.0, "2024-03-06", "paypal", "PENDING", "2024-03-06 10:00:00"),  # status_not_completed
    (101, 1, "ORD-101", 10.5, "2024-01-05", "Credit_Card ", "Completed", "2024-01-05 12:00:00"),  # duplicate
]
TRANSACTION_COLUMNS = [
    "transaction_id",
    "customer_id",
    "order_id",
    "amount",
    "transaction_date",
    "payment_method",
    "status",
    "created_at",
]

TICKETS = [
    # ticket_id, customer_id, created_at, resolution_time_hours, satisfaction_score
    (201, 1, datetime(2024, 1, 6, 9, 30), 5.5, 4),  # kept
    (202, 2, datetime(2024, 2, 11, 8, 0), None, None),  # kept (still open)
    (203, None, datetime(2024, 2, 12, 8, 0), 3.0, 2),  # null_customer_id
    (204, 3, datetime(2024, 2, 13, 8, 0), -1.0, 3),  # negative_resolution_time
    (201, 1, datetime(2024, 1, 6, 9, 30), 5.5, 4),  # duplicate
]
TICKET_COLUMNS = ["ticket_id", "customer_id", "created_at", "resolution_time_hours", "satisfaction_score"]


def _table(rows: list[tuple[Any, ...]], columns: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({c: pa.array([r[i] for r in rows], types.get(c, pa.string())) for i, c in enumerate(columns)})


@pytest.fixture(scope="module")
def bronze(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ASGARD_HOME for the module (so all tests share one Spark session) with dirty Bronze tables."""
    home = tmp_path_factory.mktemp("spark") / "asgard"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASGARD_HOME", str(home))
        hook = IcebergHook()
        ids = {"customer_id": pa.int64(), "transaction_id": pa.int64(), "ticket_id": pa.int64()}
        hook.write("bronze.customers", [_table(CUSTOMERS, CUSTOMER_COLUMNS, ids)])
        hook.write("bronze.transactions", [_table(TRANSACTIONS, TRANSACTION_COLUMNS, {**ids, "amount": pa.float64()})])
        hook.write(
            "bronze.support_tickets",
            [
                _table(
                    TICKETS,
                    TICKET_COLUMNS,
                    {
                        **ids,
                        "created_at": pa.timestamp("us"),
                        "resolution_time_hours": pa.float64(),
                        "satisfaction_score": pa.int64(),
                    },
                )
            ],
        )
        yield home


def _rows(name: str, key: str) -> list[dict[str, Any]]:
    return sorted(IcebergHook().load_table(name).scan().to_arrow().to_pylist(), key=lambda r: r[key])


def _reasons(name: str) -> Counter[str]:
    return Counter(IcebergHook().load_table(name).scan().to_arrow().column("_rejected_reason").to_pylist())


def _run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("task_id", "transform")
    return SparkIcebergTransformOperator(**kwargs).execute({})  # type: ignore[arg-type]


def _exists(name: str) -> bool:
    return IcebergHook().table_exists(name)


def test_customers_cleaned(bronze: Path) -> None:
    result = _run(
        sql="customer_churn/customers_cleaned.sql", output_table="silver.customers_cleaned", partition_by=["country"]
    )
    assert result["output_table"] == "silver.customers_cleaned"
    assert (result["rows_written"], result["rows_quarantined"]) == (3, 5)
    assert result["quarantine_table"] == "silver.customers_cleaned_quarantine"
    table = IcebergHook().load_table("silver.customers_cleaned")
    assert result["snapshot_id"] == table.current_snapshot().snapshot_id
    assert [f.name for f in table.schema().fields] == [
        "customer_id",
        "email",
        "first_name",
        "last_name",
        "registration_date",
        "status",
        "country",
        "city",
        "created_at",
        "processed_at",
    ]
    spec = table.spec().fields
    assert len(spec) == 1 and isinstance(spec[0].transform, IdentityTransform)
    assert table.schema().find_field(spec[0].source_id).name == "country"

    rows = _rows("silver.customers_cleaned", "customer_id")
    assert [(r["customer_id"], r["email"], r["first_name"], r["status"], r["country"]) for r in rows] == [
        (1, "alice@example.com", "Unknown", "active", "NO"),
        (2, "bob@example.com", "Bob", "premium", "SE"),
        (3, "carol@example.com", "Carol", "inactive", "DK"),
    ]
    assert rows[0]["registration_date"] == date(2021, 3, 4)
    assert rows[0]["created_at"] == datetime(2021, 3, 4, 10, 0)
    assert isinstance(rows[0]["processed_at"], datetime) and rows[0]["processed_at"].tzinfo is None
    assert _reasons("silver.customers_cleaned_quarantine") == {
        "invalid_email": 2,
        "registered_before_2020": 1,
        "invalid_registration_date": 1,
        "duplicate": 1,
    }
    stale = [r for r in _rows("silver.customers_cleaned_quarantine", "customer_id") if r["customer_id"] == 2]
    assert [r["status"] for r in stale] == ["active"]


def test_transactions_cleaned(bronze: Path) -> None:
    result = _run(
        sql="customer_churn/transactions_cleaned.sql",
        output_table="silver.transactions_cleaned",
        partition_by=["months(transaction_date)"],
    )
    assert (result["rows_written"], result["rows_quarantined"]) == (2, len(TRANSACTIONS) - 2)
    rows = _rows("silver.transactions_cleaned", "transaction_id")
    assert [(r["transaction_id"], r["customer_id"], r["amount"], r["payment_method"], r["status"]) for r in rows] == [
        (101, 1, Decimal("10.50"), "credit_card", "completed"),
        (102, 2, Decimal("20.00"), "paypal", "completed"),
    ]
    assert rows[0]["transaction_date"] == date(2024, 1, 5)
    table = IcebergHook().load_table("silver.transactions_cleaned")
    assert str(table.schema().find_field("amount").field_type) == "decimal(10, 2)"
    (field,) = table.spec().fields
    assert isinstance(field.transform, MonthTransform)
    assert table.schema().find_field(field.source_id).name == "transaction_date"
    assert _reasons("silver.transactions_cleaned_quarantine") == {
        "non_positive_amount": 2,
        "invalid_amount": 1,
        "null_customer_id": 1,
        "before_2023": 1,
        "status_not_completed": 2,
        "duplicate": 1,
    }


def test_support_tickets_cleaned(bronze: Path) -> None:
    result = _run(sql="customer_churn/support_tickets_cleaned.sql", output_table="silver.support_tickets_cleaned")
    assert (result["rows_written"], result["rows_quarantined"]) == (2, 3)
    rows = _rows("silver.support_tickets_cleaned", "ticket_id")
    assert [(r["ticket_id"], r["customer_id"], r["resolution_time_hours"], r["satisfaction_score"]) for r in rows] == [
        (201, 1, 5.5, 4),
        (202, 2, None, None),
    ]
    assert rows[0]["created_at"] == datetime(2024, 1, 6, 9, 30)
    assert _reasons("silver.support_tickets_cleaned_quarantine") == {
        "null_customer_id": 1,
        "negative_resolution_time": 1,
        "duplicate": 1,
    }


def test_overwrite_twice_keeps_the_same_rows(bronze: Path) -> None:
    sql = "SELECT transaction_id, amount FROM iceberg.bronze.transactions"
    first = _run(sql=sql, output_table="scratch.overwritten")
    second = _run(sql=sql, output_table="scratch.overwritten")
    assert first["rows_written"] == second["rows_written"] == len(TRANSACTIONS)
    assert second["rows_quarantined"] == 0 and second["quarantine_table"] is None
    assert len(_rows("scratch.overwritten", "transaction_id")) == len(TRANSACTIONS)
    assert second["snapshot_id"] != first["snapshot_id"]
    assert not _exists("scratch.overwritten_quarantine")


def test_overwrite_replaces_quarantine_too(bronze: Path) -> None:
    sql = (
        "SELECT transaction_id, CASE WHEN amount > {{ sql_params.min }} THEN NULL ELSE 'too_small' END "
        "AS _rejected_reason FROM iceberg.bronze.transactions"
    )
    _run(sql=sql, output_table="scratch.split", sql_params={"min": 0})
    assert _reasons("scratch.split_quarantine") == {"too_small": 3}  # -5, 0 and NULL
    result = _run(sql=sql, output_table="scratch.split", sql_params={"min": 100})
    assert (result["rows_written"], result["rows_quarantined"]) == (0, len(TRANSACTIONS))
    assert _rows("scratch.split", "transaction_id") == []
    assert _reasons("scratch.split_quarantine") == {"too_small": len(TRANSACTIONS)}


def test_append_adds_rows_and_quarantine(bronze: Path) -> None:
    sql = (
        "SELECT transaction_id, IF(customer_id IS NULL, 'null_customer_id', NULL) AS _rejected_reason "
        "FROM iceberg.bronze.transactions"
    )
    for _ in range(2):
        result = _run(
            sql=sql, output_table="scratch.appended", mode="append", quarantine_table="scratch.appended_rejects"
        )
    assert (result["rows_written"], result["rows_quarantined"]) == (len(TRANSACTIONS) - 1, 1)
    assert len(_rows("scratch.appended", "transaction_id")) == 2 * (len(TRANSACTIONS) - 1)
    assert _reasons("scratch.appended_rejects") == {"null_customer_id": 2}


def test_merge_updates_by_key_without_duplicates(bronze: Path) -> None:
    first = _run(
        sql="SELECT * FROM VALUES (1, 'a'), (2, 'b'), (NULL, 'n') AS t(id, v)",
        output_table="scratch.merged",
        mode="merge",
        merge_keys=["id"],
        partition_by=["bucket(4, id)"],
    )
    assert first["rows_written"] == 3
    second = _run(
        sql="SELECT * FROM VALUES (2, 'B'), (3, 'c'), (NULL, 'N') AS t(id, v)",
        output_table="scratch.merged",
        mode="merge",
        merge_keys=["id"],
        partition_by=["bucket(4, id)"],
    )
    assert second["rows_written"] == 3
    rows = IcebergHook().load_table("scratch.merged").scan().to_arrow().to_pylist()
    assert sorted((r["id"] if r["id"] is not None else -1, r["v"]) for r in rows) == [
        (-1, "N"),
        (1, "a"),
        (2, "B"),
        (3, "c"),
    ]
    (field,) = IcebergHook().load_table("scratch.merged").spec().fields
    assert isinstance(field.transform, BucketTransform) and field.transform.num_buckets == 4


def test_merge_refuses_duplicate_keys(bronze: Path) -> None:
    with pytest.raises(TransformError, match=r"merge_keys \['id'\] are not unique.*id=1"):
        _run(
            sql="SELECT * FROM VALUES (1, 'a'), (1, 'b') AS t(id, v)",
            output_table="scratch.merge_dupes",
            mode="merge",
            merge_keys=["id"],
        )
    assert not _exists("scratch.merge_dupes")


def test_partition_transforms(bronze: Path) -> None:
    _run(
        sql="SELECT * FROM iceberg.bronze.support_tickets",
        output_table="scratch.partitioned",
        partition_by=["bucket(16, customer_id)", "days(created_at)"],
    )
    spec = IcebergHook().load_table("scratch.partitioned").spec().fields
    assert isinstance(spec[0].transform, BucketTransform) and spec[0].transform.num_buckets == 16
    assert isinstance(spec[1].transform, DayTransform)


def test_sql_file_rendered_with_context_and_sql_params(bronze: Path, tmp_path: Path) -> None:
    path = tmp_path / "recent.sql"
    path.write_text(
        "SELECT transaction_id FROM iceberg.bronze.transactions\n"
        "WHERE CAST(transaction_date AS DATE) >= DATE'{{ sql_params.since }}' AND status = '{{ params.status }}'\n"
    )
    op = SparkIcebergTransformOperator(
        task_id="recent",
        sql=str(path),
        output_table="scratch.recent",
        sql_params={"since": "{{ ds }}"},
        params={"status": "completed"},
    )
    context: Any = {"ds": "2024-02-01", "params": {"status": "completed"}}
    op.render_template_fields(context)
    assert op.sql_params == {"since": "2024-02-01"}
    assert "DATE'2024-02-01'" in op.sql
    result = op.execute(context)
    assert result["rows_written"] == 5
    assert {r["transaction_id"] for r in _rows("scratch.recent", "transaction_id")} == {102, 103, 104, 105, 106}


def test_relative_sql_path_resolved_in_a_dag(bronze: Path) -> None:
    from airflow.sdk import DAG

    with DAG(dag_id="spark_templates", schedule=None) as dag:
        op = SparkIcebergTransformOperator(
            task_id="clean", sql="customer_churn/customers_cleaned.sql", output_table="silver.customers_cleaned"
        )
    # The task runner renders with the Dag's Jinja environment, which only knows the Dag folder.
    op.render_template_fields({}, jinja_env=dag.get_template_env())  # type: ignore[arg-type]
    assert "FROM iceberg.bronze.customers" in op.sql
    assert op.sql_source == "customer_churn/customers_cleaned.sql"


def test_syntax_error_names_file_and_line(bronze: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken_syntax.sql"
    path.write_text("SELECT customer_id\nFROM iceberg.bronze.customers\nWHERE status = = 'x'\n")
    with pytest.raises(TransformError, match=r"broken_syntax\.sql \(line 3, position \d+\)") as err:
        _run(sql=str(path), output_table="scratch.never_syntax")
    assert "PARSE_SYNTAX_ERROR" in str(err.value)
    assert not _exists("scratch.never_syntax")
    assert not _exists("scratch.never_syntax_quarantine")


def test_missing_table_names_table(bronze: Path, tmp_path: Path) -> None:
    path = tmp_path / "missing_table.sql"
    path.write_text("SELECT *\nFROM iceberg.bronze.nope\n")
    with pytest.raises(TransformError, match=r"missing_table\.sql \(line 2.*TABLE_OR_VIEW_NOT_FOUND.*bronze.*nope"):
        _run(sql=str(path), output_table="scratch.never_missing")
    assert not _exists("scratch.never_missing")


def test_missing_column_is_reported(bronze: Path) -> None:
    with pytest.raises(TransformError, match=r"<inline SQL>.*UNRESOLVED_COLUMN.*no_such_column"):
        _run(sql="SELECT no_such_column FROM iceberg.bronze.customers", output_table="scratch.never_column")
    assert not _exists("scratch.never_column")


def test_statements_other_than_select_are_refused(bronze: Path) -> None:
    with pytest.raises(TransformError, match="DropTable statement; a transform must be a single SELECT"):
        _run(sql="DROP TABLE iceberg.bronze.customers", output_table="scratch.never_drop")
    assert _exists("bronze.customers")


def test_missing_sql_file(bronze: Path) -> None:
    with pytest.raises(TransformError, match=r"SQL file customer_churn/nope\.sql not found"):
        _run(sql="customer_churn/nope.sql", output_table="scratch.never_file")


def test_partition_column_must_be_in_output(bronze: Path) -> None:
    with pytest.raises(TransformError, match=re.escape("partition_by 'days(signup_ts)' names column 'signup_ts'")):
        _run(
            sql="SELECT customer_id FROM iceberg.bronze.customers",
            output_table="scratch.never_partition",
            partition_by=["days(signup_ts)"],
        )
    assert not _exists("scratch.never_partition")


def test_invalid_table_name(bronze: Path) -> None:
    with pytest.raises(CatalogError, match=r"invalid table name 'silver\.bad-name'"):
        _run(sql="SELECT 1 AS x", output_table="silver.bad-name")


def test_merge_needs_keys() -> None:
    with pytest.raises(ValueError, match="merge_keys"):
        SparkIcebergTransformOperator(task_id="m", sql="SELECT 1", output_table="a.b", mode="merge")
    with pytest.raises(ValueError, match="mode 'upsert'"):
        SparkIcebergTransformOperator(task_id="m", sql="SELECT 1", output_table="a.b", mode="upsert")


def test_template_fields() -> None:
    assert {"sql", "output_table", "sql_params"} <= set(SparkIcebergTransformOperator.template_fields)
    assert tuple(SparkIcebergTransformOperator.template_ext) == (".sql",)


def test_secret_parameter_is_bound_by_spark_never_pasted_into_the_sql(
    bronze: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    monkeypatch.setenv("AIRFLOW_VAR_TEST_SALT", "s3cr3t-salt")
    op = SparkIcebergTransformOperator(
        task_id="pseudonymise",
        sql="SELECT customer_id, sha2(concat(:salt, ':', CAST(customer_id AS STRING)), 256) AS k "
        "FROM iceberg.bronze.customers",
        output_table="scratch.pseudonyms",
        sql_secrets={"salt": {"variable": "test_salt"}},
    )
    op.render_template_fields({})  # type: ignore[arg-type]
    assert "s3cr3t" not in op.sql
    op.execute({})  # type: ignore[arg-type]
    rows = _rows("scratch.pseudonyms", "customer_id")
    assert rows[0]["k"] == hashlib.sha256(f"s3cr3t-salt:{rows[0]['customer_id']}".encode()).hexdigest()


def test_secret_parameter_never_reaches_an_error(bronze: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_TEST_SALT", "s3cr3t-salt")
    with pytest.raises(TransformError, match="DATATYPE_MISMATCH") as err:
        _run(
            sql="SELECT :salt + array(1) AS bad FROM iceberg.bronze.customers",
            output_table="scratch.never_secret",
            sql_secrets={"salt": {"variable": "test_salt"}},
        )
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(TransformError, match=r":salt needs the Airflow Variable 'no_such_salt'"):
        _run(
            sql="SELECT :salt AS s FROM iceberg.bronze.customers",
            output_table="scratch.never_secret",
            sql_secrets={"salt": {"variable": "no_such_salt"}},
        )
