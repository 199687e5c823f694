"""The production deployment files: every values file parses, and the files agree with each other and the code.

helm-values/ holds the chart values, Secret templates (``secrets/*.env.example``) and raw manifests; docker/ the
image. Nothing here needs a cluster: objects are checked against the Kubernetes client's models and the
SparkApplication CRD schema, the Feast and MLflow server settings against the real libraries.
"""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

from asgard_provider.catalog import CatalogSettings
from asgard_provider.kubernetes import DRIVER_FILE, ICEBERG_VERSION, catalog_spark_conf, spark_application
from asgard_provider.pipeline.config import PipelineConfig, load_pipeline_config

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "helm-values"
SECRETS = VALUES / "secrets"
MANIFESTS = VALUES / "manifests"
DOCKERFILE = REPO / "docker" / "Dockerfile"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
PRODUCTION = REPO / "tests" / "fixtures" / "pipelines" / "good" / "customer_churn_production.yaml"
CRD_SCHEMA = REPO / "tests" / "fixtures" / "kubernetes" / "sparkapplication-v1beta2.schema.json"
CHARTS = {"airflow", "spark-operator", "trino", "mlflow", "feast", "airbyte", "iceberg-rest"}

_PLACEHOLDER = re.compile(r"<[^<>]+>")
_SECRET_KEY = re.compile(r"(password|secret|token|access-?key|credential|fernet)", re.I)


def values(name: str) -> dict[str, Any]:
    """Parsed ``helm-values/<name>.yaml``."""
    data = yaml.safe_load((VALUES / f"{name}.yaml").read_text())
    assert isinstance(data, dict), f"{name}.yaml is not a mapping"
    return data


