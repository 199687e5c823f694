"""What every stage kind shares: config building blocks and the shape of a stage in the pipeline graph."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from asgard_provider.catalog import split_table_name
from asgard_provider.exceptions import CatalogError

#: Longest pipeline id or stage name.
NAME_MAX_LENGTH = 63
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")  # \Z: ``$`` would accept a trailing newline
#: What a pipeline id or stage name must look like (the message of every name check).
NAME_RULE = (
    f"use lowercase letters, digits and underscores, starting with a letter, at most {NAME_MAX_LENGTH} characters"
)

#: Jinja expression for the date a run's data is "as of": the end of its data interval.
AS_OF = "{{ data_interval_end | ds }}"


def is_name(value: str, max_length: int = NAME_MAX_LENGTH) -> bool:
    """Whether ``value`` is a pipeline id or stage name: lowercase letters, digits, underscores, a letter first."""
    return len(value) <= max_length and bool(_NAME.match(value))


def _table(value: str) -> str:
    try:
        namespace, table = split_table_name(value)
    except CatalogError as exc:
        raise ValueError(str(exc)) from None
    return f"{namespace}.{table}"


TableName = Annotated[str, AfterValidator(_table)]
"""An Iceberg table as ``namespace.table`` (``iceberg.`` prefix allowed), identifiers validated."""


class StageModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Read:
    """Something a stage reads: a table (``namespace.table``) or a resource such as ``feast:<view>``.

    A read with a ``key`` must be written by an earlier stage; ``missing`` is the problem reported otherwise.
    """

    name: str
    key: str | None = None
    missing: str = ""
    #: the table may be another pipeline's (read in place): then no stage of this pipeline needs to write it
    external: bool = False


@dataclass(frozen=True)
class Write:
    """Something a stage writes; a write with a ``key`` is a table, and no other stage may write it."""

    name: str
    key: str | None = None
    #: what the table is when its name is derived, e.g. ``quarantine table of silver.orders``
    what: str = ""


@dataclass(frozen=True)
class ColumnUse:
    """A column a stage reads from a table, the config key naming it and, for a feature, its declared dtype."""

    table: str
    column: str
    key: str
    dtype: str | None = None


@dataclass(frozen=True)
class TableColumns:
    """The columns a stage declares for a table it writes (name -> SQL data type, or None), and where."""

    #: where the columns are declared, e.g. ``include/dbt/p/models/gold/m.yml (contract of model m)``
    source: str
    columns: Mapping[str, str | None]


@dataclass(frozen=True)
class StageSpec:
    """One configured stage as its kind describes it: tasks, reads, writes and config-local problems."""

    label: str
    tasks: tuple[str, ...]
    reads: tuple[Read, ...] = ()
    writes: tuple[Write, ...] = ()
    #: the stage's ``name:`` key, unique across the pipeline
    name: str | None = None
    problems: tuple[str, ...] = ()
    #: columns the stage reads, checked against what the writer of each table declares
    uses: tuple[ColumnUse, ...] = ()


@dataclass(frozen=True, eq=False)
class Node:
    """A stage in the pipeline graph: its kind, where the config declares it, and the stages it needs."""

    kind: StageKind
    where: str
    config: Any
    #: the nearest earlier stage of each kind this stage needs (train: its features stage)
    inputs: Mapping[str, Node]
    spec: StageSpec
    #: the stages of the same kind just before this one, with no other kind between (a feature set's views)
    run: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Built:
    """The tasks of one stage: where upstream edges end, where downstream ones start, and per table written."""

    entry: Any
    exit: Any
    #: the task after which a table is ready, when not ``exit`` (a table published before the stage's last task)
    ready: Mapping[str, Any] = field(default_factory=dict)
    #: the task that reads a resource, when not ``entry``: it waits only for the task making that resource ready
    start: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageKind:
    """One kind of stage: its config model, how it describes a configured stage, and how it builds tasks."""

    key: str
    model: type[BaseModel]
    spec: Callable[[Any, str, Path, Mapping[str, Node]], StageSpec]
    build: Callable[[Node, Path], Built]
    #: kind -> problem reported when no earlier stage of that kind exists
    needs: Mapping[str, str] = field(default_factory=dict)
    #: ``reads``: wait for the writers of the tables read; ``previous``: wait for the previous kind's stages
    waits_for: Literal["reads", "previous"] = "previous"
    #: same-kind stages in a row run one after another, each receiving the one before as its own kind's input
    chained: bool = False
    #: trigger-form parameters (name -> ``airflow.sdk.Param``) the stage's tasks read
    params: Callable[[Any], dict[str, Any]] = lambda config: {}
    #: problems of the configured stage under the pipeline's ``schedule`` (config, where, schedule)
    on_schedule: Callable[[Any, str, str | None], tuple[str, ...]] = lambda config, where, schedule: ()
    #: the columns the configured stage declares for a table it writes (config, base, table); None: not known
    columns: Callable[[Any, Path, str], TableColumns | None] = lambda config, base, table: None
