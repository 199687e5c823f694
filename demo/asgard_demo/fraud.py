"""Generate the fraud detection example's sources: cards, card transactions and chargebacks with a learnable signal.

``python -m asgard_demo.fraud --out DIR --as-of DATE --scale S`` writes:

- ``DIR/cards.db`` (SQLite, table ``cards``): the card issuer's card register,
- ``DIR/payments.db`` (SQLite, tables ``card_transactions`` and ``chargebacks``): the payment processor,
- ``DIR/manifest.json``: rows per table, planted dirty rows per category, the as-of date and the fraud rate.

Transactions cover the :data:`HISTORY_DAYS` days before ``as_of`` and ``as_of`` itself until 23:00 (the pipeline
scores that day's transactions). Each card has a home country, a typical amount and a handful of regular
merchants. Some cards are compromised once: a burst of a few transactions within hours, mostly abroad, at new
merchants in high-risk categories, for several times the card's usual amount. A few frauds are single, quieter
transactions. So amount against the card's 30-day mean, transactions in the last hour/day and new merchant/country
learn the label well but not perfectly. Every fraud older than :data:`LABEL_DELAY_DAYS` has a chargeback reported
before ``as_of``; a few legitimate transactions are charged back too (friendly fraud, label noise).

Dirty rows are extra rows Silver must quarantine (:data:`DIRTY_RATES`, one defect each), so
``card_transactions - sum(dirty) == rows Silver keeps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asgard_demo.sources import (
    SECONDS_PER_DAY,
    dirty_count,
    epoch_seconds,
    run_cli,
    timestamps,
    write_manifest,
    write_sqlite,
)

DEFAULT_CARDS = 2_000
DEFAULT_TRANSACTIONS = 60_000
#: Days of history before as_of; the scored day (as_of) comes on top.
HISTORY_DAYS = 120
#: Chargebacks arrive within this many days: older transactions are labelled (the dbt var label_delay_days).
LABEL_DELAY_DAYS = 7
#: Transactions of as_of end before this hour (the pipeline runs at 23:00 and scores the day so far).
SCORED_UNTIL_HOUR = 23

CARDS_FILE = "cards.db"
PAYMENTS_FILE = "payments.db"
FIRST_CARD_ID = 40_001
FIRST_TRANSACTION_ID = 9_000_001
UNKNOWN_CARD_ID = 99_999_999

#: Share of the clean transactions added once more with one defect that Silver quarantines.
DIRTY_RATES: dict[str, float] = {
    "null_card_id": 0.003,
    "unknown_card": 0.003,
    "non_positive_amount": 0.004,
    "invalid_timestamp": 0.002,
    "duplicate": 0.003,
}

_COUNTRIES = ("US", "GB", "DE", "FR", "NO", "SE", "NL", "ES", "IT", "CA")
_COUNTRY_WEIGHTS = (0.3, 0.12, 0.1, 0.1, 0.08, 0.07, 0.07, 0.06, 0.05, 0.05)
_FAR_COUNTRIES = ("NG", "RU", "BR", "ID", "VN", "PH")
_CATEGORIES = ("grocery", "restaurant", "fuel", "pharmacy", "clothing", "travel", "utilities", "online_retail")
_RISKY_CATEGORIES = ("electronics", "jewelry", "gift_cards", "online_gaming")
_MERCHANTS = 400
_FIRST_NAMES = ("ada", "bjorn", "chloe", "dmitri", "elin", "farah", "goran", "hana", "ivan", "jonas", "kari", "liv")
_LAST_NAMES = ("berg", "dahl", "eriksen", "haugen", "lund", "moen", "nilsen", "strand", "vik", "solberg")


@dataclass
class _Cards:
    ids: np.ndarray
    home: np.ndarray  # country code per card
    typical_amount: np.ndarray
    rate: np.ndarray  # relative transactions per day
    merchants: np.ndarray  # (cards, 6) regular merchant ids
    issued_day: np.ndarray  # days before as_of


def _merchants(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Merchant ids 1..N and their categories; the last tenth sells in high-risk categories."""
    ids = np.arange(1, _MERCHANTS + 1)
    risky = ids > _MERCHANTS * 0.9
    categories = np.where(
        risky,
        rng.choice(_RISKY_CATEGORIES, _MERCHANTS),
        rng.choice(_CATEGORIES, _MERCHANTS),
    )
    return ids, categories


