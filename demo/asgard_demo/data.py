"""Generate the churn demo's source data: customers, transactions and support tickets with a learnable signal.

``python -m asgard_demo.data --out DIR`` writes the three sources of the seed's use case guide:

- ``DIR/customers.db`` (SQLite, table ``customers``): the customer database,
- ``DIR/transactions.db`` (SQLite, table ``transactions``): the transaction system,
- ``DIR/support_tickets.jsonl`` (JSON lines): what the support API returns,
- ``DIR/manifest.json``: row counts, planted dirty rows per category, the as-of date and the churn rate.

With ``--postgres URL`` the customers are also loaded into PostgreSQL, with ``--mysql URL`` the transactions into
MySQL/MariaDB (database created if missing, table replaced, real column types).

The data carries a real churn signal. Every customer has a latent purchase rate; some customers churn on a
random date and stop buying. Most churners warn first (their purchase rate decays, they open more support
tickets that take longer to resolve and score lower), some stop abruptly, and some loyal customers pause for
weeks, so a model on recency/frequency/monetary/tenure/ticket features learns the label well but not perfectly.
The label the pipeline computes (no completed purchase in the 60 days after a snapshot) is positive for roughly
15-20% of the customers at ``as_of - 60 days``.

Rows the Silver step must remove are planted at fixed rates (:data:`DIRTY_RATES`); every dirty row carries
exactly one defect, so ``rows - sum(dirty) == rows Silver keeps``. Values Silver only normalises (status and
payment method casing, lower-case countries, padded emails, missing names, open tickets) are not counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_CUSTOMERS = 100_000
DEFAULT_TRANSACTIONS = 1_200_000
DEFAULT_TICKETS = 45_000
DEFAULT_SEED = 42

#: First day of the transaction history Silver keeps; a few older rows are planted for it to drop.
DATA_START = date(2023, 1, 1)
#: Customers registered before this day are invalid (a few are planted).
REGISTRATION_START = date(2020, 1, 1)
#: A customer is churned at snapshot t if they make no completed purchase in (t, t + LABEL_HORIZON_DAYS].
LABEL_HORIZON_DAYS = 60

FIRST_CUSTOMER_ID = 1001
FIRST_TRANSACTION_ID = 5001
FIRST_TICKET_ID = 7001

CUSTOMERS_FILE = "customers.db"
TRANSACTIONS_FILE = "transactions.db"
TICKETS_FILE = "support_tickets.jsonl"
MANIFEST_FILE = "manifest.json"

#: Share of each source's rows that carries one defect Silver must reject (or deduplicate).
DIRTY_RATES: dict[str, dict[str, float]] = {
    "customers": {
        "invalid_email": 0.015,
        "registered_before_2020": 0.002,
        "duplicate_customer_id": 0.003,
    },
    "transactions": {
        "non_positive_amount": 0.005,
        "null_customer_id": 0.003,
        "not_completed": 0.01,
        "duplicate": 0.002,
        "before_2023": 0.0005,
    },
    "support_tickets": {
        "null_customer_id": 0.005,
        "duplicate": 0.003,
    },
}

# Column names and generic SQL types of the server tables (TIMESTAMP becomes DATETIME on MySQL).
TABLE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "customers": [
        ("customer_id", "BIGINT NOT NULL"),
        ("email", "VARCHAR(255)"),
        ("first_name", "VARCHAR(100)"),
        ("last_name", "VARCHAR(100)"),
        ("registration_date", "DATE"),
        ("status", "VARCHAR(32)"),
        ("country", "VARCHAR(8)"),
        ("city", "VARCHAR(100)"),
        ("created_at", "TIMESTAMP"),
        ("updated_at", "TIMESTAMP"),
    ],
    "transactions": [
        ("transaction_id", "BIGINT NOT NULL"),
        ("customer_id", "BIGINT"),
        ("order_id", "VARCHAR(32)"),
        ("amount", "DECIMAL(10,2)"),
        ("transaction_date", "DATE"),
        ("payment_method", "VARCHAR(32)"),
        ("status", "VARCHAR(32)"),
        ("created_at", "TIMESTAMP"),
    ],
}
# SQLite keeps dates and timestamps as ISO text; amounts as REAL so every value has the same storage class.
_SQLITE_TYPES = {"BIGINT": "INTEGER", "DECIMAL": "REAL", "VARCHAR": "TEXT", "DATE": "TEXT", "TIMESTAMP": "TEXT"}

_FIRST_NAMES = (
    "james mary john patricia robert jennifer michael linda david elizabeth william barbara richard susan joseph "
    "jessica thomas sarah charles karen daniel lisa matthew nancy anthony betty mark sandra emma olav ingrid lars "
    "astrid nils freya erik sofia henrik maja lucas noah liam mia leon lena"
).split()
_LAST_NAMES = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez wilson anderson "
    "thomas taylor moore jackson martin lee thompson white harris clark lewis walker hansen johansen olsen larsen "
    "andersen pedersen nilsen berg lindqvist eriksson muller schmidt schneider fischer dubois moreau bernard rossi"
).split()
_DOMAINS = ("example.com", "mail.com", "inbox.net", "webmail.org", "post.no", "shop.io")
_LOCATIONS: tuple[tuple[str, str, float], ...] = (
    ("US", "New York", 0.10),
    ("US", "San Francisco", 0.07),
    ("US", "Chicago", 0.06),
    ("US", "Austin", 0.05),
    ("UK", "London", 0.09),
    ("UK", "Manchester", 0.04),
    ("DE", "Berlin", 0.06),
    ("DE", "Munich", 0.04),
    ("FR", "Paris", 0.06),
    ("FR", "Lyon", 0.02),
    ("NO", "Oslo", 0.06),
    ("NO", "Bergen", 0.03),
    ("SE", "Stockholm", 0.05),
    ("DK", "Copenhagen", 0.04),
    ("NL", "Amsterdam", 0.05),
    ("ES", "Madrid", 0.04),
    ("IT", "Milan", 0.03),
    ("CA", "Toronto", 0.05),
    ("AU", "Sydney", 0.06),
)
_PAYMENT_METHODS = ("credit_card", "debit_card", "paypal", "bank_transfer", "apple_pay")
_PAYMENT_WEIGHTS = (0.45, 0.2, 0.2, 0.08, 0.07)
_NOT_COMPLETED = ("refunded", "pending", "failed", "cancelled")
_NOT_COMPLETED_WEIGHTS = (0.4, 0.25, 0.2, 0.15)
_ODD_STATUSES = ("suspended", "closed", "trial", "unknown", "Deleted")

_SECONDS_PER_DAY = 86_400
# Warned churners run into trouble this many days before their purchases start to fade, and meanwhile open
# this many times more support tickets than usual.
_TROUBLE_LEAD_DAYS = 30.0
_TROUBLE_BOOST = 30.0
_CHUNK_CUSTOMERS = 2048


@dataclass
class _Population:
    """Latent per-customer parameters (one entry per distinct customer); days count from DATA_START."""

    ids: np.ndarray  # int64 customer_id
    registration_day: np.ndarray  # int64
    start: np.ndarray  # float: first day the customer can buy
    base_rate: np.ndarray  # relative purchase intensity
    ticket_rate: np.ndarray  # relative support ticket intensity
    churn: np.ndarray  # float day the customer stops buying; +inf for customers who never churn
    decline: np.ndarray  # days of warning before churn (0: abrupt stop or no churn)
    gap_start: np.ndarray  # loyal customers' pause (gap_start == gap_end: none)
    gap_end: np.ndarray
    regular: np.ndarray  # bool: buys at regular intervals (else at random times)
    order_value: np.ndarray  # customer's typical order value
    premium: np.ndarray  # bool


def _days(day: date) -> int:
    return (day - DATA_START).days


def _epoch_seconds(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _SECONDS_PER_DAY


def _dirty_count(rate: float, total: int) -> int:
    """Rows of one dirty category: the rate's share, at least one once a source has 200 rows."""
    count = round(rate * total)
    return max(count, 1) if total >= 200 else count


