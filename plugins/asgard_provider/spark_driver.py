"""Driver program of an Asgard SparkApplication: run one transform in the session spark-submit created.

The SparkApplication (see :func:`asgard_provider.kubernetes.spark_application`) starts this file with ``--job
<encoded spec>``: the SQL already rendered by Airflow, the output table, write mode, partitioning, merge keys,
quarantine table and the run's branch, which output and quarantine are written on (the Airflow task publishes it
once the application completed, or leaves it to the stage's checks). The transform itself is
:func:`asgard_provider.engines.spark_sql.run_transform`, the same engine the embedded runner calls; nothing here
imports Airflow, so the Spark image needs none. Catalog settings withheld from the SparkApplication (passwords,
tokens) are read from ``$ASGARD_SPARK_SECRET_CONF`` (a JSON object of Spark settings, from a Kubernetes Secret).
The result is printed as one ``ASGARD_RESULT {...}`` line, which the Airflow task reads from the driver log.
"""

from __future__ import annotations

import os
import sys

# spark-submit runs this file as a script, putting its folder first on sys.path, where the provider's modules
# (kubernetes.py, dbt/, settings.py...) would shadow the libraries of the same name.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asgard_provider.engines.spark_sql import TransformSpec, run_transform
from asgard_provider.exceptions import TransformError
from asgard_provider.kubernetes import RESULT_MARKER, decode_spec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Environment variable holding withheld (secret) Spark settings as a JSON object.
SECRET_CONF_ENV = "ASGARD_SPARK_SECRET_CONF"  # noqa: S105 - a variable name, not a secret


def apply_secret_conf(spark: SparkSession, withheld: Sequence[str]) -> None:
    """Set the withheld catalog settings from ``$ASGARD_SPARK_SECRET_CONF``; fail naming any that are missing."""
    if not withheld:
        return
    raw = os.environ.get(SECRET_CONF_ENV, "")
    try:
        values = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise TransformError(f"${SECRET_CONF_ENV} is not a JSON object: {exc}") from None
    missing = [key for key in withheld if key not in values]
    if missing:
        raise TransformError(
            f"Spark settings {', '.join(missing)} were withheld from the SparkApplication as secrets; provide them "
            f"in ${SECRET_CONF_ENV} (a JSON object) from a Kubernetes Secret listed in kubernetes.env_from"
        )
    for key in withheld:
        spark.conf.set(key, str(values[key]))


def job_transform(job: dict[str, Any]) -> TransformSpec:
    """Return the transform a job spec (:meth:`SparkIcebergKubernetesOperator.job_spec`) describes."""
    return TransformSpec(
        sql=job["sql"],
        output_table=job["output_table"],
        sql_source=job.get("sql_source") or "<inline SQL>",
        mode=job["mode"],
        partition_by=list(job.get("partition_by") or []),
        merge_keys=list(job.get("merge_keys") or []),
        quarantine_table=job.get("quarantine_table"),
        branch=job.get("branch"),
        snapshot_properties=dict(job.get("snapshot_properties") or {}),
    )


def run(job: dict[str, Any], spark: SparkSession) -> dict[str, Any]:
    """Run the transform described by ``job`` in ``spark``; return output table and row counts."""
    apply_secret_conf(spark, job.get("withheld_conf") or [])
    return run_transform(spark, job_transform(job)).as_dict()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--job``, run it in the active Spark session, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--job", required=True, help="encoded job spec (asgard_provider.kubernetes.encode_spec)")
    args = parser.parse_args(argv)
    job = decode_spec(args.job)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    try:
        result = run(job, spark)
    except TransformError as exc:
        print(f"asgard transform {job.get('task_id')} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print(RESULT_MARKER + json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
