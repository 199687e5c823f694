"""Generate the retail demand forecasting example's sources: stores, SKUs, daily sales and planned promotions.

``python -m asgard_demo.demand --out DIR --as-of DATE --scale S`` writes:

- ``DIR/retail.db`` (SQLite): ``stores``, ``skus`` (the product catalog: category, price, pack size, shelf life),
  ``daily_sales`` (one row per store, SKU and day, zeros included, up to the day before ``as_of``) and
  ``promotions`` (planned chain-wide promotions per SKU, known in advance, some after ``as_of``),
- ``DIR/manifest.json``: rows per table, planted dirty rows, the categories and the scored store x SKU pairs.

Each category has its own weekly shape (fresh food peaks at the weekend, household goods on Mondays) and its
own promotion lift (fresh 1.7x, dry 2.2x, household 2.6x). A SKU's base rate falls with its price and rises
with the store's size. So the units of the next 7 days are learnable from the recent level, the promotion days
planned ahead and the SKU's price, differently per category.

Dirty rows are extra ``daily_sales`` rows Silver must quarantine (one defect each), so
``daily_sales - sum(dirty) == rows Silver keeps``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asgard_demo.sources import dirty_count, run_cli, write_manifest, write_sqlite

DEFAULT_STORES = 20
DEFAULT_SKUS = 90
#: Days of sales history before as_of (the run on as_of forecasts the 7 days after it).
HISTORY_DAYS = 120
RETAIL_FILE = "retail.db"
FIRST_STORE_ID = 1
FIRST_SKU_ID = 1001
#: Category -> (weekly shape Monday..Sunday, promotion lift, units per day at the reference price).
CATEGORIES: dict[str, tuple[tuple[float, ...], float, float]] = {
    "fresh": ((0.8, 0.8, 0.9, 1.0, 1.2, 1.5, 1.3), 1.7, 9.0),
    "dry": ((1.0, 1.0, 1.0, 1.0, 1.1, 1.0, 0.9), 2.2, 5.0),
    "household": ((1.4, 1.0, 0.9, 0.9, 1.0, 1.0, 0.8), 2.6, 3.0),
}
#: Share of the clean daily_sales rows added once more with one defect that Silver quarantines.
DIRTY_RATES: dict[str, float] = {"unknown_store": 0.002, "negative_units": 0.003, "duplicate": 0.003}
UNKNOWN_STORE_ID = 9_999


def _skus(rng: np.random.Generator, n: int) -> pd.DataFrame:
    categories = np.array(list(CATEGORIES))[np.arange(n) % len(CATEGORIES)]
    price = np.round(rng.lognormal(np.log(4.0), 0.5, n), 2)
    return pd.DataFrame(
        {
            "sku_id": np.arange(FIRST_SKU_ID, FIRST_SKU_ID + n),
            "sku_name": [f"SKU {i:05d}" for i in range(n)],
            "category": categories.astype(object),
            "unit_price": price,
            "pack_size": rng.choice((1, 2, 4, 6, 12), n),
            "shelf_life_days": np.where(categories == "fresh", rng.integers(3, 15, n), rng.integers(180, 720, n)),
            "launched_on": "2020-01-01",
        }
    )


def _stores(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store_id": np.arange(FIRST_STORE_ID, FIRST_STORE_ID + n),
            "region": rng.choice(("north", "south", "east", "west"), n).astype(object),
            "size_factor": np.round(rng.uniform(0.5, 2.0, n), 2),
        }
    )


def _promotions(rng: np.random.Generator, skus: pd.DataFrame, first: date, as_of: date) -> pd.DataFrame:
    """Three to six promotions of 3 to 7 days per SKU, spread over the history and the 2 weeks after as_of."""
    rows = []
    span = (as_of - first).days + 14
    for sku in skus["sku_id"]:
        for start in sorted(rng.choice(span, size=rng.integers(3, 7), replace=False)):
            begin = first + timedelta(days=int(start))
            rows.append((int(sku), begin.isoformat(), (begin + timedelta(days=int(rng.integers(2, 7)))).isoformat()))
    frame = pd.DataFrame(rows, columns=["sku_id", "start_date", "end_date"])
    frame.insert(0, "promotion_id", np.arange(1, len(frame) + 1))
    return frame


def _promo_days(promotions: pd.DataFrame, skus: pd.DataFrame, days: pd.DatetimeIndex) -> np.ndarray:
    """(sku, day) -> 1 when a promotion of the SKU covers the day."""
    index = {sku: i for i, sku in enumerate(skus["sku_id"])}
    flags = np.zeros((len(skus), len(days)), dtype=np.int64)
    for row in promotions.itertuples():
        covered = (days >= pd.Timestamp(row.start_date)) & (days <= pd.Timestamp(row.end_date))
        flags[index[row.sku_id], covered] = 1
    return flags


def _sales(
    rng: np.random.Generator, stores: pd.DataFrame, skus: pd.DataFrame, promo: np.ndarray, days: pd.DatetimeIndex
) -> pd.DataFrame:
    """Poisson units per store, SKU and day: base rate x store size x weekly shape x promotion lift."""
    shape = np.array([CATEGORIES[c][0] for c in skus["category"]])[:, days.dayofweek]  # sku x day
    lift = np.array([CATEGORIES[c][1] for c in skus["category"]])[:, None]
    base = np.array([CATEGORIES[c][2] for c in skus["category"]]) * (4.0 / skus["unit_price"].to_numpy()) ** 0.7
    rate = base[:, None] * shape * np.where(promo == 1, lift, 1.0)  # sku x day
    size = stores["size_factor"].to_numpy()[:, None, None]
    units = rng.poisson(size * rate[None, :, :])  # store x sku x day
    store, sku, day = np.meshgrid(np.arange(len(stores)), np.arange(len(skus)), np.arange(len(days)), indexing="ij")
    return pd.DataFrame(
        {
            "store_id": stores["store_id"].to_numpy()[store.ravel()],
            "sku_id": skus["sku_id"].to_numpy()[sku.ravel()],
            "category": skus["category"].to_numpy()[sku.ravel()],
            "sale_date": days.strftime("%Y-%m-%d").to_numpy()[day.ravel()],
            "units": units.ravel(),
            "on_promotion": promo[sku.ravel(), day.ravel()],
        }
    )


def _dirty(rng: np.random.Generator, clean: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Append one defect per extra row: an unknown store, negative units, or a re-delivered row."""
    extra, counts = [], {}
    for defect, rate in DIRTY_RATES.items():
        count = dirty_count(rate, len(clean))
        rows = clean.iloc[rng.choice(len(clean), count, replace=False)].copy()
        if defect == "unknown_store":
            rows["store_id"] = UNKNOWN_STORE_ID
        elif defect == "negative_units":
            rows["units"] = -rng.integers(1, 20, count)
        extra.append(rows)
        counts[defect] = count
    frame = pd.concat([clean, *extra], ignore_index=True)
    return frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True), counts