def _datetimes(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as naive ``datetime64[s]`` values."""
    return np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")


def _format_timestamps(values: np.ndarray, *, iso_z: bool = False) -> np.ndarray:
    """Format datetimes as 'YYYY-MM-DD HH:MM:SS' (or 'YYYY-MM-DDTHH:MM:SSZ') without a Python loop."""
    text = np.datetime_as_string(values.astype("datetime64[s]"), unit="s")
    if iso_z:
        return np.char.add(text, "Z")
    if len(text) == 0:
        return text
    chars = text.astype("<U19").view(np.uint32).reshape(len(text), 19).copy()
    chars[:, 10] = ord(" ")
    return chars.reshape(-1).view("<U19")


def _format_dates(values: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(values.astype("datetime64[D]"), unit="D")


def _cased_codes(
    rng: np.random.Generator,
    codes: np.ndarray,
    names: Sequence[str],
    share: float | np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Categorical codes over ``names`` plus their Capitalised and UPPER variants for a share of the rows."""
    variant = np.where(rng.random(len(codes)) < share, rng.integers(1, 3, len(codes)), 0)
    categories = [*names, *(n.capitalize() for n in names), *(n.upper() for n in names)]
    return codes + variant * len(names), categories


def _order_ids(transaction_ids: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Order numbers like ``ORD-100005001`` as a compact Arrow-backed string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pa.array(transaction_ids + 100_000_000).cast(pa.string())
    return pd.arrays.ArrowStringArray(pc.binary_join_element_wise("ORD-", digits, ""))


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after midnight, mostly during the day."""
    hours = np.clip(rng.normal(14.5, 4.0, n), 0.0, 23.999)
    return (hours * 3600).astype(np.int64)


def _with_casing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    """Capitalise or upper-case a share of the values (as careless source systems do)."""
    out = values.astype(object)
    pick = rng.random(len(out)) < share
    upper = rng.random(len(out)) < 0.5
    out[pick & upper] = np.char.upper(out[pick & upper].astype(str)).astype(object)
    cap = pick & ~upper
    out[cap] = np.char.capitalize(out[cap].astype(str)).astype(object)
    return out


# --------------------------------------------------------------------------------------------------- population


def _population(rng: np.random.Generator, n: int, as_of: date) -> _Population:
    horizon = _days(as_of)
    prior = horizon - LABEL_HORIZON_DAYS
    reg_span = (as_of - REGISTRATION_START).days
    # Registrations grow over time; day numbers are relative to DATA_START (negative before 2023).
    registration = (REGISTRATION_START - DATA_START).days + np.floor(reg_span * rng.random(n) ** 0.75)
    registration = registration.astype(np.int64)
    # Customers who registered before the history starts are already buying on day 0; new ones start a bit later.
    start = np.where(registration < 0, rng.uniform(0, 20, n), registration + rng.exponential(12.0, n))

    engagement = rng.normal(0.0, 1.0, n)
    base_rate = np.exp(0.35 * engagement)
    ticket_rate = np.exp(rng.normal(0.0, 0.6, n))

    # Churn: a quarter of the customers stop buying; the dates cluster around the two label windows.
    churns = rng.random(n) < 0.24 + 0.08 * (engagement < -0.8)
    churn_day = horizon + 90.0 - rng.exponential(105.0, n)
    churn_day = np.maximum(churn_day, start + rng.uniform(20, 60, n))
    churn = np.where(churns, churn_day, np.inf)
    warns = churns & (rng.random(n) < 0.68)
    decline = np.where(warns, rng.uniform(40.0, 120.0, n), 0.0)

    # Some customers who never churn pause for weeks (holidays, moving, a competitor's discount).
    pauses = ~churns & (rng.random(n) < 0.12)
    gap_len = rng.uniform(40.0, 110.0, n)
    gap_from = np.maximum(start, prior - 200.0)
    gap_start = np.where(pauses, gap_from + rng.random(n) * np.maximum(horizon + 1.0 - gap_from, 0.0), 0.0)
    gap_end = np.where(pauses, gap_start + gap_len, 0.0)

    regular = rng.random(n) < 0.85
    premium = (engagement + rng.normal(0.0, 0.5, n)) > 1.15
    order_value = np.exp(rng.normal(3.95, 0.4, n)) * np.where(premium, 1.35, 1.0)
    return _Population(
        ids=np.arange(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + n, dtype=np.int64),
        registration_day=registration,
        start=start,
        base_rate=base_rate,
        ticket_rate=ticket_rate,
        churn=churn,
        decline=decline,
        gap_start=gap_start,
        gap_end=gap_end,
        regular=regular,
        order_value=order_value,
        premium=premium,
    )


def _calendar(as_of: date) -> np.ndarray:
    """Business-wide purchase intensity per day: growth plus the Black Friday / Christmas season."""
    days = np.arange(_days(as_of) + 1, dtype=np.float64)
    growth = np.exp(0.9 * days / 365.0)
    dates = np.datetime64(DATA_START.isoformat()) + days.astype("timedelta64[D]")
    month_day = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    season = 1.0 + 0.35 * (((month == 11) & (month_day >= 20)) | ((month == 12) & (month_day <= 24)))
    return growth * season


def _purchase_profile(pop: _Population, lo: int, hi: int, calendar: np.ndarray) -> np.ndarray:
    """Relative purchase intensity per (customer, day) for customers lo..hi."""
    d = np.arange(len(calendar), dtype=np.float64)
    churn = pop.churn[lo:hi]
    prof = np.outer(pop.base_rate[lo:hi], calendar)
    prof *= (d[None, :] >= pop.start[lo:hi, None]) & (d[None, :] < churn[:, None])
    # Warned churners fade out: intensity falls quadratically to zero over the decline.
    fading = np.flatnonzero(pop.decline[lo:hi] > 0)
    if len(fading):
        left = (churn[fading, None] - d[None, :]) / pop.decline[lo:hi][fading, None]
        prof[fading] *= np.square(np.clip(left, 0.0, 1.0))
    pausing = np.flatnonzero(pop.gap_end[lo:hi] > pop.gap_start[lo:hi])
    if len(pausing):
        prof[pausing] *= (d[None, :] < pop.gap_start[lo:hi][pausing, None]) | (
            d[None, :] >= pop.gap_end[lo:hi][pausing, None]
        )
    return prof


def _ticket_profile(pop: _Population, lo: int, hi: int, calendar: np.ndarray) -> np.ndarray:
    """Relative support ticket intensity per (customer, day): a burst of trouble before a warned churn."""
    d = np.arange(len(calendar), dtype=np.float64)
    churn = pop.churn[lo:hi]
    prof = np.outer(pop.ticket_rate[lo:hi], np.sqrt(calendar))
    prof *= (d[None, :] >= pop.start[lo:hi, None]) & (d[None, :] < churn[:, None] + 10.0)
    warned = np.flatnonzero(pop.decline[lo:hi] > 0)
    if len(warned):
        begins = churn[warned] - pop.decline[lo:hi][warned] - _TROUBLE_LEAD_DAYS
        trouble = (d[None, :] >= begins[:, None]) & (d[None, :] < churn[warned, None] + 5.0)
        prof[warned] *= 1.0 + (_TROUBLE_BOOST - 1.0) * trouble
    return prof


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, _CHUNK_CUSTOMERS):
        yield lo, min(lo + _CHUNK_CUSTOMERS, n)


def _sample_events(
    rng: np.random.Generator,
    pop: _Population,
    total: int,
    calendar: np.ndarray,
    profile: Any,
    *,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``total`` events: (customer index, day) pairs following each customer's intensity profile.

    Counts per customer are multinomial in the profile's mass; days come from the inverse of each customer's
    cumulative profile, evaluated for all events of a chunk with one ``searchsorted``.
    """
    n = len(pop.ids)
    mass = np.concatenate([profile(pop, lo, hi, calendar).sum(axis=1) for lo, hi in _chunks(n)])
    if total == 0 or mass.sum() <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    counts = rng.multinomial(total, mass / mass.sum())
    customer = np.repeat(np.arange(n, dtype=np.int64), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(total, dtype=np.int64) - np.repeat(offsets, counts)
    jitter = rng.random(total)
    k = counts[customer]
    if stratify:
        # Regular buyers spread their purchases evenly over their (intensity-weighted) active time.
        u = np.where(pop.regular[customer], (rank + jitter) / k, rng.random(total))
    else:
        u = jitter
    u = np.minimum(u, np.nextafter(1.0, 0.0))
    days = np.empty(total, dtype=np.int64)
    width = len(calendar)
    ends = np.cumsum(counts)
    for lo, hi in _chunks(n):
        first, last = (offsets[lo], ends[hi - 1])
        if last == first:
            continue
        prof = profile(pop, lo, hi, calendar)
        cdf = np.cumsum(prof, axis=1)
        row_total = cdf[:, -1:].copy()
        row_total[row_total <= 0] = 1.0
        cdf /= row_total
        cdf += np.arange(hi - lo, dtype=np.float64)[:, None]
        local = customer[first:last] - lo
        pos = np.searchsorted(cdf.ravel(), local + u[first:last], side="right")
        days[first:last] = np.minimum(pos - local * width, width - 1)
    return customer, days


# --------------------------------------------------------------------------------------------------- sources


def _customers_frame(
    rng: np.random.Generator, pop: _Population, n_rows: int, as_of: date
) -> tuple[pd.DataFrame, dict[str, int]]:
    n = len(pop.ids)
    rates = DIRTY_RATES["customers"]
    n_dup = n_rows - n
    n_email = _dirty_count(rates["invalid_email"], n_rows)
    n_old = _dirty_count(rates["registered_before_2020"], n_rows)
    order = rng.permutation(n)
    bad_email = order[:n_email]
    old_reg = order[n_email : n_email + n_old]
    # Duplicates only of customers that are otherwise valid and registered at least a week before as_of.
    horizon = _days(as_of)
    clean = order[n_email + n_old :]
    clean = clean[pop.registration_day[clean] <= horizon - 7]
    dup_of = np.sort(clean[:n_dup])

    registration = pop.registration_day.copy()
    old_span = (REGISTRATION_START - date(2018, 1, 1)).days
    registration[old_reg] = (date(2018, 1, 1) - DATA_START).days + rng.integers(0, old_span, len(old_reg))

    first = np.array(_FIRST_NAMES)[rng.integers(0, len(_FIRST_NAMES), n)]
    last = np.array(_LAST_NAMES)[rng.integers(0, len(_LAST_NAMES), n)]
    domain = np.array(_DOMAINS)[rng.integers(0, len(_DOMAINS), n)]
    local = np.char.add(np.char.add(np.char.add(first, "."), last), pop.ids.astype(str))
    email = np.char.add(np.char.add(local, "@"), domain).astype(object)
    messy = rng.random(n) < 0.02
    email[messy] = np.char.add(np.char.add(" ", np.char.upper(email[messy].astype(str))), " ").astype(object)
    no_at = bad_email[: len(bad_email) // 2]
    email[no_at] = np.char.add(np.char.add(local[no_at], "."), domain[no_at]).astype(object)
    email[bad_email[len(bad_email) // 2 :]] = None
    first_name = np.char.capitalize(first).astype(object)
    last_name = np.char.capitalize(last).astype(object)
    first_name[rng.random(n) < 0.004] = None
    last_name[rng.random(n) < 0.004] = None

    weights = np.array([w for _, _, w in _LOCATIONS])
    where = rng.choice(len(_LOCATIONS), n, p=weights / weights.sum())
    country = np.array([c for c, _, _ in _LOCATIONS])[where].astype(object)
    lower = rng.random(n) < 0.03
    country[lower] = np.char.lower(country[lower].astype(str)).astype(object)
    city = np.array([c for _, c, _ in _LOCATIONS])[where].astype(object)

    # Status as the customer database shows it today: long-gone churners mostly inactive, top buyers premium.
    gone = pop.churn < horizon - 45
    status = np.where(pop.premium, "premium", "active").astype(object)
    status[(gone & (rng.random(n) < 0.6)) | (rng.random(n) < 0.03)] = "inactive"
    status = _with_casing(rng, status, 0.04)
    odd = rng.random(n) < 0.01
    status[odd] = np.array(_ODD_STATUSES)[rng.integers(0, len(_ODD_STATUSES), int(odd.sum()))]

    base = _epoch_seconds(DATA_START)
    end = _epoch_seconds(as_of) + _SECONDS_PER_DAY - 1
    created = base + registration * _SECONDS_PER_DAY + _time_of_day(rng, n)
    created = np.minimum(created, end - 3600)
    span = end - created
    updated = created + (span * rng.uniform(0.5, 1.0, n)).astype(np.int64)

    # Stale versions of some customers: same id, older updated_at, possibly an older status.
    rows = np.concatenate([np.arange(n), dup_of])
    is_stale = np.concatenate([np.zeros(n, bool), np.ones(len(dup_of), bool)])
    stale_updated = created[dup_of] + (span[dup_of] * rng.uniform(0.0, 0.45, len(dup_of))).astype(np.int64)
    row_updated = np.concatenate([updated, stale_updated])
    row_status = status[rows].copy()
    row_status[n:] = np.where(rng.random(len(dup_of)) < 0.5, "active", row_status[n:])
    arrange = np.lexsort((~is_stale, rows))  # by customer, stale version first
    rows, row_updated, row_status = rows[arrange], row_updated[arrange], row_status[arrange]

    frame = pd.DataFrame(
        {
            "customer_id": pop.ids[rows],
            "email": email[rows],
            "first_name": first_name[rows],
            "last_name": last_name[rows],
            "registration_date": _datetimes(base + registration[rows] * _SECONDS_PER_DAY),
            "status": row_status,
            "country": country[rows],
            "city": city[rows],
            "created_at": _datetimes(created[rows]),
            "updated_at": _datetimes(row_updated),
        }
    )
    dirty = {
        "invalid_email": len(bad_email),
        "registered_before_2020": len(old_reg),
        "duplicate_customer_id": len(dup_of),
    }
    return frame, dirty


def _transactions_frame(
    rng: np.random.Generator,
    pop: _Population,
    n_rows: int,
    as_of: date,
    calendar: np.ndarray,
) -> tuple[pd.DataFrame, dict[str, int], np.ndarray, np.ndarray]:
    """All transaction rows, their dirty counts, and the clean purchases as (customer index, day)."""
    rates = DIRTY_RATES["transactions"]
    counts = {name: _dirty_count(rate, n_rows) for name, rate in rates.items()}
    eligible_old = np.flatnonzero(pop.registration_day < -30)
    if len(eligible_old) == 0:
        counts["before_2023"] = 0
    n_clean = n_rows - sum(counts.values())
    if n_clean <= 0:
        raise ValueError(f"{n_rows} transactions leave no room for clean rows next to the dirty ones")
    customer, day = _sample_events(rng, pop, n_clean, calendar, _purchase_profile, stratify=True)
    base = _epoch_seconds(DATA_START)
    seconds = base + day * _SECONDS_PER_DAY + _time_of_day(rng, n_clean)
    amount = np.round(np.maximum(pop.order_value[customer] * np.exp(rng.normal(0.0, 0.5, n_clean)), 1.0), 2)
    weights = np.array(_PAYMENT_WEIGHTS)
    method = rng.choice(len(_PAYMENT_METHODS), n_clean, p=weights / weights.sum())
    cust_id = pop.ids[customer]
    completed = 0  # code of "completed" in the status categories

    # Dirty rows copy a random clean purchase and break exactly one thing about it.
    non_positive = rng.integers(0, n_clean, counts["non_positive_amount"])
    no_customer = rng.integers(0, n_clean, counts["null_customer_id"])
    not_completed = rng.integers(0, n_clean, counts["not_completed"])
    too_old = rng.integers(0, n_clean, counts["before_2023"])
    # ... purchases from before the history Silver keeps, by customers who were registered then.
    who = eligible_old[rng.integers(0, max(len(eligible_old), 1), len(too_old))]
    earliest = np.maximum(pop.registration_day[who], (date(2021, 1, 1) - DATA_START).days)
    old_day = earliest + np.floor(rng.random(len(too_old)) * (-earliest)).astype(np.int64)
    w = np.array(_NOT_COMPLETED_WEIGHTS)
    bad_status = 1 + rng.choice(len(_NOT_COMPLETED), len(not_completed), p=w / w.sum())

    all_idx = np.concatenate([np.arange(n_clean), non_positive, no_customer, not_completed, too_old])
    all_cust = np.concatenate(
        [cust_id, cust_id[non_positive], np.zeros(len(no_customer), np.int64), cust_id[not_completed], pop.ids[who]]
    )
    missing = np.zeros(len(all_idx), bool)
    missing[n_clean + len(non_positive) : n_clean + len(non_positive) + len(no_customer)] = True
    negative = rng.random(len(non_positive)) < 0.7
    old_amount = np.round(np.maximum(pop.order_value[who] * np.exp(rng.normal(0.0, 0.5, len(who))), 1.0), 2)
    all_amount = np.concatenate(
        [amount, np.where(negative, -amount[non_positive], 0.0), amount[no_customer], amount[not_completed], old_amount]
    )
    all_status = np.concatenate(
        [
            np.full(n_clean + len(non_positive) + len(no_customer), completed),
            bad_status,
            np.full(len(too_old), completed),
        ]
    )
    old_seconds = base + old_day * _SECONDS_PER_DAY + _time_of_day(rng, len(too_old))
    all_seconds = np.concatenate(
        [seconds, seconds[non_positive], seconds[no_customer], seconds[not_completed], old_seconds]
    )

    order = np.argsort(all_seconds, kind="stable")
    n_unique = len(order)
    transaction_id = np.arange(FIRST_TRANSACTION_ID, FIRST_TRANSACTION_ID + n_unique, dtype=np.int64)
    # Exact duplicates (replayed change events) of clean purchases, next to their originals.
    position = np.empty(n_unique, np.int64)
    position[order] = np.arange(n_unique)
    dup_src = np.sort(position[rng.choice(n_clean, counts["duplicate"], replace=False)])
    rows = np.sort(np.concatenate([np.arange(n_unique), dup_src]), kind="stable")
    # Casing is decided per unique row, so a duplicate is an exact copy of its original.
    unique_status = all_status[order]
    status_codes, status_names = _cased_codes(
        rng, unique_status, ("completed", *_NOT_COMPLETED), share=np.where(unique_status == completed, 0.0, 0.2)
    )
    method_codes, method_names = _cased_codes(rng, method[all_idx[order]], _PAYMENT_METHODS, share=0.08)
    src = order[rows]
    customer_ids = pd.array(all_cust[src], dtype="Int64")
    customer_ids[missing[src]] = pd.NA
    ids = transaction_id[rows]
    frame = pd.DataFrame(
        {
            "transaction_id": ids,
            "customer_id": customer_ids,
            "order_id": _order_ids(ids),
            "amount": all_amount[src],
            "transaction_date": _datetimes(all_seconds[src] - all_seconds[src] % _SECONDS_PER_DAY),
            "payment_method": pd.Categorical.from_codes(method_codes[rows], method_names),
            "status": pd.Categorical.from_codes(status_codes[rows], status_names),
            "created_at": _datetimes(all_seconds[src]),
        }
    )
    return frame, counts, customer, day


def _tickets_frame(
    rng: np.random.Generator,
    pop: _Population,
    n_rows: int,
    as_of: date,
    calendar: np.ndarray,
) -> tuple[pd.DataFrame, dict[str, int]]:
    rates = DIRTY_RATES["support_tickets"]
    counts = {name: _dirty_count(rate, n_rows) for name, rate in rates.items()}
    n_clean = n_rows - sum(counts.values())
    if n_clean <= 0:
        raise ValueError(f"{n_rows} support tickets leave no room for clean rows next to the dirty ones")
    customer, day = _sample_events(rng, pop, n_clean, calendar, _ticket_profile, stratify=False)
    base = _epoch_seconds(DATA_START)
    seconds = base + day * _SECONDS_PER_DAY + _time_of_day(rng, n_clean)
    churn, decline = pop.churn[customer], pop.decline[customer]
    troubled = (decline > 0) & (day >= churn - decline - _TROUBLE_LEAD_DAYS)
    resolution = rng.gamma(2.0, 9.0, n_clean) * np.where(troubled, 2.6, 1.0) * np.exp(rng.normal(0.0, 0.3, n_clean))
    resolution = np.round(resolution + 0.5, 1)
    happy = np.array([0.03, 0.05, 0.12, 0.35, 0.45])
    unhappy = np.array([0.3, 0.3, 0.2, 0.12, 0.08])
    u = rng.random(n_clean)
    score = np.where(troubled, np.searchsorted(np.cumsum(unhappy), u), np.searchsorted(np.cumsum(happy), u)) + 1
    score = np.minimum(score, 5).astype(np.float64)
    score[rng.random(n_clean) < 0.12] = np.nan  # survey not answered
    recent = day >= _days(as_of) - 4
    resolution[(recent & (rng.random(n_clean) < 0.6)) | (rng.random(n_clean) < 0.01)] = np.nan  # still open
    idx = rng.integers(0, n_clean, counts["null_customer_id"])
    all_idx = np.concatenate([np.arange(n_clean), idx])
    all_cust = pd.array(np.concatenate([pop.ids[customer], np.zeros(len(idx), np.int64)]), dtype="Int64")
    all_cust[n_clean:] = pd.NA
    order = np.argsort(seconds[all_idx], kind="stable")
    n_unique = len(order)
    ticket_id = np.arange(FIRST_TICKET_ID, FIRST_TICKET_ID + n_unique, dtype=np.int64)
    position = np.empty(n_unique, np.int64)
    position[order] = np.arange(n_unique)
    dup_src = np.sort(position[rng.choice(n_clean, counts["duplicate"], replace=False)])
    rows = np.sort(np.concatenate([np.arange(n_unique), dup_src]), kind="stable")
    src = all_idx[order[rows]]
    frame = pd.DataFrame(
        {
            "ticket_id": ticket_id[rows],
            "customer_id": all_cust[order[rows]],
            "created_at": _format_timestamps(_datetimes(seconds[src]), iso_z=True),
            "resolution_time_hours": resolution[src],
            "satisfaction_score": pd.array(score[src], dtype="Int64"),
        }
    )
    return frame, counts


# --------------------------------------------------------------------------------------------------- writers


def _sqlite_columns(table: str) -> list[tuple[str, str]]:
    out = []
    for name, sql_type in TABLE_COLUMNS[table]:
        generic = re.match(r"[A-Z]+", sql_type)
        out.append((name, _SQLITE_TYPES[generic.group(0)] if generic else "TEXT"))
    return out


def _formatted(frame: pd.DataFrame, table: str, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Rows lo..hi of ``frame`` as object arrays of plain Python values: ISO text for dates, None for missing."""
    out: dict[str, np.ndarray] = {}
    for name, sql_type in TABLE_COLUMNS[table]:
        col = frame[name].iloc[lo:hi]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            values = col.to_numpy(dtype="datetime64[s]")
            text = _format_dates(values) if sql_type.startswith("DATE") else _format_timestamps(values)
            formatted = text.astype(object)
            formatted[np.isnat(values)] = None
        else:
            if sql_type.startswith("BIGINT") and pd.api.types.is_float_dtype(col.dtype):
                col = col.astype("Int64")  # nullable ids read back from SQL arrive as floats
            formatted = col.to_numpy(dtype=object, na_value=None)
        out[name] = formatted
    return out


def _write_sqlite(path: Path, table: str, frame: pd.DataFrame, chunk_rows: int = 200_000) -> None:
    """Replace ``path`` by a fresh SQLite database holding ``frame`` as ``table`` (dates as ISO text)."""
    columns = _sqlite_columns(table)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        ddl = ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns)
        conn.execute(f'CREATE TABLE "{table}" ({ddl})')
        marks = ", ".join("?" * len(columns))
        for lo in range(0, len(frame), chunk_rows):
            part = _formatted(frame, table, lo, lo + chunk_rows)
            rows = zip(*(values.tolist() for values in part.values()), strict=True)
            conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)  # noqa: S608
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, path)


def _write_jsonl(path: Path, frame: pd.DataFrame) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_json(tmp, orient="records", lines=True, double_precision=6)
    os.replace(tmp, path)


def _write_tsv(frame: pd.DataFrame, table: str, path: Path, chunk_rows: int = 200_000) -> None:
    r"""Write ``frame`` as tab-separated text, NULL as ``\N`` (PostgreSQL COPY text format, MySQL LOAD DATA)."""
    text_columns = [name for name, sql_type in TABLE_COLUMNS[table] if sql_type.startswith("VARCHAR")]
    with path.open("w", encoding="utf-8", newline="") as fh:
        for lo in range(0, len(frame), chunk_rows):
            part = pd.DataFrame(_formatted(frame, table, lo, lo + chunk_rows))
            for name in text_columns:
                if part[name].dropna().astype(str).str.contains(r"[\t\n\\]", regex=True).any():
                    raise ValueError(f"column {name!r} holds tabs, newlines or backslashes; cannot bulk-load it")
            part.to_csv(fh, sep="\t", header=False, index=False, na_rep="\\N", lineterminator="\n", quoting=3)


def _url_parts(url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(url)


def _check_identifier(name: str, what: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name or ""):
        raise ValueError(f"{what} {name!r} is not a plain identifier (letters, digits, underscore)")
    return name


def load_postgres(url: str, frame: pd.DataFrame, *, table: str = "customers") -> int:
    """Replace ``table`` in the PostgreSQL database of ``url`` (created if missing) with ``frame`` via COPY.

    ``url`` looks like ``postgresql://postgres@127.0.0.1:5432/asgard_sources``; ``table`` is ``customers`` or
    ``transactions`` (column types from :data:`TABLE_COLUMNS`). Returns the rows loaded.
    """
    import psycopg2

    parts = _url_parts(url)
    database = _check_identifier(parts.database or "", "PostgreSQL database")
    _check_identifier(table, "table")
    params: dict[str, Any] = {
        "host": parts.host or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        **dict(parts.query),
    }
    if parts.password:
        params["password"] = parts.password
    try:
        admin = psycopg2.connect(dbname="postgres", **params)
        try:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{database}"')
        finally:
            admin.close()
        ddl = ", ".join(f'"{name}" {sql_type}' for name, sql_type in TABLE_COLUMNS[table])
        columns = ", ".join(f'"{name}"' for name, _ in TABLE_COLUMNS[table])
        with tempfile.TemporaryDirectory(prefix="asgard-pg-") as tmp:
            data = Path(tmp) / f"{table}.tsv"
            _write_tsv(frame, table, data)
            conn = psycopg2.connect(dbname=database, **params)
            try:
                with conn, conn.cursor() as cur, data.open("r", encoding="utf-8") as fh:
                    cur.execute(f'DROP TABLE IF EXISTS "{table}"')
                    cur.execute(f'CREATE TABLE "{table}" ({ddl})')
                    cur.copy_expert(f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT text)', fh)
                    cur.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608
                    loaded = int(cur.fetchone()[0])
            finally:
                conn.close()
    except psycopg2.Error as exc:
        from asgard_provider.exceptions import SourceError  # imports Airflow: only on the error path

        raise SourceError(
            f"loading {table} into PostgreSQL database {database!r} on {params['host']}:{params['port']} failed: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from exc
    return loaded


def load_mysql(url: str, frame: pd.DataFrame, *, table: str = "transactions", local_infile: bool = True) -> int:
    """Replace ``table`` in the MySQL/MariaDB database of ``url`` (created if missing) with ``frame``.

    ``url`` looks like ``mysql+pymysql://root@127.0.0.1:3306/asgard_sources``. Loads with ``LOAD DATA LOCAL
    INFILE`` and falls back to multi-row INSERT batches when the server refuses local files (or
    ``local_infile=False``). Columns are typed as in :data:`TABLE_COLUMNS`, TIMESTAMP as DATETIME. Returns rows loaded.
    """
    import pymysql  # type: ignore[import-untyped]

    parts = _url_parts(url)
    database = _check_identifier(parts.database or "", "MySQL database")
    _check_identifier(table, "table")
    names = [name for name, _ in TABLE_COLUMNS[table]]
    ddl = ", ".join(f"`{name}` {sql_type.replace('TIMESTAMP', 'DATETIME')}" for name, sql_type in TABLE_COLUMNS[table])
    host, port = parts.host or "127.0.0.1", parts.port or 3306
    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=parts.username or "root",
            password=parts.password or "",
            local_infile=True,
            charset="utf8mb4",
            autocommit=False,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                cur.execute(f"USE `{database}`")
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
                cur.execute(f"CREATE TABLE `{table}` ({ddl}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
                if local_infile:
                    try:
                        _load_data_local(cur, table, frame)
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] not in (1148, 2068, 3948, 3950):  # codes for "local infile disabled"
                            raise
                        local_infile = False
                if not local_infile:
                    _insert_batches(cur, table, names, frame)
                cur.execute(f"SELECT COUNT(*) FROM `{table}`")  # noqa: S608
                loaded = int(cur.fetchone()[0])
            conn.commit()
        finally:
            conn.close()
    except pymysql.MySQLError as exc:
        from asgard_provider.exceptions import SourceError  # imports Airflow: only on the error path

        raise SourceError(
            f"loading {table} into MySQL database {database!r} on {host}:{port} failed: {exc.args[-1]}"
        ) from exc
    return loaded


def _load_data_local(cur: Any, table: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(f"`{name}`" for name, _ in TABLE_COLUMNS[table])
    with tempfile.TemporaryDirectory(prefix="asgard-mysql-") as tmp:
        data = Path(tmp) / f"{table}.tsv"
        _write_tsv(frame, table, data)
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({columns})",
            (str(data),),
        )


def _insert_batches(cur: Any, table: str, names: Sequence[str], frame: pd.DataFrame, batch: int = 20_000) -> None:
    columns = ", ".join(f"`{n}`" for n in names)
    sql = f"INSERT INTO `{table}` ({columns}) VALUES ({', '.join(['%s'] * len(names))})"  # noqa: S608
    for lo in range(0, len(frame), batch):
        part = _formatted(frame, table, lo, lo + batch)
        # PyMySQL rewrites executemany of one INSERT ... VALUES into multi-row INSERT statements.
        cur.executemany(sql, list(zip(*(values.tolist() for values in part.values()), strict=True)))


# --------------------------------------------------------------------------------------------------- public API


def _churn_rate(
    purchases_customer: np.ndarray,
    purchases_day: np.ndarray,
    pop: _Population,
    snapshot_day: int,
) -> tuple[int, float]:
    """Count customers registered by ``snapshot_day`` and the share with no purchase in the following horizon."""
    known = pop.registration_day <= snapshot_day
    window = (purchases_day > snapshot_day) & (purchases_day <= snapshot_day + LABEL_HORIZON_DAYS)
    bought = np.zeros(len(pop.ids), bool)
    bought[purchases_customer[window]] = True
    labelled = int(known.sum())
    return labelled, float((~bought[known]).sum() / max(labelled, 1))


def generate(
    out_dir: Path,
    *,
    customers: int = DEFAULT_CUSTOMERS,
    transactions: int = DEFAULT_TRANSACTIONS,
    tickets: int = DEFAULT_TICKETS,
    as_of: date | None = None,
    seed: int = DEFAULT_SEED,
    postgres_url: str | None = None,
    mysql_url: str | None = None,
) -> dict[str, Any]:
    """Write the three demo sources and the manifest to ``out_dir``; return the manifest.

    The manifest holds the rows written per source (``customers``, ``transactions``, ``support_tickets``, all
    rows including dirty ones), ``distinct_customers``, ``dirty`` (per source, rows per planted defect),
    ``as_of``, ``seed``, the ``files`` and ``signal`` (churn rate at ``as_of - 60 days``). With ``postgres_url``
    / ``mysql_url`` the customers / transactions are also loaded into those servers. ``as_of`` defaults to today
    (UTC), so the runs a scheduler creates for the current date find data.
    """
    as_of = as_of or datetime.now(UTC).date()
    if customers < 10 or transactions < customers or tickets < 1:
        raise ValueError("need at least 10 customers, as many transactions as customers and one ticket")
    if as_of < DATA_START + timedelta(days=2 * LABEL_HORIZON_DAYS):
        raise ValueError(f"as_of {as_of} must be at least {2 * LABEL_HORIZON_DAYS} days after {DATA_START}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    n_unique = customers - _dirty_count(DIRTY_RATES["customers"]["duplicate_customer_id"], customers)
    pop = _population(streams[0], n_unique, as_of)
    calendar = _calendar(as_of)

    customer_frame, customer_dirty = _customers_frame(streams[1], pop, customers, as_of)
    _write_sqlite(out_dir / CUSTOMERS_FILE, "customers", customer_frame)
    transaction_frame, transaction_dirty, bought_by, bought_on = _transactions_frame(
        streams[2], pop, transactions, as_of, calendar
    )
    _write_sqlite(out_dir / TRANSACTIONS_FILE, "transactions", transaction_frame)
    ticket_frame, ticket_dirty = _tickets_frame(streams[3], pop, tickets, as_of, calendar)
    _write_jsonl(out_dir / TICKETS_FILE, ticket_frame)

    prior = _days(as_of) - LABEL_HORIZON_DAYS
    labelled, rate = _churn_rate(bought_by, bought_on, pop, prior)
    manifest: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "seed": seed,
        "customers": len(customer_frame),
        "transactions": len(transaction_frame),
        "support_tickets": len(ticket_frame),
        "distinct_customers": n_unique,
        "dirty": {"customers": customer_dirty, "transactions": transaction_dirty, "support_tickets": ticket_dirty},
        "files": {"customers": CUSTOMERS_FILE, "transactions": TRANSACTIONS_FILE, "support_tickets": TICKETS_FILE},
        "signal": {
            "label_snapshot": (as_of - timedelta(days=LABEL_HORIZON_DAYS)).isoformat(),
            "horizon_days": LABEL_HORIZON_DAYS,
            "customers_labelled": labelled,
            "churn_rate": round(rate, 4),
        },
    }
    if postgres_url:
        manifest["postgres_rows"] = load_postgres(postgres_url, customer_frame, table="customers")
    if mysql_url:
        manifest["mysql_rows"] = load_mysql(mysql_url, transaction_frame, table="transactions")
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the generator is deterministic for a seed, byte for byte)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _summary(manifest: dict[str, Any], out_dir: Path, seconds: float) -> str:
    lines = [f"demo sources in {out_dir} (as_of {manifest['as_of']}, seed {manifest['seed']}, {seconds:.1f}s)"]
    for source in ("customers", "transactions", "support_tickets"):
        dirty = manifest["dirty"][source]
        detail = ", ".join(f"{k}={v}" for k, v in dirty.items())
        lines.append(f"  {source:<16} {manifest[source]:>10,} rows  dirty: {sum(dirty.values()):,} ({detail})")
    signal = manifest["signal"]
    lines.append(
        f"  churn rate at {signal['label_snapshot']}: {signal['churn_rate']:.1%} of "
        f"{signal['customers_labelled']:,} customers (no purchase in the next {signal['horizon_days']} days)"
    )
    for key, target in (("postgres_rows", "PostgreSQL customers"), ("mysql_rows", "MySQL transactions")):
        if key in manifest:
            lines.append(f"  loaded {manifest[key]:,} rows into {target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m asgard_demo.data --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m asgard_demo.data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for customers.db, transactions.db, ...")
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--transactions", type=int, default=DEFAULT_TRANSACTIONS)
    parser.add_argument("--tickets", type=int, default=DEFAULT_TICKETS)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the three row counts")
    parser.add_argument("--postgres", metavar="URL", help="also load customers, e.g. postgresql://postgres@host/db")
    parser.add_argument("--mysql", metavar="URL", help="also load transactions, e.g. mysql+pymysql://root@host/db")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        manifest = generate(
            args.out,
            customers=max(10, round(args.customers * args.scale)),
            transactions=max(10, round(args.transactions * args.scale)),
            tickets=max(1, round(args.tickets * args.scale)),
            as_of=args.as_of,
            seed=args.seed,
            postgres_url=args.postgres,
            mysql_url=args.mysql,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(manifest, args.out, time.perf_counter() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
