"""Where Asgard keeps local state and where the DAG bundle's include/ lives (from the environment, not this file)."""

from __future__ import annotations

import os
from pathlib import Path


def asgard_home() -> Path:
    """Root of embedded-mode state (catalog, warehouse, MLflow, Feast): ``$ASGARD_HOME``, else ``$AIRFLOW_HOME/asgard``.

    ``$AIRFLOW_HOME`` defaults to ``~/airflow`` as in Airflow. This module imports nothing from Airflow: training
    scripts and pods call it.
    """
    configured = os.environ.get("ASGARD_HOME")
    if configured:
        return Path(configured).resolve()
    return (Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "asgard").resolve()


def include_dir() -> Path:
    """Return the bundle's include/ (pipelines, SQL, dbt projects, training scripts).

    ``$ASGARD_INCLUDE_DIR``, else ``include/`` beside Airflow's dags folder (the bundle layout: ``dags/`` and
    ``include/`` side by side), else ``include/`` in the working directory.
    """
    configured = os.environ.get("ASGARD_INCLUDE_DIR")
    if configured:
        return Path(configured).resolve()
    beside_dags = _dags_folder().parent / "include"
    return beside_dags.resolve() if beside_dags.is_dir() else (Path.cwd() / "include").resolve()


def _dags_folder() -> Path:
    dags = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not dags:
        from airflow.configuration import conf

        dags = conf.get("core", "dags_folder")
    return Path(dags).expanduser()
