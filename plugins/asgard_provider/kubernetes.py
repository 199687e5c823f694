"""Kubernetes objects Asgard submits in production: SparkApplications for transforms, pods for train/predict.

Everything here is pure rendering (no API calls): the operators in ``operators/spark_kubernetes.py`` and
``operators/kubernetes_pod.py`` hand these objects to the cncf-kubernetes provider, which talks to the cluster.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from asgard_provider.catalog import CATALOG_NAME, ICEBERG_EXTENSIONS, CatalogSettings
from asgard_provider.exceptions import CatalogError

#: The Spark operator's custom resource (``kubectl get sparkapplications``).
SPARK_API_GROUP = "sparkoperator.k8s.io"
SPARK_API_VERSION = "v1beta2"
SPARK_KIND = "SparkApplication"
SPARK_PLURAL = "sparkapplications"
#: Container name the Spark operator gives the driver (the provider streams its logs).
DRIVER_CONTAINER = "spark-kubernetes-driver"

#: Iceberg release of the Spark runtime jar used locally (snowpark-connect-deps-iceberg); clusters use the same.
ICEBERG_VERSION = "1.9.2"
SCALA_VERSION = "2.12"
S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"

#: Where the image keeps the DAG bundle (official Airflow image layout): the driver script lives in the provider.
BUNDLE_ROOT = "/opt/airflow"
DRIVER_FILE = f"local://{BUNDLE_ROOT}/plugins/asgard_provider/spark_driver.py"
#: Command of a train/predict pod; its single argument is the encoded task spec.
POD_COMMAND = ["python", "-m", "asgard_provider.pod_entry"]
#: Prefix of the driver's log line carrying the transform result as JSON.
RESULT_MARKER = "ASGARD_RESULT "

# Catalog properties that carry credentials: never written into objects stored in the Kubernetes API.
_SECRET_PROPERTY = re.compile(r"(password|secret|token|credential|access-key|session-key|private)", re.I)


def default_packages() -> list[str]:
    """Maven coordinates the driver fetches: the Iceberg Spark runtime and the AWS bundle (S3FileIO)."""
    return [
        f"org.apache.iceberg:iceberg-spark-runtime-3.5_{SCALA_VERSION}:{ICEBERG_VERSION}",
        f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}",
    ]


def encode_spec(spec: Mapping[str, Any]) -> str:
    """Encode a JSON-able spec as one URL-safe base64 argument (no quoting issues in any shell or CRD)."""
    return base64.urlsafe_b64encode(json.dumps(spec, sort_keys=True).encode()).decode("ascii")


def decode_spec(text: str) -> dict[str, Any]:
    """Inverse of :func:`encode_spec`."""
    data = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    if not isinstance(data, dict):
        raise ValueError("the encoded spec is not a JSON object")
    return data


def catalog_spark_conf(catalog: CatalogSettings) -> tuple[dict[str, str], list[str]]:
    """Spark settings of the shared catalog for a cluster job; return (settings, names of withheld secrets).

    An ``s3://`` / ``s3a://`` warehouse gets Iceberg's ``S3FileIO`` (endpoint, region, path-style access come from
    the catalog properties). Credentials (passwords, keys, tokens) are left out: the job reads them from the
    environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from a Kubernetes Secret, ``env_from``).
    """
    if catalog.type == "sql" and catalog.uri.startswith("sqlite"):
        raise CatalogError(
            f"catalog {catalog.uri} is a local SQLite file, which pods in the cluster cannot reach; "
            "use a PostgreSQL or REST catalog (asgard_iceberg connection)"
        )
    prefix = f"spark.sql.catalog.{CATALOG_NAME}"
    conf = {"spark.sql.extensions": ICEBERG_EXTENSIONS, **catalog.spark_conf()}
    conf.setdefault(f"{prefix}.cache-enabled", "false")
    if catalog.warehouse.startswith(("s3://", "s3a://")) and "io-impl" not in catalog.properties:
        conf[f"{prefix}.io-impl"] = S3_FILE_IO
    withheld = sorted(k for k in conf if k.startswith(prefix) and _SECRET_PROPERTY.search(k.rsplit(".", 1)[-1]))
    for key in withheld:
        del conf[key]
    return conf, withheld


def env_from(secrets: Sequence[str]) -> list[dict[str, Any]]:
    """``envFrom`` entries exposing each named Kubernetes Secret as environment variables."""
    return [{"secretRef": {"name": name}} for name in secrets]


def spark_application(
    *,
    name: str,
    namespace: str,
    image: str,
    job: Mapping[str, Any],
    catalog: CatalogSettings,
    service_account: str = "spark",
    image_pull_policy: str = "IfNotPresent",
    env_from_secrets: Sequence[str] = (),
    driver_cores: int = 1,
    driver_memory: str = "2g",
    executor_cores: int = 1,
    executor_memory: str = "2g",
    executor_instances: int = 2,
    spark_version: str = "3.5.8",
    packages: Sequence[str] | None = None,
    spark_conf: Mapping[str, str] | None = None,
    main_application_file: str = DRIVER_FILE,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Render the SparkApplication (``sparkoperator.k8s.io/v1beta2``) running one transform ``job``.

    The driver runs :mod:`asgard_provider.spark_driver` with the job encoded as its only argument; the catalog,
    Iceberg extensions and S3 settings go into ``sparkConf`` so driver and executors see the same ``iceberg``
    catalog as every other engine.
    """
    conf, _ = catalog_spark_conf(catalog)
    conf.update({"spark.sql.session.timeZone": "UTC", **dict(spark_conf or {})})
    pod_labels = {"app.kubernetes.io/part-of": "asgard", **dict(labels or {})}
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    common: dict[str, Any] = {"labels": dict(pod_labels), "env": env}
    if env_from_secrets:
        common["envFrom"] = env_from(env_from_secrets)
    spec: dict[str, Any] = {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "mainApplicationFile": main_application_file,
        "arguments": ["--job", encode_spec(job)],
        "sparkVersion": spark_version,
        "restartPolicy": {"type": "Never"},
        "sparkConf": conf,
        "driver": {
            "cores": driver_cores,
            "memory": driver_memory,
            "serviceAccount": service_account,
            **copy.deepcopy(common),
        },
        "executor": {
            "cores": executor_cores,
            "instances": executor_instances,
            "memory": executor_memory,
            **copy.deepcopy(common),
        },
    }
    deps = list(default_packages() if packages is None else packages)
    if deps:
        spec["deps"] = {"packages": deps}
    return {
        "apiVersion": f"{SPARK_API_GROUP}/{SPARK_API_VERSION}",
        "kind": SPARK_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(pod_labels)},
        "spec": spec,
    }


def pod_resources(cpu: str, memory: str) -> Any:
    """``V1ResourceRequirements``: request ``cpu``/``memory``, limit memory (a pod over it is OOM-killed)."""
    from kubernetes.client import models as k8s

    return k8s.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits={"memory": memory})


def pod_env_from(secrets: Sequence[str]) -> list[Any]:
    """``V1EnvFromSource`` list for the pod operator (same meaning as :func:`env_from`)."""
    from kubernetes.client import models as k8s

    return [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name)) for name in secrets]
