"""Connection types in the Airflow UI and ``test_connection`` against the real embedded stores and wrong settings."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.connections import CONNECTION_TYPES
from asgard_provider.hooks.feast import FeastHook
from asgard_provider.hooks.iceberg import IcebergHook
from asgard_provider.hooks.mlflow import MLflowHook
from asgard_provider.hooks.spark import SparkHook

HOOKS = {
    "asgard_iceberg": IcebergHook,
    "asgard_spark": SparkHook,
    "asgard_mlflow": MLflowHook,
    "asgard_feast": FeastHook,
}
NO_SUCH_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/asgard_no_such_database"


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_providers_manager_serves_each_connection_form_without_importing_hooks() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    for conn_type, hook in HOOKS.items():
        assert manager.hooks[conn_type].hook_class_name == f"{hook.__module__}.{hook.__name__}"
        assert manager.hooks[conn_type].connection_testable
        # Airflow 3.2+ takes the form from the provider info; the hook's legacy classmethod says the same.
        assert manager.field_behaviours[conn_type] == hook.get_ui_field_behaviour()
        for field in CONNECTION_TYPES[conn_type]["fields"]:
            widget = manager.connection_form_widgets[f"extra__{conn_type}__{field}"]
            assert widget.field_name == field and widget.hook_class_name.endswith(hook.__name__)
    assert manager.connection_form_widgets["extra__asgard_iceberg__catalog_type"].field["schema"]["enum"] == [
        "sql",
        "rest",
    ]
    assert {
        "asgard_provider.links.MLflowRunLink",
        "asgard_provider.links.MLflowModelVersionLink",
        "asgard_provider.links.SparkUILink",
    } <= set(manager.extra_links_class_names)


def test_iceberg_lists_namespaces_of_the_embedded_catalog(asgard_home: Path) -> None:
    assert IcebergHook().test_connection() == (True, "catalog reachable, 0 namespaces")
    IcebergHook().write("bronze.items", [pa.table({"id": [1]})])
    assert IcebergHook().test_connection() == (True, "catalog reachable, 1 namespaces")


@pytest.mark.postgres
def test_iceberg_catalog_database_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _conn(
        monkeypatch, "bad_catalog", conn_type="asgard_iceberg", host=NO_SUCH_DB, extra={"warehouse": tmp_path.as_uri()}
    )
    ok, message = IcebergHook("bad_catalog").test_connection()
    assert not ok
    assert 'database "asgard_no_such_database" does not exist' in message


def test_mlflow_searches_experiments_of_the_embedded_store(asgard_home: Path) -> None:
    ok, message = MLflowHook().test_connection()
    assert ok, message
    assert message == f"MLflow reachable at sqlite:///{asgard_home / 'mlflow' / 'mlflow.db'}, 1+ experiments"
    assert (asgard_home / "mlflow" / "mlflow.db").is_file()


def test_mlflow_server_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _conn(monkeypatch, "bad_mlflow", conn_type="asgard_mlflow", host=f"http://127.0.0.1:{port}")
    ok, message = MLflowHook("bad_mlflow").test_connection()
    assert not ok
    assert f"127.0.0.1:{port}" in message and "Connection refused" in message


def test_feast_lists_feature_views_of_the_embedded_registry(asgard_home: Path) -> None:
    assert FeastHook().test_connection() == (True, "registry reachable, 0 feature views in project 'asgard'")


@pytest.mark.postgres
def test_feast_registry_database_that_does_not_exist(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "bad_feast", conn_type="asgard_feast", extra={"project": "asgard", "registry": NO_SUCH_DB})
    ok, message = FeastHook("bad_feast").test_connection()
    assert not ok
    assert 'database "asgard_no_such_database" does not exist' in message


def test_spark_runs_java_for_a_local_master(asgard_home: Path) -> None:
    ok, message = SparkHook().test_connection()
    assert ok, message
    assert message.startswith("master local[2], ")
    assert "version" in message and message.endswith(" jars")


def test_spark_without_java(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(asgard_home))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    ok, message = SparkHook().test_connection()
    assert not ok
    assert "no Java runtime found" in message and "JAVA_HOME" in message


def test_spark_standalone_master_that_does_not_answer(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _conn(monkeypatch, "bad_spark", conn_type="asgard_spark", host=f"spark://127.0.0.1:{port}")
    ok, message = SparkHook("bad_spark").test_connection()
    assert not ok
    assert message.startswith(f"Spark master 127.0.0.1:{port} is not reachable")


def test_spark_standalone_master_that_answers(asgard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as server:  # something listening where the master should be
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        _conn(monkeypatch, "spark_cluster", conn_type="asgard_spark", host="spark://127.0.0.1", port=port)
        ok, message = SparkHook("spark_cluster").test_connection()
    assert ok, message
    assert message.startswith(f"master spark://127.0.0.1:{port} reachable")
