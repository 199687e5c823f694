"""The environment Asgard gives a child process (training script, pod, Spark driver): explicit and minimal.

A task process carries Airflow's own settings (Airflow 3's supervisor sets
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow-db-not-allowed:///``), every ``AIRFLOW_CONN_*`` connection and
whatever the worker was started with. A child gets none of that: only what runs an interpreter, plus what its
stage names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Variables a child keeps from the parent: what locates the interpreter, Java, temp space, locale and CAs.
PASSTHROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "JAVA_HOME",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)

#: Credentials of the shared stores (catalog database, object storage) a child that reads tables or logs
#: artifacts needs; passed on only when the parent has them.
STORE_CREDENTIALS = (
    "PGPASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
)

#: Prefixes of variables a child must never receive, even when a stage passes them explicitly.
FORBIDDEN_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")

#: Quiet progress bars and telemetry in children: their output becomes task log lines.
QUIET = {
    "PYTHONUNBUFFERED": "1",
    "TQDM_DISABLE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DO_NOT_TRACK": "1",
}


def child_env(stage_env: Mapping[str, str], parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return :data:`PASSTHROUGH` from ``parent`` (default ``os.environ``), :data:`QUIET` and ``stage_env``.

    Raises ``ValueError`` if ``stage_env`` names an Airflow setting, connection or variable.
    """
    source = os.environ if parent is None else parent
    forbidden = sorted(k for k in stage_env if k.startswith(FORBIDDEN_PREFIXES))
    if forbidden:
        raise ValueError(f"a child process may not receive Airflow settings or connections: {', '.join(forbidden)}")
    env = {key: source[key] for key in PASSTHROUGH if key in source}
    return {**env, **QUIET, **stage_env}


def store_credentials(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the :data:`STORE_CREDENTIALS` set in ``parent`` (default ``os.environ``)."""
    source = os.environ if parent is None else parent
    return {key: source[key] for key in STORE_CREDENTIALS if key in source}
