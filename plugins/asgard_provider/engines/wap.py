"""Write-audit-publish on Iceberg branches: a run writes on its own branch, main moves only after the audit.

A writer resets the run's branch of each table it writes to main's current snapshot (:func:`start_branch`)
and commits on the branch; checks read the branch (:func:`branch_snapshot`); :func:`publish` then
fast-forwards main of every table to its branch snapshot and drops the branch. When another run published the
table in between, the run's commits are replayed onto the new main if they only appended rows or replaced a
recorded slice (:data:`REPLACE_PROPERTY`). A failed audit leaves main where it was and keeps the branch (with a
retention) for inspection. Nothing here imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgard_provider.engines.iceberg_tables import load_table
from asgard_provider.exceptions import CatalogError, PublishConflictError, PublishError

#: Prefix of every run branch (``run_<run id with non-word characters as _>``).
BRANCH_PREFIX = "run_"
#: Days a run branch is kept when nothing publishes it (a failed audit), unless the stage's checks say otherwise.
BRANCH_RETENTION_DAYS = 7
#: Snapshot summary property naming the Airflow run that wrote a snapshot.
RUN_PROPERTY = "asgard.run-id"
#: Snapshot summary property holding the Iceberg filter of the slice a commit deleted (a replay re-applies it).
#: Such a commit only deletes (the files it adds are what it kept of files it rewrote); new rows are appended.
REPLACE_PROPERTY = "asgard.replace-filter"
#: Snapshot summary property of a replayed commit: the branch snapshot it re-applied onto main.
REPLAYED_PROPERTY = "asgard.replayed-from"
_DAY_MS = 24 * 3600 * 1000
#: What to do about a :class:`PublishConflictError` (``name``: the table).
_RETRY = (
    "Retry the task that wrote {name}: it branches again from the new main and publishes on top of it "
    "(a stage with checks: clear the writing task together with its checks)"
)
_NON_WORD = re.compile(r"[^A-Za-z0-9_]")


def run_branch(run_id: str) -> str:
    """Return the branch a run writes on: ``run_`` + the run id, every non-word character replaced by ``_``."""
    if not run_id:
        raise PublishError("a write-audit-publish run needs a run id to name its branch")
    return BRANCH_PREFIX + _NON_WORD.sub("_", run_id)


def retention_ms(days: int) -> int:
    """Return ``days`` in milliseconds (Iceberg's ``max_ref_age_ms``)."""
    return days * _DAY_MS


def start_branch(table: Any, branch: str, retain_days: int = BRANCH_RETENTION_DAYS) -> None:
    """Point ``branch`` of a pyiceberg table at main's current snapshot (a retry starts from main again).

    A table without snapshots (just created) first gets an empty one on main: Iceberg branches start from a
    snapshot. Readers of main then see the table, empty, until the run publishes.
    """
    main = table.current_snapshot()
    if main is None:
        table.append(table.schema().as_arrow().empty_table())
        main = table.refresh().current_snapshot()
    with table.manage_snapshots() as manage:
        manage.create_branch(main.snapshot_id, branch, max_ref_age_ms=retention_ms(retain_days))


def branch_snapshot(table: Any, branch: str) -> int | None:
    """Return the snapshot id ``branch`` points at, or ``None`` when the table has no such branch."""
    ref = table.refs().get(branch)
    return ref.snapshot_id if ref is not None else None


def read_snapshot(table: Any, branch: str | None) -> int | None:
    """Return the snapshot a reader of ``branch`` sees: the branch's if it exists, else main's current one."""
    snapshot = branch_snapshot(table, branch) if branch else None
    if snapshot is not None:
        return snapshot
    current = table.current_snapshot()
    return current.snapshot_id if current is not None else None


@dataclass(frozen=True)
class Published:
    """One table's publish: main moved from ``previous`` to ``snapshot_id`` (equal when nothing was on the branch)."""

    table: str
    snapshot_id: int | None
    previous: int | None

    @property
    def moved(self) -> bool:
        """Whether main now points at a different snapshot."""
        return self.snapshot_id != self.previous


def publish(catalog: Any, tables: Sequence[str], branch: str) -> list[Published]:
    """Move main of every table to its ``branch`` snapshot, then drop the branch.

    Main is fast-forwarded when it is still an ancestor of the branch snapshot. When another run published the
    table since this one branched, the branch's commits are replayed onto the new main in one commit
    (:func:`_replay`): its slice replaces (:data:`REPLACE_PROPERTY`) run again, then its new data files are
    appended. Every table is planned first, so a table that can be neither fast-forwarded nor replayed fails the
    publish before any table moves. Each move is its own atomic commit (the catalog has no multi-table
    transaction): they follow one another at once, in ``tables`` order. A table without the branch (nothing
    written on it this run) is reported unchanged. Publishing again is a no-op.
    """
    plans = [_plan(load_table(catalog, name), name, branch) for name in tables]
    return [_apply(plan, branch) for plan in plans]


def publish_run(catalog: Any, tables: Sequence[str], run_id: str) -> dict[str, Published]:
    """Publish the branch of ``run_id`` (:func:`run_branch`) for ``tables``; return each table's move by name.

    Without a run id the writes went to main (see ``write_batches``) and nothing is published.
    """
    if not run_id:
        return {}
    return {done.table: done for done in publish(catalog, tables, run_branch(run_id))}


@dataclass(frozen=True)
class _Plan:
    """How one table's main moves: to ``target`` (fast-forward) or by replaying ``replay`` onto ``previous``."""

    name: str
    table: Any
    target: int | None
    previous: int | None
    replay: _Replay | None = None


@dataclass(frozen=True)
class _Replay:
    """A branch's net change since it forked from main: slice filters to re-run, data files to append."""

    filters: list[str]
    added: list[Any]
    properties: dict[str, str]


def _plan(table: Any, name: str, branch: str) -> _Plan:
    current = table.current_snapshot()
    previous = current.snapshot_id if current is not None else None
    target = branch_snapshot(table, branch)
    if target is None or previous is None or previous in ancestors(table, target):
        return _Plan(name, table, target, previous)
    return _Plan(name, table, target, previous, _replayable(table, name, branch, target, previous))


def _apply(plan: _Plan, branch: str) -> Published:
    if plan.target is None:
        return Published(plan.name, plan.previous, plan.previous)
    if plan.replay is not None:
        moved_to = _replay(plan.table, plan.name, plan.previous, plan.replay)
        with plan.table.refresh().manage_snapshots() as manage:
            manage.remove_branch(branch)
        return Published(plan.name, moved_to, plan.previous)
    with plan.table.manage_snapshots() as manage:
        if plan.target != plan.previous:
            manage.set_current_snapshot(snapshot_id=plan.target)
        manage.remove_branch(branch)
    return Published(plan.name, plan.target, plan.previous)


def _replayable(table: Any, name: str, branch: str, target: int, main: int) -> _Replay:
    """Return the branch's net change since it forked, or raise :class:`PublishError` if it cannot be replayed.

    Replayable commits append rows, or replace a slice whose filter they recorded; a whole-table overwrite or a
    MERGE (no recorded filter) could drop what the other run published, so it is refused. Only files added by
    append commits are re-appended: the files a slice delete added are the rows it kept of a file it rewrote,
    which the replayed delete rewrites again from the new main (re-appending them would duplicate those rows).
    """
    lineage = set(ancestors(table, main))
    fork, commits = None, []
    for snapshot_id in ancestors(table, target):
        if snapshot_id in lineage:
            fork = snapshot_id
            break
        commits.append(table.snapshot_by_id(snapshot_id))
    if fork is None:
        raise PublishConflictError(
            f"cannot publish branch {branch} of {name}: it shares no snapshot with main (the table was replaced "
            f"since the run branched); nothing moved and the branch is kept. {_RETRY.format(name=name)}"
        )
    filters: list[str] = []
    properties: dict[str, str] = {REPLAYED_PROPERTY: str(target)}
    appended: set[int] = set()
    for snap in reversed(commits):
        props = snap.summary.additional_properties if snap.summary else {}
        replaced = props.get(REPLACE_PROPERTY)
        operation = str(snap.summary.operation.value) if snap.summary else ""
        if replaced is None and operation != "append":
            raise PublishConflictError(
                f"cannot publish branch {branch} of {name}: main moved to snapshot {main} since the run branched "
                f"(another run published {name} in between), and the run's {operation} of snapshot "
                f"{snap.snapshot_id} replaced no recorded slice (a whole-table overwrite or a MERGE), so replaying "
                f"it could drop the other run's rows; nothing moved and the branch is kept. {_RETRY.format(name=name)}"
            )
        if replaced is not None and replaced not in filters:
            filters.append(replaced)
        if operation == "append":
            appended.add(snap.snapshot_id)
        if RUN_PROPERTY in props:
            properties[RUN_PROPERTY] = props[RUN_PROPERTY]
    before = _data_files(table, name, fork)
    live = _data_files(table, name, target).items()
    added = [f for path, (f, by) in live if path not in before and by in appended]
    return _Replay(filters, added, properties)


def _data_files(table: Any, name: str, snapshot_id: int | None) -> dict[str, tuple[Any, int]]:
    """Live data files of a snapshot by path, with the snapshot that added each.

    Raises :class:`PublishError` on delete files (not replayable).
    """
    from pyiceberg.manifest import ManifestContent

    if snapshot_id is None:
        return {}
    files: dict[str, tuple[Any, int]] = {}
    for manifest in table.snapshot_by_id(snapshot_id).manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            raise PublishError(
                f"cannot replay snapshot {snapshot_id} of {name}: it has delete files (a replay re-applies data "
                f"files only); nothing moved: clear the task that wrote {name}"
            )
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            files[entry.data_file.file_path] = (entry.data_file, entry.snapshot_id)
    return files


def _replay(table: Any, name: str, main: int | None, replay: _Replay) -> int:
    """Commit the branch's change onto main in one transaction: re-run each slice replace, append its files."""
    from pyiceberg.exceptions import CommitFailedException

    txn = table.transaction()
    for replaced in replay.filters:
        txn.delete(replaced, snapshot_properties=replay.properties)
    if replay.added:
        with txn.update_snapshot(snapshot_properties=replay.properties).fast_append() as append:
            for data_file in replay.added:
                append.append_data_file(data_file)
    try:
        txn.commit_transaction()
    except CommitFailedException as exc:
        raise PublishConflictError(
            f"{name}: main moved again while replaying onto snapshot {main}; nothing moved. {_RETRY.format(name=name)}"
        ) from exc
    current = table.refresh().current_snapshot()
    return int(current.snapshot_id)


def ancestors(table: Any, snapshot_id: int) -> list[int]:
    """Return ``snapshot_id`` and the ids of its parents, newest first."""
    found = []
    snapshot = table.snapshot_by_id(snapshot_id)
    while snapshot is not None:
        found.append(snapshot.snapshot_id)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return found


def keep_branch(table: Any, branch: str, retain_days: int) -> None:
    """Set how long an unpublished ``branch`` is kept (after a failed audit)."""
    snapshot = branch_snapshot(table, branch)
    if snapshot is not None:
        with table.manage_snapshots() as manage:
            manage.create_branch(snapshot, branch, max_ref_age_ms=retention_ms(retain_days))


@dataclass(frozen=True)
class SnapshotEntry:
    """One snapshot of a table's history, with the refs pointing at it and the run that wrote it."""

    snapshot_id: int
    parent_id: int | None
    committed_at: datetime
    operation: str
    added_records: int
    deleted_records: int
    total_records: int
    refs: list[str]
    run_id: str | None
    on_main: bool


def history(table: Any) -> list[SnapshotEntry]:
    """Every snapshot of a pyiceberg table, oldest first; ``on_main`` marks main's lineage."""
    main = table.current_snapshot()
    lineage = set(ancestors(table, main.snapshot_id)) if main is not None else set()
    refs: dict[int, list[str]] = {}
    for name, ref in sorted(table.refs().items()):
        refs.setdefault(ref.snapshot_id, []).append(f"{ref.snapshot_ref_type.value}:{name}")
    entries = []
    for snap in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
        props = snap.summary.additional_properties if snap.summary else {}
        entries.append(
            SnapshotEntry(
                snapshot_id=snap.snapshot_id,
                parent_id=snap.parent_snapshot_id,
                committed_at=datetime.fromtimestamp(snap.timestamp_ms / 1000, UTC),
                operation=str(snap.summary.operation.value) if snap.summary else "",
                added_records=int(props.get("added-records", 0)),
                deleted_records=int(props.get("deleted-records", 0)),
                total_records=int(props.get("total-records", 0)),
                refs=refs.get(snap.snapshot_id, []),
                run_id=props.get(RUN_PROPERTY),
                on_main=snap.snapshot_id in lineage,
            )
        )
    return entries


#: Table property recording the last rollback (JSON: from, to, at, by), committed with the move itself.
ROLLBACK_PROPERTY = "asgard.last-rollback"


def rollback(table: Any, name: str, snapshot_id: int, by: str = "") -> Published:
    """Point main of ``name`` at ``snapshot_id``, one of its snapshots (newer ones stay for a roll forward).

    The move and a :data:`ROLLBACK_PROPERTY` record of it (who, when, from which snapshot) are one commit.
    """
    import json

    from pyiceberg.table.update.snapshot import ManageSnapshots

    if table.snapshot_by_id(snapshot_id) is None:
        known = ", ".join(str(s.snapshot_id) for s in table.snapshots()) or "none"
        raise CatalogError(f"table {name} has no snapshot {snapshot_id} (snapshots: {known})")
    current = table.current_snapshot()
    previous = current.snapshot_id if current is not None else None
    if previous != snapshot_id:
        record = {"from": previous, "to": snapshot_id, "at": datetime.now(UTC).isoformat(timespec="seconds"), "by": by}
        txn = table.transaction()
        txn.set_properties({ROLLBACK_PROPERTY: json.dumps(record)})
        ManageSnapshots(txn).set_current_snapshot(snapshot_id=snapshot_id)
        txn.commit_transaction()
    return Published(name, snapshot_id, previous)


def resolve_ref(table: Any, name: str, ref: str | int) -> int:
    """Return the snapshot id ``ref`` names in table ``name``: a snapshot id, a tag or a branch.

    Raises :class:`CatalogError` naming the table's tags and branches when it names none of them.
    """
    text = str(ref).strip()
    refs = table.refs()
    if text in refs:
        return int(refs[text].snapshot_id)
    if re.fullmatch(r"-?[0-9]{1,20}", text) and table.snapshot_by_id(int(text)) is not None:
        return int(text)
    known = ", ".join(f"{r.snapshot_ref_type.value}:{n}" for n, r in sorted(refs.items())) or "none"
    raise CatalogError(
        f"table {name} has no snapshot, tag or branch {text!r} (refs: {known}; snapshot ids: tables history)"
    )


def tag(table: Any, name: str, tag_name: str, snapshot_id: int | None = None, retain_days: int | None = None) -> int:
    """Tag ``snapshot_id`` of ``name`` (default: main's current one) as ``tag_name``; return the tagged snapshot.

    A tag keeps its snapshot from expiring (``retain_days``: for that long; default: for ever). An existing tag
    of that name is moved; a branch of that name is refused.
    """
    if not _TAG_NAME.fullmatch(tag_name):
        raise CatalogError(f"tag name {tag_name!r} of {name}: use letters, digits, '.', '_' and '-'")
    refs = table.refs()
    if tag_name in refs and refs[tag_name].snapshot_ref_type.value != "tag":
        raise CatalogError(f"table {name} already has a branch {tag_name!r}: pick another tag name")
    if snapshot_id is None:
        current = table.current_snapshot()
        if current is None:
            raise CatalogError(f"table {name} has no snapshot to tag (no data written yet)")
        snapshot_id = int(current.snapshot_id)
    target = resolve_ref(table, name, snapshot_id)
    with table.manage_snapshots() as manage:
        manage.create_tag(target, tag_name, max_ref_age_ms=retention_ms(retain_days) if retain_days else None)
    return target


_TAG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def tag_snapshot(table: Any, name: str, tag_name: str) -> int:
    """Return the snapshot id tag ``tag_name`` of table ``name`` points at.

    Raises :class:`CatalogError` naming the table's tags when it has no tag of that name (a branch is no tag).
    """
    refs = table.refs()
    ref = refs.get(tag_name)
    if ref is not None and ref.snapshot_ref_type.value == "tag":
        return int(ref.snapshot_id)
    tags = ", ".join(sorted(n for n, r in refs.items() if r.snapshot_ref_type.value == "tag")) or "none"
    raise CatalogError(f"table {name} has no tag {tag_name!r} (its tags: {tags}; add one with `asgard tables tag`)")
