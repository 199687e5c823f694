"""Distribution profiles and the population stability index (PSI) used to watch features and predictions.

A *profile* summarises one numeric column of the training set: decile bin edges plus the share of rows in
each bin (and a last bin for missing values). Batch inference counts the scored rows into the same bins and
compares the shares with :func:`psi`. PSI below 0.1 is usually read as "no shift", 0.1-0.2 as "moderate"
and above 0.2 (:data:`DRIFT_THRESHOLD`) as a shift large enough to look at. :func:`load_reference` fetches a
model's reference profiles from its training run; :func:`monitoring_report` compares a scored date with them.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from asgard_provider.exceptions import AsgardError, InferenceError

if TYPE_CHECKING:
    from asgard_provider.engines.mlflow_store import MLflowStore
    from asgard_provider.evaluation import Predictions

_LOG = logging.getLogger(__name__)

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


def prediction_profiles(predictions: Predictions) -> dict[str, Any]:
    """Profile a model's holdout predictions, logged as :data:`PREDICTION_PROFILE_ARTIFACT`.

    ``prediction``: the probability of class 1 (binary), the predicted number (regression) or the probability
    of the predicted class (multiclass); multiclass also gets ``classes``, one profile per class probability.
    """
    if predictions.probabilities is None or predictions.task != "multiclass_classification":
        return {"prediction": profile(predictions.values)}
    proba = predictions.probabilities
    return {
        "prediction": profile(proba.max(axis=1)),
        "classes": {str(c): profile(proba[:, i]) for i, c in enumerate(predictions.classes)},
    }


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


def reference_profile(reference: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Return profile ``prediction`` or ``class:<label>`` of a model's reference (``{}`` when not logged)."""
    if key.startswith("class:"):
        return dict(reference.get("classes", {}).get(key.removeprefix("class:"), {}))
    return dict(reference.get("prediction", {}))


