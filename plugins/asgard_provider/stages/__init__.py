"""Stage kinds: each is one module holding its config model, the tables it reads and writes, and its tasks.

A new kind is one module defining a :class:`~asgard_provider.stages.base.StageKind` plus one entry in
:data:`STAGE_KINDS`; pipelines then list it under ``stages:`` as ``{<kind>: {...}}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model, model_validator

from asgard_provider.stages import dbt, export, features, ingest, predict, train, transform
from asgard_provider.stages.base import StageKind, StageModel

#: Every stage kind by its config key; the shorthand keys (``ingest:``, ``dbt:``...) run in this order.
STAGE_KINDS: dict[str, StageKind] = {
    kind.key: kind
    for kind in (ingest.KIND, transform.KIND, dbt.KIND, features.KIND, train.KIND, predict.KIND, export.KIND)
}


class _OneKind(StageModel):
    @model_validator(mode="after")
    def _one_kind(self) -> _OneKind:
        given = [key for key in type(self).model_fields if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one stage kind ({', '.join(STAGE_KINDS)}), got {len(given)}")
        return self


_ENTRY_FIELDS: dict[str, Any] = {key: (kind.model | None, Field(default=None)) for key, kind in STAGE_KINDS.items()}
StageEntry: Any = create_model(
    "StageEntry",
    __base__=_OneKind,
    __doc__="One stage of the ``stages:`` list, written ``{<kind>: {...}}`` (e.g. ``{transform: {name: ...}}``).",
    **_ENTRY_FIELDS,
)
