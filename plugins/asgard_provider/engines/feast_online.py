"""Feast's SQLite online store with a batched write: the embedded default's online store (no Airflow).

Feast's own :class:`~feast.infra.online_stores.sqlite.SqliteOnlineStore` upserts each (entity, feature) row with
its own ``execute`` call, in the order the rows arrive. :class:`BulkSqliteOnlineStore` writes the same rows (same
table, same bytes, same last-write-wins order) with one ``executemany`` per batch, sorted by primary key so the
index inserts are sequential. Reading, table creation and teardown are Feast's, unchanged. A view with vector
search or the ``value_num`` column takes Feast's own write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
    adapt_datetime_epoch,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc

from asgard_provider.engines.stores import BULK_SQLITE_TYPE

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]


class BulkSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Feast's SQLite online store settings, selecting :class:`BulkSqliteOnlineStore`."""

    type: str = BULK_SQLITE_TYPE  # type: ignore[assignment]  # Feast's is a Literal of its own class paths


class BulkSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store, writing each batch with one sorted ``executemany``."""

    def online_write_batch(
        self,
        config: Any,
        table: Any,
        data: Sequence[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert ``data`` into ``table``'s rows as Feast's SQLite store does, in one statement per batch."""
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        store = config.online_store
        value_num = store.enable_openai_compatible_store and self._check_table_has_value_num(conn, name)
        if store.vector_enabled or value_num:
            super().online_write_batch(config, table, list(data), progress)
            return
        rows = _rows(data, config.entity_key_serialization_version)
        rows.sort(key=lambda row: (row[0], row[1]))  # stable: a key's later row still wins
        # The table name is Feast's, quoted as Feast quotes it; the values are bound.
        sql = (
            f"INSERT INTO {_quote_id(name)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts;"
        )
        with conn:
            conn.executemany(sql, rows)
        if progress:
            progress(len(data))


def _rows(data: Sequence[Row], key_version: int) -> list[tuple[bytes, str, bytes, str | None, int, int | None]]:
    """One SQLite row per entity and feature, with the values Feast's own write binds."""
    rows = []
    for entity_key, values, event_ts, created_ts in data:
        key = serialize_entity_key(entity_key, entity_key_serialization_version=key_version)
        event = adapt_datetime_epoch(to_naive_utc(event_ts))
        created = adapt_datetime_epoch(to_naive_utc(created_ts)) if created_ts is not None else None
        for feature, value in values.items():
            text = extract_text_and_num(value, False)[0]
            rows.append((key, feature, value.SerializeToString(), text, event, created))
    return rows
