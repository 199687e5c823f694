"""Distribution profiles and the population stability index (PSI) used to watch features and predictions.

A *profile* summarises one numeric column of the training set: decile bin edges plus the share of rows in
each bin (and a last bin for missing values). Batch inference counts the scored rows into the same bins and
compares the shares with :func:`psi`. PSI below 0.1 is usually read as "no shift", 0.1-0.2 as "moderate"
and above 0.2 (:data:`DRIFT_THRESHOLD`) as a shift large enough to look at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: Run artifact the training operator writes with the profile of the holdout predictions; batch inference
#: compares the scored rows' predictions with it.
PREDICTION_PROFILE_ARTIFACT = "asgard/prediction_profile.json"


def monitoring_table(output_table: str) -> str:
    """Where batch inference writes each run's drift statistics: ``<output_table>_monitoring``."""
    return f"{output_table}_monitoring"


#: PSI above which a feature (or the prediction) counts as drifted.
DRIFT_THRESHOLD = 0.2

#: Floor applied to bin shares so empty bins do not make PSI infinite.
EPSILON = 1e-4

#: Quantiles whose values become bin edges.
QUANTILES = tuple(q / 10 for q in range(1, 10))


def _floats(values: Any) -> np.ndarray:
    return np.asarray(values, dtype="float64").ravel()


def bin_counts(edges: Iterable[float], values: Any) -> list[int]:
    """Count ``values`` into bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` plus a last bin for NaN."""
    cuts = np.asarray(list(edges), dtype="float64")
    data = _floats(values)
    missing = np.isnan(data)
    index = np.searchsorted(cuts, data[~missing], side="left")
    counts = np.bincount(index, minlength=len(cuts) + 1)
    return [int(c) for c in counts] + [int(missing.sum())]


def profile(values: Any) -> dict[str, Any]:
    """Summarise one column as a reference profile: decile edges, bin shares, row count, mean, std and null rate."""
    data = _floats(values)
    present = data[~np.isnan(data)]
    edges = sorted({float(v) for v in np.quantile(present, QUANTILES)}) if present.size else []
    counts = bin_counts(edges, data)
    total = max(len(data), 1)
    return {
        "edges": edges,
        "shares": [c / total for c in counts],
        "rows": len(data),
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "null_rate": float(np.isnan(data).mean()) if len(data) else 0.0,
    }


def frame_profile(frame: Any, columns: Iterable[str]) -> dict[str, dict[str, Any]]:
    """:func:`profile` of each of ``columns`` of a pandas DataFrame."""
    return {column: profile(frame[column].to_numpy(dtype="float64", na_value=np.nan)) for column in columns}


def psi(expected: Iterable[float], actual_counts: Iterable[int]) -> float:
    """Return the population stability index of observed bin counts against the reference bin shares."""
    reference = np.maximum(np.asarray(list(expected), dtype="float64"), EPSILON)
    counts = np.asarray(list(actual_counts), dtype="float64")
    if counts.sum() == 0:
        return float("nan")
    observed = np.maximum(counts / counts.sum(), EPSILON)
    if reference.shape != observed.shape:
        raise ValueError(f"reference has {reference.size} bins, observed counts {observed.size}")
    return float(np.sum((observed - reference) * np.log(observed / reference)))


class RunningStats:
    """Bin counts and moments of a column accumulated batch by batch (memory does not grow with rows)."""

    def __init__(self, edges: Iterable[float] = ()) -> None:
        self.edges = [float(e) for e in edges]
        self.counts = [0] * (len(self.edges) + 2)
        self.rows = 0
        self.nulls = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, values: Any) -> None:
        """Count one batch of values."""
        data = _floats(values)
        present = data[~np.isnan(data)]
        self.counts = [a + b for a, b in zip(self.counts, bin_counts(self.edges, data), strict=True)]
        self.rows += len(data)
        self.nulls += len(data) - present.size
        if present.size:
            self._sum += float(present.sum())
            self._sum_sq += float(np.square(present).sum())
            self.minimum = min(self.minimum, float(present.min()))
            self.maximum = max(self.maximum, float(present.max()))

    def summary(self) -> dict[str, float | None]:
        """Mean, standard deviation, min, max and null rate of everything added."""
        n = self.rows - self.nulls
        if n == 0:
            return {"mean": None, "std": None, "min": None, "max": None, "null_rate": 1.0 if self.rows else None}
        mean = self._sum / n
        return {
            "mean": mean,
            "std": math.sqrt(max(self._sum_sq / n - mean * mean, 0.0)),
            "min": self.minimum,
            "max": self.maximum,
            "null_rate": self.nulls / self.rows,
        }

    def psi_against(self, reference: Mapping[str, Any]) -> float:
        """PSI of the accumulated counts against a :func:`profile` with the same edges."""
        return psi(reference["shares"], self.counts)
