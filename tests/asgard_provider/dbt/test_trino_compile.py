"""The Gold project for the production engine: dbt-trino with the profile Cosmos maps from an Airflow connection.

No Trino server runs here, so the models are compiled, not run: ``dbt compile --no-introspect
--no-populate-cache`` needs no connection, and the connection points at a closed port to prove it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlglot
import yaml

from asgard_provider.dbt.cosmos import trino_profile_config
from asgard_provider.settings import include_dir

PROJECT = include_dir() / "dbt" / "customer_churn"

#: Syntax DuckDB accepts and Trino rejects (or reads differently); none may survive into Trino SQL.
DUCKDB_ONLY = {
    "':: cast'": re.compile(r"::"),
    "DuckDB table functions": re.compile(
        r"\b(read_parquet|parquet_scan|read_csv(_auto)?|read_json\w*|iceberg_scan)\s*\("
    ),
    "datediff()": re.compile(r"\bdatediff\s*\(", re.I),
    "strftime()/strptime()": re.compile(r"\bstr[fp]time\s*\(", re.I),
    "ILIKE": re.compile(r"\bilike\b", re.I),
    "QUALIFY": re.compile(r"\bqualify\b", re.I),
    "SELECT * EXCLUDE/REPLACE": re.compile(r"\*\s*(exclude|replace)\s*\(", re.I),
    "list functions": re.compile(r"\blist_\w+\s*\(", re.I),
    "unquoted INTERVAL": re.compile(r"\binterval\s+-?\d", re.I),
    "epoch()": re.compile(r"\bepoch(_ms)?\s*\(", re.I),
    "local Parquet paths": re.compile(r"\.parquet\b", re.I),
}


def duckdb_only_syntax(sql: str) -> list[str]:
    """Names of the DuckDB-only constructs found in ``sql`` (comments stripped first)."""
    code = re.sub(r"--[^\n]*", "", sql)
    return [name for name, pattern in DUCKDB_ONLY.items() if pattern.search(code)]


def _trino_connection(monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    conn = {"conn_type": "trino", "host": "trino.asgard.svc.cluster.local", "port": 8080, "login": "asgard", **fields}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_TRINO", json.dumps(conn))


def test_cosmos_maps_a_connection_without_credentials_to_method_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _trino_connection(monkeypatch, extra={"protocol": "https"})
    config = trino_profile_config("asgard_trino")
    profile = yaml.safe_load(config.profile_mapping.get_profile_file_contents("asgard", "trino"))
    assert profile == {
        "asgard": {
            "target": "trino",
            "outputs": {
                "trino": {
                    "type": "trino",
                    "method": "none",
                    "host": "trino.asgard.svc.cluster.local",
                    "port": 8080,
                    "user": "asgard",
                    "database": "iceberg",
                    "schema": "gold",
                    "threads": 4,
                    "http_scheme": "https",
                }
            },
        }
    }
    assert (config.profile_name, config.target_name) == ("asgard", "trino")


def test_cosmos_maps_a_password_to_ldap_and_keeps_it_out_of_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    _trino_connection(monkeypatch, password="ldap-pw")
    mapping = trino_profile_config("asgard_trino").profile_mapping
    text = mapping.get_profile_file_contents("asgard", "trino")
    output = yaml.safe_load(text)["asgard"]["outputs"]["trino"]
    assert output["method"] == "ldap"
    assert (output["database"], output["schema"], output["user"]) == ("iceberg", "gold", "asgard")
    assert "ldap-pw" not in text
    assert output["password"] == "{{ env_var('COSMOS_CONN_TRINO_PASSWORD') }}"
    assert mapping.env_vars["COSMOS_CONN_TRINO_PASSWORD"] == "ldap-pw"


def test_checker_flags_duckdb_syntax() -> None:
    sample = (
        "select x::int, datediff('day', a, b), strftime(t, '%Y') from read_parquet('/x/y.parquet') "
        "where name ilike 'a%' and d > now() - interval 3 day qualify row_number() over () = 1"
    )
    assert set(duckdb_only_syntax(sample)) == {
        "':: cast'",
        "DuckDB table functions",
        "datediff()",
        "strftime()/strptime()",
        "ILIKE",
        "QUALIFY",
        "unquoted INTERVAL",
        "local Parquet paths",
    }
    assert duckdb_only_syntax("select date_add('day', -60, cast('2025-11-11' as date)) -- read_parquet(") == []


def test_gold_models_compile_for_trino_without_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmos.dbt.project import environ
    from dbt.cli.main import dbtRunner

    _trino_connection(monkeypatch, host="127.0.0.1", port=1)  # nothing listens: any query would fail
    config = trino_profile_config("asgard_trino")
    target = tmp_path / "target"
    with config.ensure_profile(desired_profile_path=tmp_path / "profiles.yml") as (profile_path, env_vars):
        args = [
            "compile",
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(profile_path.parent),
            "--profile",
            config.profile_name,
            "--target",
            config.target_name,
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
            "--vars",
            "{as_of: '2025-11-11'}",
            "--no-introspect",
            "--no-populate-cache",
            "--no-partial-parse",
            "--quiet",
        ]
        with environ({**env_vars, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}):
            result = dbtRunner().invoke(args)
    assert result.success, result.exception

    manifest = json.loads((target / "manifest.json").read_text())
    model = manifest["nodes"]["model.customer_churn.customer_metrics"]
    assert model["relation_name"] == '"iceberg"."gold"."customer_metrics"'
    assert model["config"]["materialized"] == "incremental"
    assert model["config"]["incremental_strategy"] == "delete+insert"
    assert model["config"]["unique_key"] == "snapshot_date"
    assert model["config"]["properties"] == {"partitioning": "ARRAY['snapshot_date']"}
    sources = {s["name"]: s["relation_name"] for s in manifest["sources"].values()}
    assert sources == {
        "customers_cleaned": '"iceberg"."silver"."customers_cleaned"',
        "transactions_cleaned": '"iceberg"."silver"."transactions_cleaned"',
        "support_tickets_cleaned": '"iceberg"."silver"."support_tickets_cleaned"',
    }

    compiled = {
        path.relative_to(target / "compiled").as_posix(): path.read_text()
        for path in (target / "compiled").rglob("*.sql")
    }
    model_sql = compiled["customer_churn/models/gold/customer_metrics.sql"]
    assert "date_add('day', -60, cast('2025-11-11' as date))" in model_sql
    assert 'from "iceberg"."silver"."transactions_cleaned"' in model_sql
    assert len(compiled) == 1 + sum(1 for n in manifest["nodes"] if n.startswith("test.customer_churn."))
    for name, sql in compiled.items():
        assert duckdb_only_syntax(sql) == [], name
        sqlglot.parse_one(sql, read="trino")  # raises on anything the Trino dialect cannot parse
