"""Stage kinds: each is one module holding its config model, the tables it reads and writes, and its tasks.

A new kind is one module defining a :class:`~asgard_provider.stages.base.StageKind` plus one entry in
:data:`STAGE_KINDS`.
"""

from __future__ import annotations

from asgard_provider.stages import dbt, features, ingest, predict, train, transform
from asgard_provider.stages.base import StageKind

#: Every stage kind by its config key, in the order the shorthand keys (``ingest:``, ``dbt:``...) run.
STAGE_KINDS: dict[str, StageKind] = {
    kind.key: kind for kind in (ingest.KIND, transform.KIND, dbt.KIND, features.KIND, train.KIND, predict.KIND)
}