def _cards(rng: np.random.Generator, n: int) -> _Cards:
    home = rng.choice(_COUNTRIES, n, p=np.array(_COUNTRY_WEIGHTS) / sum(_COUNTRY_WEIGHTS))
    safe_merchants = int(_MERCHANTS * 0.9)
    return _Cards(
        ids=np.arange(FIRST_CARD_ID, FIRST_CARD_ID + n, dtype=np.int64),
        home=home,
        typical_amount=np.exp(rng.normal(3.6, 0.6, n)),
        rate=rng.gamma(2.0, 0.5, n),
        merchants=rng.integers(1, safe_merchants + 1, (n, 6)),
        issued_day=rng.integers(HISTORY_DAYS // 2, 2_000, n),
    )


def _legit(rng: np.random.Generator, cards: _Cards, total: int, start: int, end: int) -> pd.DataFrame:
    """Ordinary purchases: mostly at the card's regular merchants, at home, around its typical amount."""
    card = rng.choice(len(cards.ids), total, p=cards.rate / cards.rate.sum())
    hours = np.clip(rng.normal(14.0, 3.5, total), 6.0, 22.99)
    day = rng.integers(0, (end - start) // SECONDS_PER_DAY, total)
    ts = start + day * SECONDS_PER_DAY + (hours * 3600).astype(np.int64) + rng.integers(0, 60, total)
    regular = rng.random(total) < 0.85
    merchant = np.where(
        regular, cards.merchants[card, rng.integers(0, 6, total)], rng.integers(1, int(_MERCHANTS * 0.9) + 1, total)
    )
    abroad = rng.random(total) < 0.03
    country = np.where(abroad, rng.choice(_COUNTRIES, total), cards.home[card])
    amount = cards.typical_amount[card] * np.exp(rng.normal(0.0, 0.45, total))
    return pd.DataFrame({"card": card, "ts": ts, "merchant": merchant, "country": country, "amount": amount})


def _fraud(rng: np.random.Generator, cards: _Cards, compromised: int, start: int, end: int) -> pd.DataFrame:
    """Bursts on compromised cards (abroad, new risky merchants, large amounts) and a few quiet single frauds."""
    card = rng.choice(len(cards.ids), compromised, replace=False)
    burst = rng.integers(2, 6, compromised)
    first = rng.integers(start, end - 4 * 3600, compromised)
    # A tenth of the attacks happen on the scored day, so its predictions can be checked against the truth.
    today = rng.random(compromised) < 0.1
    first[today] = rng.integers(end - (SCORED_UNTIL_HOUR - 1) * 3600, end - 4 * 3600, int(today.sum()))
    rows = []
    for c, n, t0 in zip(card, burst, first, strict=True):
        quiet = rng.random() < 0.2
        n = 1 if quiet else n
        ts = t0 + np.sort(rng.integers(0, 3 * 3600, n))
        risky = rng.random(n) < (0.3 if quiet else 0.75)
        merchant = np.where(risky, rng.integers(int(_MERCHANTS * 0.9) + 1, _MERCHANTS + 1, n), rng.integers(1, 361, n))
        abroad = rng.random(n) < (0.2 if quiet else 0.7)
        country = np.where(abroad, rng.choice(_FAR_COUNTRIES, n), cards.home[c])
        factor = rng.uniform(1.3, 2.5, n) if quiet else rng.uniform(2.5, 9.0, n)
        amount = cards.typical_amount[c] * factor
        rows.append(pd.DataFrame({"card": c, "ts": ts, "merchant": merchant, "country": country, "amount": amount}))
    return pd.concat(rows, ignore_index=True)


def _transactions(rng: np.random.Generator, cards: _Cards, total: int, as_of: date) -> tuple[pd.DataFrame, np.ndarray]:
    """Clean transactions sorted by time (with their fraud flag), ids in time order."""
    end = epoch_seconds(as_of) + SCORED_UNTIL_HOUR * 3600
    start = epoch_seconds(as_of) - HISTORY_DAYS * SECONDS_PER_DAY
    compromised = max(4, round(len(cards.ids) * 0.15))
    fraud = _fraud(rng, cards, compromised, start, end)
    legit = _legit(rng, cards, max(total - len(fraud), len(cards.ids)), start, end + 3600)
    frame = pd.concat([legit.assign(fraud=0), fraud.assign(fraud=1)], ignore_index=True)
    frame = frame[frame["ts"] < end].sort_values(["ts", "card"], kind="stable").reset_index(drop=True)
    frame["transaction_id"] = np.arange(FIRST_TRANSACTION_ID, FIRST_TRANSACTION_ID + len(frame), dtype=np.int64)
    return frame, frame["fraud"].to_numpy()


def _source_rows(rng: np.random.Generator, clean: pd.DataFrame, cards: _Cards, categories: np.ndarray) -> pd.DataFrame:
    """Build the processor's rows: ids, card, merchant, category, country (some lower-case), amount, timestamps."""
    country = clean["country"].to_numpy().astype(object)
    lower = rng.random(len(country)) < 0.05
    country[lower] = np.char.lower(country[lower].astype(str))
    delay = rng.integers(1, 300, len(clean))
    return pd.DataFrame(
        {
            "transaction_id": clean["transaction_id"].to_numpy(),
            "card_id": pd.array(cards.ids[clean["card"].to_numpy()], dtype="Int64"),
            "merchant_id": clean["merchant"].to_numpy().astype(np.int64),
            "merchant_category": categories[clean["merchant"].to_numpy() - 1],
            "country": country,
            "amount": np.round(clean["amount"].to_numpy(), 2),
            "transaction_ts": timestamps(clean["ts"].to_numpy()).astype(object),
            "created_at": timestamps(clean["ts"].to_numpy() + delay).astype(object),
        }
    )


def _dirty(rng: np.random.Generator, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Extra rows with one defect each: copies of random clean rows, new ids except for the replayed duplicates."""
    counts = {name: dirty_count(rate, len(rows)) for name, rate in DIRTY_RATES.items()}
    next_id = int(rows["transaction_id"].max()) + 1
    extra = []
    for name, count in counts.items():
        part = rows.iloc[rng.choice(len(rows), count, replace=False)].copy()
        if name == "duplicate":
            # A replay of the same event, delivered again later: Silver keeps one copy.
            part["created_at"] = timestamps(np.full(count, 4_000_000_000)).astype(object)
        else:
            part["transaction_id"] = np.arange(next_id, next_id + count)
            next_id += count
        if name == "null_card_id":
            part["card_id"] = pd.array([pd.NA] * count, dtype="Int64")
        elif name == "unknown_card":
            part["card_id"] = pd.array([UNKNOWN_CARD_ID] * count, dtype="Int64")
        elif name == "non_positive_amount":
            part["amount"] = -np.abs(part["amount"].to_numpy()) * (rng.random(count) < 0.7)
        elif name == "invalid_timestamp":
            part["transaction_ts"] = "not a timestamp"
        extra.append(part)
    return pd.concat([rows, *extra], ignore_index=True), counts


def _chargebacks(
    rng: np.random.Generator, clean: pd.DataFrame, fraud: np.ndarray, as_of: date
) -> tuple[pd.DataFrame, int]:
    """Chargebacks reported before as_of: every fraud (within LABEL_DELAY_DAYS) and 0.3% of the rest."""
    friendly = (fraud == 0) & (rng.random(len(fraud)) < 0.003)
    charged = (fraud == 1) | friendly
    ts = clean["ts"].to_numpy()[charged]
    reported = ts + rng.integers(SECONDS_PER_DAY // 2, (LABEL_DELAY_DAYS - 1) * SECONDS_PER_DAY, len(ts))
    keep = reported < epoch_seconds(as_of)
    frame = pd.DataFrame(
        {
            "chargeback_id": np.arange(1, int(keep.sum()) + 1, dtype=np.int64),
            "transaction_id": clean["transaction_id"].to_numpy()[charged][keep],
            "reported_at": timestamps(reported[keep]).astype(object),
            "reason": np.where(fraud[charged][keep] == 1, "fraud", "not_recognised"),
        }
    )
    return frame, int(friendly.sum())


def _card_frame(rng: np.random.Generator, cards: _Cards, as_of: date) -> pd.DataFrame:
    names = np.char.add(
        np.char.add(rng.choice(_FIRST_NAMES, len(cards.ids)), " "), rng.choice(_LAST_NAMES, len(cards.ids))
    )
    issued = np.datetime64(as_of.isoformat()) - cards.issued_day.astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "card_id": cards.ids,
            "cardholder_name": names.astype(object),
            "home_country": cards.home.astype(object),
            "card_type": rng.choice(("credit", "debit"), len(cards.ids), p=(0.6, 0.4)).astype(object),
            "issued_date": np.datetime_as_string(issued, unit="D").astype(object),
        }
    )


def generate(out_dir: Path, *, as_of: date | None = None, scale: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """Write cards.db, payments.db and the manifest to ``out_dir``; return the manifest.

    The manifest holds the rows per table (dirty rows included), ``dirty`` (rows per planted defect),
    ``clean_transactions``, ``scored_transactions`` (clean ones on ``as_of``), ``labelled_transactions`` (older
    than :data:`LABEL_DELAY_DAYS`) and their ``fraud_rate``.
    """
    as_of = as_of or datetime.now(UTC).date()
    n_cards = max(50, round(DEFAULT_CARDS * scale))
    n_transactions = max(20 * n_cards, round(DEFAULT_TRANSACTIONS * scale))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    _, categories = _merchants(rng[0])
    cards = _cards(rng[1], n_cards)
    clean, fraud = _transactions(rng[2], cards, n_transactions, as_of)
    rows, dirty = _dirty(rng[3], _source_rows(rng[3], clean, cards, categories))
    chargebacks, friendly = _chargebacks(rng[4], clean, fraud, as_of)
    write_sqlite(out_dir / CARDS_FILE, {"cards": _card_frame(rng[1], cards, as_of)})
    write_sqlite(out_dir / PAYMENTS_FILE, {"card_transactions": rows, "chargebacks": chargebacks})

    day = clean["ts"].to_numpy() // SECONDS_PER_DAY
    scored = day == epoch_seconds(as_of) // SECONDS_PER_DAY
    labelled = clean["ts"].to_numpy() < epoch_seconds(as_of) - LABEL_DELAY_DAYS * SECONDS_PER_DAY
    manifest: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "seed": seed,
        "cards": n_cards,
        "card_transactions": len(rows),
        "chargebacks": len(chargebacks),
        "dirty": {"card_transactions": dirty},
        "clean_transactions": len(clean),
        "scored_transactions": int(scored.sum()),
        # Ground truth of the scored day, which no source holds yet (chargebacks come later).
        "scored_fraud_ids": clean["transaction_id"].to_numpy()[scored & (fraud == 1)].tolist(),
        "labelled_transactions": int(labelled.sum()),
        "fraud_rate": round(float(fraud[labelled].mean()), 4),
        "friendly_chargebacks": friendly,
        "files": {"cards": CARDS_FILE, "payments": PAYMENTS_FILE},
    }
    write_manifest(out_dir, manifest)
    return manifest


def _summary(manifest: dict[str, Any]) -> list[str]:
    dirty = manifest["dirty"]["card_transactions"]
    return [
        f"cards              {manifest['cards']:>9,}",
        f"card_transactions  {manifest['card_transactions']:>9,}  dirty: {sum(dirty.values())} "
        f"({', '.join(f'{k}={v}' for k, v in dirty.items())})",
        f"chargebacks        {manifest['chargebacks']:>9,}",
        f"fraud rate {manifest['fraud_rate']:.2%} of {manifest['labelled_transactions']:,} labelled transactions; "
        f"{manifest['scored_transactions']:,} transactions on {manifest['as_of']} to score",
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m asgard_demo.fraud --out DIR``."""
    return run_cli("python -m asgard_demo.fraud", __doc__.splitlines()[0], generate, _summary, argv)


if __name__ == "__main__":
    raise SystemExit(main())
