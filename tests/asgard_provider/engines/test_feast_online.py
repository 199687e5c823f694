from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RepoConfig
from feast.types import Bool, Float64, Int64, String

from asgard_provider.engines.feast_online import BulkSqliteOnlineStore
from asgard_provider.engines.stores import BULK_SQLITE_TYPE

WHEN = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _store(root: Path, online_type: str) -> FeatureStore:
    root.mkdir()
    config = RepoConfig(
        project="bulk",
        provider="local",
        registry=str(root / "registry.db"),
        online_store={"type": online_type, "path": str(root / "online.db")},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    store = FeatureStore(config=config)
    account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
    region = Entity(name="region", join_keys=["region"], value_type=ValueType.STRING)  # a two-part entity key
    schema = [
        Field(name="balance", dtype=Float64),
        Field(name="visits", dtype=Int64),
        Field(name="tier", dtype=String),
        Field(name="active", dtype=Bool),
        Field(name="account_id", dtype=Int64),
        Field(name="region", dtype=String),
    ]
    source = FileSource(path=str(root / "unused.parquet"), timestamp_field="as_of", created_timestamp_column="created")
    store.apply(
        [account, region, FeatureView(name="accounts", entities=[account, region], schema=schema, source=source)]
    )
    return store


def _batch(rows: int, shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "account_id": [i % 50 for i in range(rows)],  # each key twice: the later row must win
            "region": ["eu" if i % 3 else "us" for i in range(rows)],
            "balance": [i * 1.5 + shift for i in range(rows)],
            "visits": [i for i in range(rows)],
            "tier": [f"t{i % 4}" for i in range(rows)],
            "active": [i % 2 == 0 for i in range(rows)],
            "as_of": [WHEN + timedelta(seconds=i) for i in range(rows)],
            "created": [WHEN + timedelta(minutes=i) for i in range(rows)],
        }
    )
    frame.loc[7, "balance"] = None  # a missing value is stored as an empty Value, as Feast does
    return frame


def _rows(store: FeatureStore) -> list[tuple[object, ...]]:
    path = store.config.online_store.path
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM bulk_accounts ORDER BY entity_key, feature_name").fetchall()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[FeatureStore, FeatureStore]:
    return _store(tmp_path / "feast", "sqlite"), _store(tmp_path / "bulk", BULK_SQLITE_TYPE)


def test_bulk_write_stores_the_rows_feasts_own_write_stores(stores: tuple[FeatureStore, FeatureStore]) -> None:
    feast_store, bulk_store = stores
    assert isinstance(bulk_store._get_provider().online_store, BulkSqliteOnlineStore)
    for shift in (0.0, 0.25):  # the second write updates every row in place
        for store in stores:
            store.write_to_online_store("accounts", df=_batch(100, shift), transform_on_write=False)
        written = _rows(bulk_store)
        keys = {(i % 50, "eu" if i % 3 else "us") for i in range(100)}
        assert len(written) == len(keys) * 4  # one row per key and feature: repeated keys were upserted
        assert written == _rows(feast_store)


def test_bulk_written_rows_are_served_online(stores: tuple[FeatureStore, FeatureStore]) -> None:
    _, bulk_store = stores
    bulk_store.write_to_online_store("accounts", df=_batch(100), transform_on_write=False)
    served = bulk_store.get_online_features(
        features=["accounts:balance", "accounts:visits", "accounts:tier", "accounts:active"],
        entity_rows=[
            {"account_id": 7, "region": "eu"},
            {"account_id": 7, "region": "us"},
            {"account_id": 2, "region": "eu"},
        ],
    ).to_dict()
    # (7, eu) is row 7 alone, (7, us) row 57 alone; (2, eu) is rows 2 and 52, and the later one wins
    assert served["balance"] == [None, 57 * 1.5, 52 * 1.5]
    assert served["visits"] == [7, 57, 52]
    assert served["tier"] == ["t3", "t1", "t0"]
    assert served["active"] == [False, False, True]
