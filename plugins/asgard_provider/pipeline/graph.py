"""The table graph of one pipeline: its stages in run order, what each reads and writes, and who waits for whom.

Validation (:attr:`PipelineGraph.problems`), the DAG factory (:meth:`PipelineGraph.upstream`) and ``asgard show``
(:meth:`PipelineGraph.describe`) all read this one graph; the stage kinds in :mod:`asgard_provider.stages`
say what each stage reads, writes and runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from asgard_provider.pipeline.yaml_loader import load_yaml
from asgard_provider.stages import STAGE_KINDS
from asgard_provider.stages.base import NAME_RULE, Node, Read, StageKind, TableColumns, Write, is_name
from asgard_provider.stages.columns import column_problems, undeclared_warning

if TYPE_CHECKING:
    from asgard_provider.pipeline.config import PipelineConfig


def configured_stages(cfg: PipelineConfig) -> Iterator[tuple[StageKind, str, Any]]:
    """Yield the stages of ``cfg`` in run order, with where the config declares each (``transform[1]``, ``dbt``)."""
    for key, kind in STAGE_KINDS.items():
        value = getattr(cfg, key, None)  # kinds without a shorthand key appear only under ``stages:``
        if isinstance(value, list):
            yield from ((kind, f"{key}[{i}]", stage) for i, stage in enumerate(value))
        elif value is not None:
            yield kind, key, value
    for i, entry in enumerate(cfg.stages):
        key = next(key for key in STAGE_KINDS if getattr(entry, key) is not None)
        yield STAGE_KINDS[key], f"stages[{i}].{key}", getattr(entry, key)


_Stage = TypeVar("_Stage")


def stages_of(cfg: PipelineConfig, model: type[_Stage]) -> list[_Stage]:
    """Return the stages of ``cfg`` whose config model is ``model`` (shorthand keys and ``stages:``), in run order."""
    return [stage for _, _, stage in configured_stages(cfg) if isinstance(stage, model)]


def _written(write: Write) -> str:
    return f"{write.name} ({write.what})" if write.what else write.name


def _owner(node: Node, write: Write) -> str:
    return f"{node.where} ({write.what})" if write.what else node.where


def _task_and_group_ids(task: str) -> set[str]:
    """``gold.orders`` -> itself and its task group ``gold``."""
    parts = task.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def _collision(node: Node, other: Node, task_id: str) -> str:
    """Blame the stage whose ``name`` can be changed, else the later one."""
    named, first = (other, node) if other.spec.name and not node.spec.name else (node, other)
    if named.spec.name:
        return (
            f"{named.where}.name: {named.spec.name!r} collides with task id {task_id!r} of {first.where} "
            f"({first.kind.key}); rename the stage"
        )
    named_kind = "name" in node.kind.model.model_fields
    hint = "give each stage of this kind a name" if named_kind else "a pipeline holds one stage of this kind"
    return f"{node.where}: task id {task_id!r} is also a task of {other.where}; {hint}"


class PipelineGraph:
    """Stages in run order; each table has one writer, and each read names a table an earlier stage writes."""

    def __init__(self, cfg: PipelineConfig, base: Path, *, other_pipelines: bool = True) -> None:
        self.pipeline = cfg.pipeline
        self.nodes: list[Node] = []
        latest: dict[str, Node] = {}
        for kind, where, config in configured_stages(cfg):
            run = self._run_of(kind)
            inputs = {needed: latest[needed] for needed in kind.needs if needed in latest}
            if kind.chained and run:
                inputs[kind.key] = run[-1]
            node = Node(kind, where, config, inputs, kind.spec(config, where, base, inputs), run)
            self.nodes.append(node)
            latest[kind.key] = node
        self._base = base
        self._other_pipelines = other_pipelines
        self._elsewhere: dict[str, tuple[str, Node]] | None = None
        self._writers: dict[str, tuple[Node, Write]] = {}
        self._upstream: dict[Node, list[tuple[Node, str | None]]] = {}
        #: tables read in place from another pipeline: table -> the pipeline writing it
        self.external: dict[str, str] = {}
        #: every problem found, each naming the config key and the fix
        self.problems = self._name_problems() or self._task_problems()
        #: what could not be checked (a Gold model declaring no columns); ``asgard validate --strict`` fails on it
        self.warnings: list[str] = []
        self._declared: dict[str, TableColumns | None] = {}
        for node in self.nodes:
            self.problems += self._add(node)
            self.problems += list(node.kind.on_schedule(node.config, node.where, cfg.schedule))
            if other_pipelines:
                self.problems += self._column_problems(node, base)

    def _run_of(self, kind: StageKind) -> tuple[Node, ...]:
        """Return the stages of ``kind`` at the end of the graph so far, with no other kind after them."""
        run: list[Node] = []
        for node in reversed(self.nodes):
            if node.kind is not kind:
                break
            run.insert(0, node)
        return tuple(run)

    def _written_elsewhere(self) -> dict[str, tuple[str, Node]]:
        """Tables the other pipelines of ``include/pipelines/`` write: table -> (pipeline, writing stage)."""
        if self._elsewhere is None:
            from asgard_provider.pipeline.config import PipelineConfig

            self._elsewhere = {}
            folder = self._base / "pipelines"
            for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
                try:
                    other = PipelineConfig.model_validate(load_yaml(path))
                    if other.pipeline == self.pipeline:
                        continue
                    graph = PipelineGraph(other, self._base, other_pipelines=False)
                except Exception:  # noqa: S112 - a broken pipeline fails its own validation, not this one's
                    continue
                for table, (node, _) in graph._writers.items():
                    self._elsewhere.setdefault(table, (other.pipeline, node))
        return self._elsewhere

    def _external(self, read: Read) -> bool:
        """Whether ``read`` is another pipeline's table (recorded in :attr:`external`)."""
        if not (read.external and self._other_pipelines):
            return False
        found = self._written_elsewhere().get(read.name)
        if found is not None:
            self.external[read.name] = found[0]
        return found is not None

    def _name_problems(self) -> list[str]:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for node in self.nodes:
            name = node.spec.name
            if name is None:
                continue
            if not is_name(name):
                problems.append(f"{node.where}.name: {name!r}: {NAME_RULE}")
            if name in seen:
                problems.append(f"{node.where}.name: {name!r} is already used by {seen[name]}")
            seen.setdefault(name, node.where)
        return problems

    def _task_problems(self) -> list[str]:
        """Each Airflow task id and task group id belongs to one stage (a stage named ``gold`` is dbt's group)."""
        problems: list[str] = []
        owners: dict[str, Node] = {}
        for node in self.nodes:
            for task_id in sorted({part for task in node.spec.tasks for part in _task_and_group_ids(task)}):
                other = owners.setdefault(task_id, node)
                if other is not node:
                    problems.append(_collision(node, other, task_id))
        return problems

    def _add(self, node: Node) -> list[str]:
        """Check ``node`` against the stages before it, then record what it waits for and what it writes."""
        problems = list(node.spec.problems)
        problems += [f"{node.where}: {text}" for kind, text in node.kind.needs.items() if kind not in node.inputs]
        self._upstream[node] = [] if node.kind.waits_for == "reads" else [(n, None) for n in self._previous(node)]
        if node.kind.chained and node.run:
            self._upstream[node].append((node.run[-1], None))
        for read in node.spec.reads:
            if read.key is None or (read.name not in self._writers and self._external(read)):
                continue
            if read.name not in self._writers:
                earlier = ", ".join(sorted(self._writers)) or "none"
                problems.append(f"{read.key}: {read.missing} (earlier outputs: {earlier})")
            elif node.kind.waits_for == "reads":
                self._upstream[node].append((self._writers[read.name][0], read.name))
        for write in node.spec.writes:
            if write.key is None:
                continue
            if write.name in self._writers:
                owner = _owner(*self._writers[write.name])
                problems.append(f"{write.key}: {_written(write)} is also written by {owner}")
            else:
                self._writers[write.name] = (node, write)
        return problems

    def _column_problems(self, node: Node, base: Path) -> list[str]:
        """Check the columns ``node`` reads against what each table's writer declares (nothing declared: warn)."""
        problems: list[str] = []
        unchecked: dict[str, tuple[TableColumns, list[str]]] = {}
        for use in node.spec.uses:
            writer = self._writer(use.table)
            if writer is None:
                continue  # reported as a read no earlier stage writes
            if use.table not in self._declared:  # one look-up per table: it reads YAML files and the manifest
                self._declared[use.table] = writer.kind.columns(writer.config, base, use.table)
            declared = self._declared[use.table]
            if declared is None:
                continue  # e.g. a Silver table of a Spark SQL transform: no static schema
            if not declared.columns:
                unchecked.setdefault(use.table, (declared, []))[1].append(use.key)
            problems += column_problems(use, declared)
        self.warnings += [undeclared_warning(table, found, keys) for table, (found, keys) in unchecked.items()]
        return problems

    def _writer(self, table: str) -> Node | None:
        """Return the stage writing ``table``: in this pipeline, or in the other pipeline it is read from."""
        if table in self._writers:
            return self._writers[table][0]
        if table in self.external:
            return self._written_elsewhere()[table][1]
        return None

    def notes(self) -> list[str]:
        """Say what validation found in a valid pipeline: the tables it reads from other pipelines."""
        return [f"{table} is read in place from pipeline {owner}" for table, owner in sorted(self.external.items())]

    def _previous(self, node: Node) -> list[Node]:
        """Return the run of same-kind stages just before ``node``'s own run (all transforms, for dbt)."""
        before = self.nodes[: self.nodes.index(node)]
        runs = [list(run) for _, run in groupby(before, key=lambda n: n.kind.key)]
        if runs and runs[-1][0].kind is node.kind:
            runs.pop()
        return runs[-1] if runs else []

    def _shown(self, table: str) -> str:
        owner = self.external.get(table)
        return f"{table} (pipeline {owner})" if owner else table

    def upstream(self, node: Node) -> list[tuple[Node, str | None]]:
        """Return the stages ``node`` waits for, each with the table it waits on (``None``: the whole stage)."""
        return self._upstream[node]

    def describe(self) -> list[dict[str, Any]]:
        """Every stage in run order: kind, name, Airflow task ids and what it reads and writes."""
        return [
            {
                "stage": node.kind.key,
                "name": node.spec.label,
                "tasks": list(node.spec.tasks),
                "reads": [self._shown(read.name) for read in node.spec.reads],
                "writes": [write.name for write in node.spec.writes],
            }
            for node in self.nodes
        ]