def env_example(name: str) -> dict[str, str]:
    """``helm-values/secrets/<name>.env.example`` as kubectl --from-env-file reads it (KEY=rest of line)."""
    pairs = {}
    for line in (SECRETS / f"{name}.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def properties(text: str) -> dict[str, str]:
    """Parse a Java properties block (Trino catalog file)."""
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def container(chart: str) -> dict[str, Any]:
    """The main container of an app-template release."""
    return values(chart)["controllers"]["main"]["containers"]["main"]  # type: ignore[no-any-return]


def secret_refs(node: Any) -> set[str]:
    """Names of the Kubernetes Secrets a values tree refers to (envFrom secretRef, *secretName keys)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "secretRef" and isinstance(value, dict):
                found.add(value["name"])
            elif key.lower().endswith("secretname") and isinstance(value, str):
                found.add(value)
            elif key == "extraEnvFrom" and isinstance(value, str):
                found |= secret_refs(yaml.safe_load(value))
            else:
                found |= secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= secret_refs(item)
    return found


def literal_secrets(node: Any, path: str = "") -> list[str]:
    """Paths of values that look like inline credentials (a secret-ish key holding a literal, or a URL password)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            is_reference = str(key).lower().endswith(("secretname", "secretkey", "authenticationtype"))
            if isinstance(value, (str, int)) and _SECRET_KEY.search(str(key)) and not is_reference:
                found.append(here)
            found += literal_secrets(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += literal_secrets(item, f"{path}[{i}]")
    elif isinstance(node, str):
        if re.search(r"://[^/@\s:]+:[^/@\s]+@", node):
            found.append(path)
        for line in node.splitlines():  # embedded files (Trino catalogs, feature_store.yaml)
            key, sep, value = line.partition("=")
            if sep and _SECRET_KEY.search(key) and not value.strip().startswith("${ENV:"):
                found.append(f"{path}: {key.strip()}")
    return found


def production() -> PipelineConfig:
    return load_pipeline_config(PRODUCTION, base_dir=REPO / "include")


def iceberg_connection(monkeypatch: pytest.MonkeyPatch) -> CatalogSettings:
    """The catalog the production asgard_iceberg_default connection describes, as IcebergHook reads it."""
    from asgard_provider.hooks.iceberg import IcebergHook

    conn = env_example("asgard-ml-connections")["AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT"]
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT", conn)
    return IcebergHook().settings


def test_every_values_file_parses_and_every_chart_has_one() -> None:
    names = {p.stem for p in VALUES.glob("*.yaml")}
    assert names == CHARTS
    for name in names:
        values(name)
    for path in SECRETS.glob("*.env.example"):
        assert env_example(path.name.removesuffix(".env.example")), path


def test_no_credentials_in_values_or_secret_templates() -> None:
    for name in CHARTS:
        assert literal_secrets(values(name)) == [], f"{name}.yaml holds credentials; reference a Secret instead"
    for path in SECRETS.glob("*.env.example"):
        for key, value in env_example(path.name.removesuffix(".env.example")).items():
            if _SECRET_KEY.search(key):
                assert _PLACEHOLDER.fullmatch(value), f"{path.name}: {key} must be a <placeholder>"
            for password in re.findall(r"://[^/@\s:\"]*:(<[^<>]*>|[^/@\s\"]+)@", value):
                assert _PLACEHOLDER.fullmatch(password), f"{path.name}: {key} holds a literal password"
            for password in re.findall(r"password=(<[^<>]*>|[^,\s\"]+)", value):
                assert _PLACEHOLDER.fullmatch(password), f"{path.name}: {key} holds a literal password"


def test_checks_catch_inline_credentials() -> None:
    leaky = {
        "env": {"AWS_SECRET_ACCESS_KEY": "abc"},
        "uri": "postgresql://u:pw@db/x",
        "catalogs": {"iceberg": "s3.aws-secret-key=abc\ns3.aws-access-key=${ENV:AWS_ACCESS_KEY_ID}"},
        "data": {"metadataSecretName": "fine"},
    }
    assert literal_secrets(leaky) == ["env.AWS_SECRET_ACCESS_KEY", "uri", "catalogs.iceberg: s3.aws-secret-key"]


def test_every_referenced_secret_is_created_by_the_walkthrough() -> None:
    referenced = set().union(*(secret_refs(values(name)) for name in CHARTS))
    cfg = production()
    pipeline_secrets = {s for t in cfg.transform if t.kubernetes for s in t.kubernetes.env_from}
    for stage in (cfg.train, cfg.predict):
        assert stage is not None and stage.kubernetes is not None
        pipeline_secrets |= set(stage.kubernetes.env_from)
    assert pipeline_secrets == {"asgard-s3-credentials", "asgard-ml-connections"}
    assert pipeline_secrets <= referenced, "the pipeline's env_from Secrets must be the ones the charts use"
    templates = {p.name.removesuffix(".env.example") for p in SECRETS.glob("*.env.example")}
    created = set(re.findall(r"create secret generic ([a-z0-9-]+)", DEPLOY_DOC.read_text()))
    assert templates <= created, "docs/deploy.md must create every Secret that has a template"
    assert referenced | pipeline_secrets <= created, sorted((referenced | pipeline_secrets) - created)


def test_one_catalog_for_pyiceberg_spark_trino_and_the_catalog_server(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = iceberg_connection(monkeypatch)
    assert catalog.type == "rest"
    trino = properties(values("trino")["catalogs"]["iceberg"])
    server = container("iceberg-rest")["env"]

    # Spark, as the SparkApplication carries it.
    spark, withheld = catalog_spark_conf(catalog)
    prefix = "spark.sql.catalog.iceberg"
    assert withheld == []
    assert trino["connector.name"] == "iceberg"
    assert trino["iceberg.catalog.type"] == spark[f"{prefix}.type"] == "rest"
    assert trino["iceberg.rest-catalog.uri"] == spark[f"{prefix}.uri"] == catalog.uri
    assert trino["iceberg.rest-catalog.warehouse"] == spark[f"{prefix}.warehouse"] == server["CATALOG_WAREHOUSE"]
    assert trino["s3.endpoint"] == spark[f"{prefix}.s3.endpoint"] == server["CATALOG_S3_ENDPOINT"]
    assert trino["s3.region"] == spark[f"{prefix}.s3.region"] == server["AWS_REGION"]
    assert trino["s3.path-style-access"] == spark[f"{prefix}.s3.path-style-access"]
    assert spark[f"{prefix}.io-impl"] == server["CATALOG_IO__IMPL"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert trino["s3.aws-access-key"] == "${ENV:AWS_ACCESS_KEY_ID}"
    assert trino["s3.aws-secret-key"] == "${ENV:AWS_SECRET_ACCESS_KEY}"
    assert {"name": "asgard-s3-credentials"} in [e["secretRef"] for e in values("trino")["envFrom"]]

    # The URI is the catalog server's Service: <fullnameOverride>.<namespace>.svc.cluster.local:<port>.
    port = values("iceberg-rest")["service"]["main"]["ports"]["http"]["port"]
    name = values("iceberg-rest")["global"]["fullnameOverride"]
    assert catalog.uri == f"http://{name}.asgard.svc.cluster.local:{port}"

    # Airbyte lands Bronze in the same catalog (its destination is configured in Airbyte, the values say where).
    airbyte_notes = (VALUES / "airbyte.yaml").read_text()
    assert catalog.uri in airbyte_notes and catalog.warehouse in airbyte_notes


def test_the_production_sparkapplication_matches_the_crd_and_the_operator_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = iceberg_connection(monkeypatch)
    stage = production().transform[0]
    k8s = stage.kubernetes
    assert k8s is not None
    app = spark_application(
        name="customer-churn-production-clean-customers",
        namespace=k8s.namespace,
        image=k8s.image,
        job={"sql": "select 1", "output_table": stage.output_table},
        catalog=catalog,
        service_account=k8s.service_account,
        env_from_secrets=k8s.env_from,
        spark_version=k8s.spark_version,
    )
    jsonschema.validate(app, json.loads(CRD_SCHEMA.read_text()))
    operator = values("spark-operator")
    assert k8s.namespace in operator["spark"]["jobNamespaces"]
    assert operator["spark"]["serviceAccount"] == {"create": True, "name": k8s.service_account}
    assert operator["webhook"]["enable"] is True  # envFrom on driver/executor pods needs the webhook
    assert (
        app["spec"]["sparkConf"]["spark.sql.catalog.iceberg.uri"]
        == properties(values("trino")["catalogs"]["iceberg"])["iceberg.rest-catalog.uri"]
    )


def test_airflow_chart_runs_the_bundle_image_on_kubernetes_executor() -> None:
    airflow = values("airflow")
    assert airflow["executor"] == "KubernetesExecutor"
    assert airflow["postgresql"]["enabled"] is False
    assert airflow["data"]["metadataSecretName"]
    assert airflow["dags"]["gitSync"]["enabled"] is False and airflow["dags"]["persistence"]["enabled"] is False
    assert airflow["airflowVersion"] == version("apache-airflow")
    image = airflow["images"]["airflow"]
    pods = {s.kubernetes.image for s in (production().train, production().predict) if s and s.kubernetes}
    assert pods == {f"{image['repository']}:{image['tag']}"}
    env = {e["name"]: e["value"] for e in airflow["env"]}
    assert json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])["extra"]["in_cluster"] is True
    assert env["ASGARD_INCLUDE_DIR"] == "/opt/airflow/include"
    assert airflow["config"]["cosmos"]["enable_telemetry"] == "False"
    # The workers' service account is the one the RBAC manifest lets launch Spark applications and pods.
    bound = {
        s["name"]
        for doc in yaml.safe_load_all((MANIFESTS / "asgard-rbac.yaml").read_text())
        if doc["kind"] == "RoleBinding"
        for s in doc["subjects"]
    }
    assert airflow["workers"]["kubernetes"]["serviceAccount"]["name"] in bound


def test_raw_manifests_are_valid_kubernetes_objects() -> None:
    from kubernetes.client import ApiClient, Configuration

    config = Configuration()
    config.client_side_validation = True
    client = ApiClient(configuration=config)
    kinds = {}
    for path in MANIFESTS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            group_version = doc["apiVersion"].split("/")[-1]
            model = f"{group_version.capitalize()}{doc['kind']}"
            parsed = client.deserialize(SimpleNamespace(data=json.dumps(doc)), model)
            assert client.sanitize_for_serialization(parsed) == doc, f"{path.name}: {doc['kind']} has unknown fields"
            kinds[doc["kind"], doc["metadata"]["name"]] = doc
    role = kinds["Role", "asgard-task-launcher"]
    grants = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # What the Spark and pod operators call: submit/watch/delete applications, run pods, read logs, XCom via exec.
    for need in [("sparkapplications", v) for v in ("create", "get", "delete")] + [
        ("pods", "create"),
        ("pods", "delete"),
        ("pods/log", "get"),
        ("pods/exec", "create"),
    ]:
        assert need in grants, need
    ml = production().train
    assert ml is not None and ml.kubernetes is not None
    assert ("ServiceAccount", ml.kubernetes.service_account) in kinds


def test_dockerfile_builds_the_images_the_pipeline_names() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert args["AIRFLOW_VERSION"] == version("apache-airflow")
    assert args["SPARK_VERSION"] == version("pyspark") == production().transform[0].kubernetes.spark_version  # type: ignore[union-attr]
    assert args["ICEBERG_VERSION"] == ICEBERG_VERSION
    for source in re.findall(r"^COPY (?:--chown=\S+ )?([^-\s]\S*) ", text, re.M):
        assert (REPO / source).exists(), f"docker/Dockerfile copies {source}, which is not in the repository"
    # The SparkApplication runs the driver from the image's copy of the provider.
    assert DRIVER_FILE == "local:///opt/airflow/plugins/asgard_provider/spark_driver.py"
    assert "COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/" in text
    built = set(re.findall(r"--target (\w+)\s+-t (\S+)", text))
    cfg = production()
    spark_images = {t.kubernetes.image for t in cfg.transform if t.kubernetes}
    assert {("spark", image) for image in spark_images} <= built
    assert ("airflow", f"{values('airflow')['images']['airflow']['repository']}:0.1.0") in built


def test_mlflow_server_arguments_are_accepted_by_the_mlflow_cli() -> None:
    from mlflow.cli import server

    main = container("mlflow")
    assert main["command"] == ["mlflow"] and main["args"][0] == "server"
    ctx = server.make_context("server", list(main["args"][1:]))
    assert ctx.params["artifacts_destination"].startswith("s3://")
    assert ctx.params["serve_artifacts"] is True
    assert ctx.params["backend_store_uri"] is None  # from MLFLOW_BACKEND_STORE_URI in the asgard-mlflow-db Secret
    assert set(env_example("asgard-mlflow-db")) == {"MLFLOW_BACKEND_STORE_URI"}
    assert (
        main["env"]["MLFLOW_S3_ENDPOINT_URL"]
        == env_example_connection("AIRFLOW_CONN_ASGARD_ICEBERG_DEFAULT")["extra"]["properties"]["s3.endpoint"]
    )
    mlflow_conn = env_example_connection("AIRFLOW_CONN_ASGARD_MLFLOW_DEFAULT")
    port = values("mlflow")["service"]["main"]["ports"]["http"]["port"]
    assert (
        mlflow_conn["host"]
        == f"http://{values('mlflow')['global']['fullnameOverride']}.asgard.svc.cluster.local:{port}"
    )
    assert str(port) == main["args"][main["args"].index("--port") + 1]


def env_example_connection(key: str) -> dict[str, Any]:
    """One connection JSON from the asgard-ml-connections template."""
    return json.loads(env_example("asgard-ml-connections")[key])  # type: ignore[no-any-return]


def test_trino_connection_matches_the_trino_service_and_dbt_profile_defaults() -> None:
    conn = json.loads(env_example("asgard-airflow-connections")["AIRFLOW_CONN_ASGARD_TRINO"])
    assert conn["port"] == values("trino")["service"]["port"]
    assert conn["host"] == "trino.asgard.svc.cluster.local"
    profiles = (REPO / "include" / "dbt" / "customer_churn" / "profiles.yml").read_text()
    assert f"'ASGARD_TRINO_HOST', '{conn['host']}'" in profiles
    assert f"'ASGARD_TRINO_PORT', '{conn['port']}'" in profiles
    assert production().dbt is not None and production().dbt.connection == "asgard_trino"  # type: ignore[union-attr]


@pytest.mark.postgres
def test_feature_server_store_is_the_store_the_feast_connection_describes(
    postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast import FeatureStore

    from asgard_provider.hooks.feast import FeastHook

    text = values("feast")["configMaps"]["repo"]["data"]["feature_store.yaml"]
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(env_example("asgard-feast-store"))
    # Fill the Secret's variables with this machine's servers, as the pod's envFrom would.
    registry = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_db}"
    monkeypatch.setenv("FEAST_REGISTRY_URI", registry)
    monkeypatch.setenv("FEAST_REDIS_CONNECTION", "127.0.0.1:6379,db=0")
    server = yaml.safe_load(os.path.expandvars(text))

    conn = env_example_connection("AIRFLOW_CONN_ASGARD_FEAST_DEFAULT")
    conn["extra"] |= {"registry": registry, "online_store": "redis://127.0.0.1:6379/0", "repo_path": str(tmp_path)}
    monkeypatch.setenv("AIRFLOW_CONN_ASGARD_FEAST_DEFAULT", json.dumps(conn))
    assert server == FeastHook().config

    repo = tmp_path / "server"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(text)
    store = FeatureStore(repo_path=str(repo))  # Feast itself substitutes the variables
    assert store.project == "asgard"
    assert store.list_feature_views() == []


# Key paths each values file may set, read from the upstream charts (stored public copies, looked up on the date of
# this change). No chart here ships a values.schema.json small enough to vendor whole: Airflow's is ~650 KB, and
# app-template's schema is split over a dozen $ref'd files of the bjw-s common library. So every path below was
# checked by hand against the named upstream file; `*` stands for one key of a free-form map, a trailing `**` for
# any subtree that the chart passes through unchecked (airflow.cfg sections, Kubernetes resource objects).
KNOWN_PATHS: dict[str, set[str]] = {
    # apache/airflow chart/values.yaml (chart 1.18, defaults 3.0.5) for every key; workers.kubernetes.* from the
    # chart 1.21.0 release notes and the 1.22.0 "Customizing Workers" page, which moved the worker settings there.
    "airflow": {
        "airflowVersion",
        "defaultAirflowTag",
        "images.airflow.repository",
        "images.airflow.tag",
        "images.airflow.pullPolicy",
        "executor",
        "dags.persistence.enabled",
        "dags.gitSync.enabled",
        "postgresql.enabled",
        "data.metadataSecretName",
        "fernetKeySecretName",
        "apiSecretKeySecretName",
        "jwtSecretName",
        "redis.enabled",
        "config.*.*",
        "env",
        "extraEnvFrom",
        "triggerer.enabled",
        "triggerer.replicas",
        "workers.kubernetes.resources.**",
        "workers.kubernetes.serviceAccount.create",
        "workers.kubernetes.serviceAccount.name",
    },
    # kubeflow/spark-operator charts/spark-operator-chart/values.yaml (2.x layout: controller/webhook/spark).
    "spark-operator": {
        "spark.jobNamespaces",
        "spark.serviceAccount.create",
        "spark.serviceAccount.name",
        "spark.rbac.create",
        "controller.replicas",
        "controller.workers",
        "webhook.enable",
        "prometheus.metrics.enable",
    },
    # trinodb/charts charts/trino/values.yaml.
    "trino": {"server.workers", "service.port", "envFrom", "catalogs.*"},
    # airbytehq/airbyte-platform charts/airbyte/values.yaml (global.database.*, global.storage.* with the bucket and
    # s3 keys it documents) and templates/helpers/_storage.tpl (global.storage.secretName; storageSecretName is
    # the legacy spelling).
    "airbyte": {
        "global.edition",
        "global.database.type",
        "global.database.secretName",
        "global.database.host",
        "global.database.port",
        "global.database.database",
        "global.database.userSecretKey",
        "global.database.passwordSecretKey",
        "global.storage.type",
        "global.storage.secretName",
        "global.storage.bucket.log",
        "global.storage.bucket.state",
        "global.storage.bucket.workloadOutput",
        "global.storage.s3.region",
        "global.storage.s3.authenticationType",
        "postgresql.enabled",
        "minio.enabled",
    },
}
# bjw-s/helm-charts charts/library/common: values.schema.json (global, configMaps, controllers, persistence,
# service) and schemas/containers.json, configmap.json, persistence.json, service.json for the nested keys.
_APP_TEMPLATE = {
    "global.fullnameOverride",
    "configMaps.*.data.*",
    "controllers.*.containers.*.image.repository",
    "controllers.*.containers.*.image.tag",
    "controllers.*.containers.*.workingDir",
    "controllers.*.containers.*.command",
    "controllers.*.containers.*.args",
    "controllers.*.containers.*.env.*",
    "controllers.*.containers.*.envFrom",
    "controllers.*.containers.*.probes.*.enabled",
    "controllers.*.containers.*.probes.*.custom",
    "controllers.*.containers.*.probes.*.spec.**",
    "persistence.*.type",
    "persistence.*.identifier",
    "persistence.*.globalMounts",
    "service.*.controller",
    "service.*.ports.*.port",
}
KNOWN_PATHS |= {name: _APP_TEMPLATE for name in ("mlflow", "feast", "iceberg-rest")}


def key_paths(node: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths to every leaf of a values tree; lists and scalars are leaves."""
    if isinstance(node, dict) and node:
        return set().union(*(key_paths(value, (*prefix, str(key))) for key, value in node.items()))
    return {prefix}


def is_known(path: tuple[str, ...], patterns: set[str]) -> bool:
    """Whether a leaf path matches one of the known-path patterns (`*` one key, trailing `**` any subtree)."""
    for pattern in patterns:
        parts = pattern.split(".")
        if parts[-1] == "**":
            head = parts[:-1]
            if len(path) >= len(head) and all(p in ("*", k) for p, k in zip(head, path[: len(head)], strict=True)):
                return True
        elif len(parts) == len(path) and all(p in ("*", k) for p, k in zip(parts, path, strict=True)):
            return True
    return False


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_values_files_only_set_keys_the_upstream_chart_has(chart: str) -> None:
    unknown = sorted(".".join(p) for p in key_paths(values(chart)) if not is_known(p, KNOWN_PATHS[chart]))
    assert unknown == [], f"helm-values/{chart}.yaml sets keys its chart does not define: {unknown}"


def test_known_path_check_rejects_misplaced_keys() -> None:
    airflow = KNOWN_PATHS["airflow"]
    assert is_known(("workers", "kubernetes", "resources", "limits", "memory"), airflow)
    assert is_known(("config", "core", "load_examples"), airflow)
    assert not is_known(("workers", "resources", "limits", "memory"), airflow)  # the deprecated spelling
    assert not is_known(("data", "fernetKeySecretName"), airflow)  # top-level key, not under data
    assert not is_known(("global", "storage", "storageSecretName"), KNOWN_PATHS["airbyte"])
    assert not is_known(("controllers", "main", "containers", "main", "workdir"), KNOWN_PATHS["mlflow"])
