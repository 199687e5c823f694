"""Bounded-memory feature reads: latest rows per entity and point-in-time joins in DuckDB (no Airflow).

Feast's DuckDB offline store reads a whole Iceberg source into memory for every materialization and every
historical retrieval. Here the source is streamed from the Iceberg scan as Arrow record batches (only the columns
needed) into DuckDB, which keeps under :data:`DUCKDB_MEMORY_LIMIT` and spills to a temporary folder beyond it;
results come back as record batches of a given size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from asgard_provider.engines.iceberg_tables import load_table
from asgard_provider.exceptions import CatalogError, FeatureStoreError

#: Memory DuckDB may use for the engines' own queries (materialization, point-in-time joins); it spills beyond.
DUCKDB_MEMORY_LIMIT = "1GB"
#: Threads of those DuckDB queries.
DUCKDB_THREADS = 2
#: Rows per record batch streamed from a materialization into the online store.
MATERIALIZE_BATCH_ROWS = 10_000
#: Timestamp column of a view's rows inside the join database (UTC ``TIMESTAMPTZ``).
_TS = "__asgard_ts"


def quote(name: str) -> str:
    """Quote a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def bounded_duckdb(memory_limit: str = DUCKDB_MEMORY_LIMIT, threads: int = DUCKDB_THREADS) -> Iterator[Any]:
    """Open DuckDB on a scratch database file, bounded to ``memory_limit``, spilling to a temporary folder."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="asgard-duckdb-") as scratch:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": memory_limit,
            "threads": threads,
            "temp_directory": str(Path(scratch) / "spill"),
            "preserve_insertion_order": False,
        }
        con = duckdb.connect(str(Path(scratch) / "work.duckdb"), config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def scan_batches(
    catalog: Any, table_name: str, columns: Sequence[str], snapshot_id: int | None = None
) -> pa.RecordBatchReader:
    """Stream ``columns`` of an Iceberg table (at ``snapshot_id``; ``None``: current) as Arrow record batches."""
    at = "" if snapshot_id is None else f" at snapshot {snapshot_id}"
    try:
        table = load_table(catalog, table_name)
        if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is None:
            raise ValueError(f"no snapshot {snapshot_id} (expired, or of another table)")
        scan = table.scan(selected_fields=tuple(dict.fromkeys(columns)), snapshot_id=snapshot_id)
        return scan.to_arrow_batch_reader()
    except (CatalogError, ValueError) as exc:
        raise FeatureStoreError(f"cannot read {', '.join(columns)} from Iceberg table {table_name}{at}: {exc}") from exc


def latest_rows(
    catalog: Any,
    table_name: str,
    keys: Sequence[str],
    timestamp_field: str,
    features: Sequence[str],
    window: tuple[datetime, datetime],
    batch_rows: int = MATERIALIZE_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Yield, in batches of ``batch_rows``, each entity's latest row with a timestamp in ``window`` (inclusive).

    This is what Feast materializes: one row per key tuple, the one with the greatest timestamp. The rows come in
    key order, so an online store's index takes them at a few insertion points instead of at random (1M entities
    into the SQLite online store: 151 s in key order, 209 s in random order; docs/performance.md).
    """
    if batch_rows <= 0:
        raise FeatureStoreError(f"batch size must be positive, got {batch_rows}")
    columns = list(dict.fromkeys([*keys, timestamp_field, *features]))
    reader = scan_batches(catalog, table_name, columns)
    aware = getattr(reader.schema.field(timestamp_field).type, "tz", None) is not None
    start, end = (t if aware else t.replace(tzinfo=None) for t in window)
    ts, partition = quote(timestamp_field), ", ".join(map(quote, keys))
    latest = f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {ts} DESC) = 1"
    picked = ", ".join(map(quote, columns))
    sql = f"SELECT {picked} FROM offline_rows WHERE {ts} BETWEEN $start AND $end {latest} ORDER BY {partition}"  # noqa: S608
    with bounded_duckdb() as con:
        con.register("offline_rows", reader)
        result = con.execute(sql, {"start": start, "end": end}).to_arrow_reader(batch_rows)
        yield from result


