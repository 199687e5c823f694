"""The Gold dbt project on real dbt-duckdb, reading Silver from Iceberg and committing Gold to Iceberg."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.dbt.cosmos import ensure_manifest
from asgard_provider.exceptions import TransformError
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.settings import include_dir

PROJECT = include_dir() / "dbt" / "customer_churn"
AS_OF = "2025-11-11"  # labelled snapshot: 2025-09-12 (60 days earlier)


def _silver() -> None:
    hook = IcebergHook()
    d = date.fromisoformat
    hook.write(
        "silver.customers_cleaned",
        [
            pa.table(
                {
                    "customer_id": pa.array([1, 2, 3, 4], pa.int64()),
                    "registration_date": pa.array(
                        [d("2024-01-01"), d("2025-01-01"), d("2025-10-01"), d("2025-11-11")], pa.date32()
                    ),
                    "country": ["NO", "SE", "DK", "NO"],
                    "status": ["active", "active", "active", "premium"],
                }
            )
        ],
    )
    hook.write(
        "silver.transactions_cleaned",
        [
            pa.table(
                {
                    "transaction_id": pa.array([10, 11, 12, 20, 21], pa.int64()),
                    "customer_id": pa.array([1, 1, 1, 2, 2], pa.int64()),
                    "amount": pa.array([100, 50, 20, 30, 99], pa.decimal128(10, 2)),
                    "transaction_date": pa.array(
                        [d("2025-09-01"), d("2025-09-10"), d("2025-10-01"), d("2025-08-01"), d("2025-11-11")],
                        pa.date32(),
                    ),
                }
            )
        ],
    )
    hook.write(
        "silver.support_tickets_cleaned",
        [
            pa.table(
                {
                    "ticket_id": pa.array([1, 2], pa.int64()),
                    "customer_id": pa.array([1, 1], pa.int64()),
                    "created_at": pa.array([datetime(2025, 9, 1, 10), datetime(2025, 9, 11, 20)], pa.timestamp("us")),
                    "resolution_time_hours": [24.0, 10.0],
                }
            )
        ],
    )


def _dbt_build(tmp_path: Path, as_of: str) -> object:
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    args = [
        "build",
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(PROJECT),
        "--target-path",
        str(tmp_path / "target"),
        "--log-path",
        str(tmp_path / "logs"),
        "--vars",
        f"{{as_of: '{as_of}'}}",
    ]
    with environ({"ASGARD_HOME": os.environ["ASGARD_HOME"], "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}):
        return dbtRunner().invoke(args)


def _gold() -> dict[tuple[str, int], dict[str, object]]:
    rows = IcebergHook().load_table("gold.customer_metrics").scan().to_arrow().to_pylist()
    return {(str(r["snapshot_date"]), r["customer_id"]): r for r in rows}


def test_gold_snapshots_are_point_in_time_and_labelled_forward(asgard_home: Path, tmp_path: Path) -> None:
    _silver()
    result = _dbt_build(tmp_path, AS_OF)
    assert result.success, result.exception

    gold = _gold()
    # Customer 3 registered after the labelled snapshot, customer 4 on the as-of day: neither is in it.
    assert sorted(gold) == [
        ("2025-09-12", 1),
        ("2025-09-12", 2),
        ("2025-11-11", 1),
        ("2025-11-11", 2),
        ("2025-11-11", 3),
    ]

    c1 = gold[("2025-09-12", 1)]
    assert c1["total_purchases"] == 2  # the 2025-10-01 purchase is after the snapshot
    assert c1["customer_lifetime_value"] == pytest.approx(150.0)
    assert c1["avg_purchase_value"] == pytest.approx(75.0)
    assert c1["days_since_last_purchase"] == 2
    assert c1["purchase_frequency"] == pytest.approx(2 * 30 / 11)
    assert c1["support_tickets"] == 2
    assert c1["avg_support_resolution_hours"] == pytest.approx(24.0)  # the 2nd ticket was resolved after it
    assert c1["churned"] == 0  # bought on 2025-10-01, inside [2025-09-12, 2025-11-11)
    assert c1["feature_timestamp"] == datetime(2025, 9, 12)

    c2 = gold[("2025-09-12", 2)]
    assert c2["churned"] == 1  # its next purchase (2025-11-11) falls outside the 60-day window
    assert c2["days_since_last_purchase"] == 42

    now = gold[("2025-11-11", 1)]
    assert now["churned"] is None  # the future of the latest snapshot is unknown
    assert now["total_purchases"] == 3
    assert now["avg_support_resolution_hours"] == pytest.approx(17.0)
    newcomer = gold[("2025-11-11", 3)]
    assert (newcomer["total_purchases"], newcomer["purchase_frequency"]) == (0, 0.0)
    assert newcomer["days_since_last_purchase"] == newcomer["account_age_days"] == 41


def test_rerun_replaces_only_its_snapshots(asgard_home: Path, tmp_path: Path) -> None:
    _silver()
    assert _dbt_build(tmp_path, "2025-10-20").success
    first = set(_gold())
    assert _dbt_build(tmp_path, AS_OF).success
    assert _dbt_build(tmp_path, AS_OF).success  # rerun of the same date: no duplicates
    gold = _gold()
    table = IcebergHook().load_table("gold.customer_metrics")
    assert len(table.scan().to_arrow()) == len(gold)
    # The 2025-10-20 run's snapshots are still there next to the two rebuilt ones.
    assert {k for k in first} <= set(gold)
    assert {s for s, _ in gold} == {"2025-08-21", "2025-10-20", "2025-09-12", "2025-11-11"}
    assert [p.name for p in table.spec().fields] == ["snapshot_date_part"]


def test_bad_as_of_fails_with_the_var_named(asgard_home: Path, tmp_path: Path) -> None:
    _silver()
    result = _dbt_build(tmp_path, "11/11/2025")
    assert not result.success
    log = (tmp_path / "logs" / "dbt.log").read_text()
    assert "var 'as_of' must be a date YYYY-MM-DD" in log
    assert not IcebergHook().table_exists("gold.customer_metrics")


def test_manifest_is_cached_until_the_project_changes(asgard_home: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    import shutil

    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    first = ensure_manifest(project)
    assert first.is_file()
    mtime = first.stat().st_mtime_ns
    assert ensure_manifest(project) == first and first.stat().st_mtime_ns == mtime
    model = project / "models" / "gold" / "customer_metrics.sql"
    model.write_text(model.read_text() + "\n-- changed\n")
    second = ensure_manifest(project)
    assert second != first and second.is_file()


def test_unparseable_project_names_the_project(asgard_home: Path, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "broken"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "gold" / "customer_metrics.sql").write_text("select {{ ref('no_such_model') }}")
    with pytest.raises(TransformError, match=r"broken does not parse"):
        ensure_manifest(project)


def _dbt_show(tmp_path: Path, sql: str, env: dict[str, str]) -> tuple[list[str], list[tuple[object, ...]]]:
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    args = ["show", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--inline", sql]
    args += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--limit", "100"]
    args += ["--vars", f"{{as_of: '{AS_OF}'}}"]
    base = {"ASGARD_HOME": os.environ["ASGARD_HOME"], "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    with environ({**base, **env}):
        result = dbtRunner().invoke(args)
    assert result.success, result.exception
    table = result.result.results[0].agate_table
    return list(table.column_names), [tuple(row) for row in table.rows]


def test_duckdb_runs_within_the_stage_s_memory_limit_threads_and_spill_folder(
    asgard_home: Path, tmp_path: Path
) -> None:
    from asgard_provider.dbt.cosmos import DUCKDB_MEMORY_ENV, DUCKDB_TEMP_ENV, DUCKDB_THREADS_ENV, _dbt_env

    _silver()
    spill = tmp_path / "spill"
    env = {DUCKDB_MEMORY_ENV: "300MB", DUCKDB_THREADS_ENV: "1", DUCKDB_TEMP_ENV: str(spill)}
    sql = "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
    _, rows = _dbt_show(tmp_path, sql, env)
    limit, threads, temp = rows[0]
    assert (str(limit).replace(" ", ""), int(threads), temp) == ("286.1MiB", 1, str(spill))  # 300 MB in MiB
    # The defaults every Cosmos task gets: 2GB, 2 threads, $ASGARD_HOME/dbt/spill.
    _, rows = _dbt_show(tmp_path, sql, _dbt_env("duckdb"))
    assert (str(rows[0][0]).replace(" ", ""), int(rows[0][1])) == ("1.8GiB", 2)
    assert rows[0][2] == str(asgard_home / "dbt" / "spill")


def _profiles(project: str) -> str:
    """The profiles.yml of an example project, or of what ``asgard new`` scaffolds (``project`` = "scaffold")."""
    from asgard_provider import scaffold

    return (
        scaffold._PROFILES if project == "scaffold" else (include_dir() / "dbt" / project / "profiles.yml").read_text()
    )


@pytest.mark.parametrize(
    "project", [*sorted(p.name for p in (include_dir() / "dbt").iterdir() if p.is_dir()), "scaffold"]
)
def test_a_node_after_duckdb_spilled_still_runs(asgard_home: Path, tmp_path: Path, project: str) -> None:
    """DuckDB refuses to set temp_directory again once it spilled there: each profile sets it once, at connect."""
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    from asgard_provider.dbt.cosmos import DUCKDB_MEMORY_ENV, DUCKDB_TEMP_ENV, DUCKDB_THREADS_ENV

    root = tmp_path / "spilling"
    (root / "models").mkdir(parents=True)
    (root / "profiles.yml").write_text(_profiles(project))
    (root / "dbt_project.yml").write_text("name: spilling\nversion: '1.0'\nprofile: asgard\nmodel-paths: [models]\n")
    # 3M sorted rows do not fit in 50 MB: the sort spills, then the next model opens a new cursor.
    sort = "select i, md5(i::varchar) as h from range(3000000) t(i) order by h"
    (root / "models" / "sorted_rows.sql").write_text("{{ config(materialized='table') }}\n" + sort)
    (root / "models" / "counted.sql").write_text("select count(*) as n from {{ ref('sorted_rows') }}")
    spill = tmp_path / "spill"
    env = {DUCKDB_MEMORY_ENV: "50MB", DUCKDB_THREADS_ENV: "1", DUCKDB_TEMP_ENV: str(spill)}
    base = {"ASGARD_HOME": os.environ["ASGARD_HOME"], "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    args = ["run", "--project-dir", str(root), "--profiles-dir", str(root), "--target-path", str(tmp_path / "t")]
    with environ({**base, **env}):
        result = dbtRunner().invoke([*args, "--log-path", str(tmp_path / "logs")])
    assert result.success, [r.message for r in result.result] if result.result else result.exception
    assert spill.is_dir()  # DuckDB did spill there
    assert [r.status for r in result.result] == ["success", "success"]


def test_sources_stream_only_the_columns_the_model_uses(asgard_home: Path, tmp_path: Path) -> None:
    _silver()
    columns, rows = _dbt_show(tmp_path, "select * from {{ source('silver', 'transactions_cleaned') }}", {})
    assert sorted(columns) == ["amount", "customer_id", "transaction_date"]  # not transaction_id
    assert len(rows) == 5