def monitoring_schema() -> pa.Schema:
    """Columns of the monitoring table: one row per scored date and feature, plus one per prediction column."""
    return pa.schema(
        [
            pa.field("as_of_date", pa.date32()),
            pa.field("kind", pa.string()),  # "feature" or "prediction"
            pa.field("name", pa.string()),
            pa.field("rows", pa.int64()),
            pa.field("mean", pa.float64()),
            pa.field("std", pa.float64()),
            pa.field("min", pa.float64()),
            pa.field("max", pa.float64()),
            pa.field("null_rate", pa.float64()),
            pa.field("reference_mean", pa.float64()),
            pa.field("psi", pa.float64()),
            pa.field("drifted", pa.bool_()),
            pa.field("positive_rate", pa.float64()),
            pa.field("share_high", pa.float64()),
            pa.field("share_medium", pa.float64()),
            pa.field("share_low", pa.float64()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("reference_run_id", pa.string()),
            pa.field("computed_at", pa.timestamp("us", tz="UTC")),
        ]
    )


@dataclass(frozen=True)
class MonitoringReport:
    """One scored date's drift statistics: the monitoring table rows and what they say."""

    rows: list[dict[str, Any]]
    #: PSI of each feature against the training set (``None``: no reference)
    feature_psi: dict[str, float | None]
    #: PSI of each prediction column against the holdout predictions
    prediction_psi: dict[str, float | None]
    drifted_features: list[str]
    drifted_predictions: list[str]
    #: summary of the first prediction column (mean, std, PSI; class shares for a binary task)
    prediction: dict[str, Any]
    reference_run_id: str | None

    @property
    def max_feature_psi(self) -> float | None:
        """Largest known feature PSI."""
        known = [v for v in self.feature_psi.values() if v is not None]
        return max(known) if known else None

    def table(self) -> pa.Table:
        """Return the rows as an Arrow table of :func:`monitoring_schema`."""
        return pa.Table.from_pylist(self.rows, schema=monitoring_schema())


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def monitoring_report(
    stats: Mapping[str, RunningStats],
    predictions: Mapping[str, str],
    levels: Mapping[str, int] | None,
    reference: Mapping[str, Any],
    *,
    as_of: date,
    model: tuple[str, str],
    computed_at: datetime,
    drift_threshold: float = DRIFT_THRESHOLD,
) -> MonitoringReport:
    """Compare what scoring saw with the training run's reference profiles.

    :param stats: running stats of every feature and prediction column.
    :param predictions: prediction column -> its reference profile key (``prediction`` or ``class:<label>``).
    :param levels: risk-level and positive counts (binary tasks), else ``None``.
    :param model: (model name, version).
    """
    features = reference.get("features", {})
    rows, psi = [], {}
    for name, running in stats.items():
        ref = reference_profile(reference, predictions[name]) if name in predictions else features.get(name)
        value = _finite(running.psi_against(ref)) if ref and running.rows else None
        psi[name] = value
        is_prediction = name in predictions
        total = running.rows or 1
        shares = levels if is_prediction and levels is not None else None
        rows.append(
            {
                "as_of_date": as_of,
                "kind": "prediction" if is_prediction else "feature",
                "name": name,
                "rows": running.rows,
                **{k: _finite(v) for k, v in running.summary().items()},
                "reference_mean": _finite(ref.get("mean")) if ref else None,
                "psi": value,
                "drifted": None if value is None else value > drift_threshold,
                "positive_rate": shares["positive"] / total if shares else None,
                "share_high": shares["high"] / total if shares else None,
                "share_medium": shares["medium"] / total if shares else None,
                "share_low": shares["low"] / total if shares else None,
                "model_name": model[0],
                "model_version": model[1],
                "reference_run_id": reference.get("run_id"),
                "computed_at": computed_at,
            }
        )
    feature_psi = {k: v for k, v in psi.items() if k not in predictions}
    prediction_psi = {k: v for k, v in psi.items() if k in predictions}
    first = next(r for r in rows if r["name"] == next(iter(predictions)))
    summary_keys = ("psi", "mean", "std", "positive_rate", "share_high", "share_medium", "share_low")
    return MonitoringReport(
        rows=rows,
        feature_psi=feature_psi,
        prediction_psi=prediction_psi,
        drifted_features=sorted(k for k, v in feature_psi.items() if v is not None and v > drift_threshold),
        drifted_predictions=sorted(k for k, v in prediction_psi.items() if v is not None and v > drift_threshold),
        prediction={k: first[k] for k in summary_keys},
        reference_run_id=reference.get("run_id"),
    )


@dataclass(frozen=True)
class MonitoringOutcome:
    """Where one scored date's monitoring rows went and what they say."""

    table: str
    snapshot_id: int | None
    rows: int
    report: MonitoringReport

    def as_dict(self) -> dict[str, Any]:
        """Return the ``monitoring`` part of the batch-inference result."""
        report = self.report
        return {
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "reference_run_id": report.reference_run_id,
            "psi": report.feature_psi,
            "prediction_psi": report.prediction_psi,
            "max_feature_psi": report.max_feature_psi,
            "drifted_features": report.drifted_features,
            "prediction": report.prediction,
        }

    def event_extra(self) -> dict[str, Any]:
        """Return what the predictions table's asset event says about drift."""
        report = self.report
        return {
            "drifted_features": report.drifted_features,
            "drift_max_psi": report.max_feature_psi,
            "prediction_psi": report.prediction["psi"],
            "mean_prediction": report.prediction["mean"],
            "positive_rate": report.prediction["positive_rate"],
            "monitoring_table": self.table,
            "monitoring_snapshot_id": self.snapshot_id,
        }


def load_reference(mlflow: MLflowStore, model_name: str, version: str, log: logging.Logger = _LOG) -> dict[str, Any]:
    """Training-set feature profiles and holdout prediction profiles logged by the model's training run.

    Returns ``{}`` (drift is then not computed) when the version has no run or the run no profiles.
    """
    from asgard_provider.training import PROFILE_ARTIFACT

    try:
        run_id = mlflow.version_run_id(model_name, version)
        if run_id is None:
            raise InferenceError(f"version {version} was registered without a run")
        reference: dict[str, Any] = {"run_id": run_id}
        with tempfile.TemporaryDirectory(prefix="asgard-reference-") as tmp:
            for artifact in (PROFILE_ARTIFACT, PREDICTION_PROFILE_ARTIFACT):
                path = mlflow.download_artifact(run_id, artifact, tmp)
                if path is not None:
                    reference.update(json.loads(Path(path).read_text()))
    except (AsgardError, OSError, ValueError) as exc:
        log.warning("no drift reference for %s version %s: %s", model_name, version, exc)
        return {}
    if "features" not in reference:
        log.warning(
            "%s version %s (run %s) logged no %s: feature drift is not computed",
            model_name,
            version,
            reference["run_id"],
            PROFILE_ARTIFACT,
        )
    return reference


def log_drift(
    report: MonitoringReport, as_of: date, model: tuple[str, str], threshold: float, log: logging.Logger = _LOG
) -> None:
    """Warn about every feature and prediction column whose PSI is above ``threshold``."""
    for name in report.drifted_features:
        log.warning(
            "DRIFT: feature %s on %s has PSI %.3f > %.2f against the training set of %s version %s",
            name,
            as_of,
            report.feature_psi[name],
            threshold,
            *model,
        )
    for name in report.drifted_predictions:
        log.warning(
            "DRIFT: predicted %s on %s has PSI %.3f > %.2f against the holdout predictions",
            name,
            as_of,
            report.prediction_psi[name],
            threshold,
        )