@dataclass(frozen=True)
class ViewSource:
    """One feature view as a point-in-time join reads it: its Iceberg table, keys, timestamp, TTL and features."""

    name: str
    table: str
    keys: tuple[str, ...]
    timestamp_field: str
    ttl: timedelta | None
    features: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the view as JSON-able values (the TTL in seconds), as a pod spec or a training context holds it."""
        ttl = None if self.ttl is None else self.ttl.total_seconds()
        return {
            "name": self.name,
            "table": self.table,
            "keys": list(self.keys),
            "timestamp_field": self.timestamp_field,
            "ttl_seconds": ttl,
            "features": list(self.features),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewSource:
        """Inverse of :meth:`to_dict`; raise :class:`FeatureStoreError` naming what is missing."""
        try:
            ttl = data["ttl_seconds"]
            return cls(
                name=str(data["name"]),
                table=str(data["table"]),
                keys=tuple(data["keys"]),
                timestamp_field=str(data["timestamp_field"]),
                ttl=None if ttl is None or float(ttl) <= 0 else timedelta(seconds=float(ttl)),
                features=tuple(data["features"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureStoreError(f"invalid feature view description {dict(data)!r}: {exc!r}") from exc


def _by_view(refs: Sequence[str]) -> dict[str, list[str]]:
    """Group ``view:feature`` refs by view, in the order they are first named."""
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        view, _, feature = ref.partition(":")
        if not feature:
            raise FeatureStoreError(f"feature ref {ref!r} is not of the form view:feature")
        wanted.setdefault(view, []).append(feature)
    return wanted


def requested_views(views: Iterable[ViewSource], refs: Sequence[str]) -> list[ViewSource]:
    """Select the features ``refs`` name from described ``views``: one :class:`ViewSource` per view named.

    Raise :class:`FeatureStoreError` naming the ref whose view is not described or lacks the feature.
    """
    known = {view.name: view for view in views}
    selected = []
    for name, features in _by_view(refs).items():
        view = known.get(name)
        if view is None:
            described = ", ".join(known) or "none"
            raise FeatureStoreError(
                f"feature ref {f'{name}:{features[0]}'!r}: view {name!r} is not among the described views ({described})"
            )
        for feature in features:
            if feature not in view.features:
                ref = f"{name}:{feature}"
                raise FeatureStoreError(f"feature ref {ref!r}: view {name!r} ({view.table}) has no feature {feature!r}")
        selected.append(replace(view, features=tuple(features)))
    return selected


def view_sources(feast_store: Any, refs: Sequence[str]) -> list[ViewSource]:
    """Resolve ``view:feature`` refs against the Feast registry into one :class:`ViewSource` per view."""
    sources = []
    for name, features in _by_view(refs).items():
        try:
            view = feast_store.get_feature_view(name)
        except Exception as exc:
            raise FeatureStoreError(f"feature view {name!r} is not registered: {exc}") from exc
        source = view.batch_source
        if not hasattr(source, "iceberg_table"):
            raise FeatureStoreError(f"feature view {name!r} does not read an Iceberg table")
        known = {f.name for f in view.features}
        unknown = [f for f in features if f not in known]
        if unknown:
            raise FeatureStoreError(f"feature view {name!r} has no feature(s) {', '.join(unknown)}")
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
        table = f"{source.namespace}.{source.iceberg_table}"
        sources.append(ViewSource(name, table, tuple(view.join_keys), source.timestamp_field, ttl, tuple(features)))
    return sources


class PointInTimeJoin:
    """Feast's point-in-time join in DuckDB, one batch of entity rows at a time.

    Each entity row gets each view's latest values at or before its ``event_timestamp`` and within the view's
    TTL (else nulls). The views' tables are streamed once into a bounded scratch database
    (:func:`bounded_duckdb`), each at its snapshot in ``snapshots`` (view name -> Iceberg snapshot id; a view not
    there: the current snapshot); :meth:`fetch` then joins one batch of entity rows at a time. Use as a context
    manager.
    """

    def __init__(
        self,
        catalog: Any,
        views: Sequence[ViewSource],
        row_id: str,
        event_timestamp: str,
        snapshots: Mapping[str, int] | None = None,
    ) -> None:
        names = [f for v in views for f in v.features]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise FeatureStoreError(f"feature(s) {', '.join(twice)} come from more than one feature view")
        self.catalog, self.views, self.row_id, self.event_timestamp = catalog, list(views), row_id, event_timestamp
        self.snapshots = dict(snapshots or {})
        self._con: Any = None
        self._stack: Any = None

    def __enter__(self) -> PointInTimeJoin:
        self._stack = bounded_duckdb()
        self._con = self._stack.__enter__()
        try:
            for i, view in enumerate(self.views):
                self._load(f"view_{i}", view)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
        self._con = self._stack = None

    def _load(self, name: str, view: ViewSource) -> None:
        columns = [*view.keys, view.timestamp_field, *view.features]
        try:
            reader = scan_batches(self.catalog, view.table, columns, self.snapshots.get(view.name))
        except FeatureStoreError as exc:
            raise FeatureStoreError(f"feature view {view.name!r}: {exc}") from exc
        self._con.register("view_rows", reader)
        ts = quote(view.timestamp_field)
        picked = ", ".join([*map(quote, view.keys), *map(quote, view.features), f"CAST({ts} AS TIMESTAMPTZ) AS {_TS}"])
        self._con.execute(f"CREATE TABLE {name} AS SELECT {picked} FROM view_rows WHERE {ts} IS NOT NULL")  # noqa: S608
        self._con.unregister("view_rows")

    def fetch(self, entities: Any) -> Any:
        """Join every view onto ``entities`` (a frame with the keys, the event timestamp and the row id)."""
        return self._joined(entities, lambda result: result.df())

    def fetch_arrow(self, entities: Any) -> pa.Table:
        """:meth:`fetch` as an Arrow table (its ``to_pandas()`` types features as Feast's retrieval does)."""
        return self._joined(entities, lambda result: result.fetch_arrow_table())

    def _joined(self, entities: Any, collect: Callable[[Any], Any]) -> Any:
        if self._con is None:
            raise FeatureStoreError("PointInTimeJoin.fetch outside its with block")
        missing = sorted({k for v in self.views for k in v.keys} - set(entities.columns))
        if missing:
            raise FeatureStoreError(f"entity rows lack the join key(s) {', '.join(missing)}")
        event = f"e.{quote(self.event_timestamp)}"
        columns, joins = [f"e.{quote(self.row_id)}"], []
        for i, view in enumerate(self.views):
            alias = f"v{i}"
            on = " AND ".join(f"e.{quote(k)} = {alias}.{quote(k)}" for k in view.keys)
            joins.append(f"ASOF LEFT JOIN view_{i} AS {alias} ON {on} AND {event} >= {alias}.{_TS}")
            fresh = "TRUE" if view.ttl is None else f"{alias}.{_TS} >= {event} - to_microseconds($ttl{i})"
            columns += [f"CASE WHEN {fresh} THEN {alias}.{quote(f)} END AS {quote(f)}" for f in view.features]
        params = {f"ttl{i}": int(v.ttl.total_seconds() * 1_000_000) for i, v in enumerate(self.views) if v.ttl}
        frame = entities[[self.row_id, self.event_timestamp, *dict.fromkeys(k for v in self.views for k in v.keys)]]
        self._con.register("entity_rows", frame)
        try:
            sql = f"SELECT {', '.join(columns)} FROM entity_rows AS e {' '.join(joins)}"  # noqa: S608
            return collect(self._con.execute(sql, params))
        finally:
            self._con.unregister("entity_rows")
