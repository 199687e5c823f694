"""Where Asgard keeps local state and where the DAG bundle's include/ lives."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def asgard_home() -> Path:
    """Root of embedded-mode state (catalog, warehouse, MLflow, Feast); ``$ASGARD_HOME`` or ``<repo>/.asgard``."""
    return Path(os.environ.get("ASGARD_HOME", REPO_ROOT / ".asgard")).resolve()


def include_dir() -> Path:
    """Return the bundle's include/ folder (pipelines, SQL, dbt projects, training scripts)."""
    return Path(os.environ.get("ASGARD_INCLUDE_DIR", REPO_ROOT / "include")).resolve()
