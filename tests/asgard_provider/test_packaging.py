"""The provider's distribution ships every package of its source tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

PROVIDER = Path(__file__).resolve().parents[2] / "plugins" / "asgard_provider"


def test_every_package_is_listed_in_pyproject() -> None:
    tool = tomllib.loads((PROVIDER / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {value: key for key, value in tool["package-dir"].items()}
    shipped = set()
    for init in PROVIDER.rglob("__init__.py"):
        rel = init.parent.relative_to(PROVIDER)
        top = rel.parts[0] if rel.parts else "."
        if top in dirs:  # a mapped folder, e.g. airflow_namespace -> airflow.providers.asgard
            shipped.add(".".join([dirs[top], *rel.parts[1:]]))
        else:
            shipped.add(".".join(["asgard_provider", *rel.parts]))
    assert shipped - {p for p in shipped if "egg-info" in p} == set(tool["packages"])