def generate(out_dir: Path, *, as_of: date | None = None, scale: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """Write retail.db and the manifest to ``out_dir``; return the manifest.

    The manifest holds the rows per table (dirty rows included), ``dirty`` (rows per planted defect),
    ``clean_sales``, the ``categories`` and ``scored_pairs`` (store x SKU pairs the run on ``as_of`` forecasts).
    """
    as_of = as_of or datetime.now(UTC).date()
    n_stores = max(3, round(DEFAULT_STORES * scale))
    n_skus = max(len(CATEGORIES) * 2, round(DEFAULT_SKUS * scale))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    first = as_of - timedelta(days=HISTORY_DAYS)
    days = pd.date_range(first, as_of - timedelta(days=1), freq="D")
    skus, stores = _skus(rng[0], n_skus), _stores(rng[1], n_stores)
    promotions = _promotions(rng[2], skus, first, as_of)
    clean = _sales(rng[3], stores, skus, _promo_days(promotions, skus, days), days)
    sales, dirty = _dirty(rng[3], clean)
    write_sqlite(
        out_dir / RETAIL_FILE, {"stores": stores, "skus": skus, "daily_sales": sales, "promotions": promotions}
    )
    manifest: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "seed": seed,
        "stores": n_stores,
        "skus": n_skus,
        "promotions": len(promotions),
        "daily_sales": len(sales),
        "clean_sales": len(clean),
        "dirty": {"daily_sales": dirty},
        "categories": {c: int((skus["category"] == c).sum()) for c in CATEGORIES},
        "scored_pairs": n_stores * n_skus,
        "files": {"retail": RETAIL_FILE},
    }
    write_manifest(out_dir, manifest)
    return manifest


def _summary(manifest: dict[str, Any]) -> list[str]:
    dirty = manifest["dirty"]["daily_sales"]
    return [
        f"stores x skus      {manifest['stores']} x {manifest['skus']} ({manifest['categories']})",
        f"daily_sales        {manifest['daily_sales']:>9,}  dirty: {sum(dirty.values())} "
        f"({', '.join(f'{k}={v}' for k, v in dirty.items())})",
        f"promotions         {manifest['promotions']:>9,}",
        f"{manifest['scored_pairs']:,} store x SKU pairs to forecast as of {manifest['as_of']}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m asgard_demo.demand --out DIR``."""
    return run_cli("python -m asgard_demo.demand", __doc__.splitlines()[0], generate, _summary, argv)


if __name__ == "__main__":
    raise SystemExit(main())
