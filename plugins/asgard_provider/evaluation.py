"""Evaluate binary classifiers on a holdout: comparable metrics and diagnostic plots for MLflow runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asgard_provider.exceptions import InferenceError, TrainingError

#: Risk-level cut-offs (``predict.thresholds``) when none are given.
DEFAULT_RISK_THRESHOLDS = {"high": 0.7, "medium": 0.4}


def risk_thresholds(thresholds: dict[str, float] | None = None) -> tuple[float, float]:
    """Return ``(high, medium)`` from ``thresholds`` over the defaults; raise unless ``0 < medium < high < 1``."""
    cuts = {**DEFAULT_RISK_THRESHOLDS, **(thresholds or {})}
    high, medium = float(cuts["high"]), float(cuts["medium"])
    if not 0 < medium < high < 1:
        raise InferenceError(f"thresholds need 0 < medium < high < 1, got medium={medium}, high={high}")
    return high, medium


def risk_level(probability: float, high: float, medium: float) -> str:
    """``high`` at or above ``high``, ``medium`` at or above ``medium``, else ``low``."""
    return "high" if probability >= high else "medium" if probability >= medium else "low"


def _roc_auc(y: Any, p: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def _average_precision(y: Any, p: Any) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def _thresholded(name: str) -> Callable[[Any, Any], float]:
    def metric(y: Any, p: Any) -> float:
        from sklearn import metrics

        predicted = (np.asarray(p) >= 0.5).astype("int64")
        if name == "accuracy":
            return float(metrics.accuracy_score(y, predicted))
        fn = {"precision": metrics.precision_score, "recall": metrics.recall_score, "f1_score": metrics.f1_score}[name]
        return float(fn(y, predicted, zero_division=0))

    return metric


#: Holdout metrics the promotion gate can compare (all "higher is better"; thresholded ones cut at 0.5).
METRICS: dict[str, Callable[[Any, Any], float]] = {
    "roc_auc": _roc_auc,
    "average_precision": _average_precision,
    "accuracy": _thresholded("accuracy"),
    "precision": _thresholded("precision"),
    "recall": _thresholded("recall"),
    "f1_score": _thresholded("f1_score"),
}


def positive_proba(model: Any, features: Any) -> np.ndarray:
    """Probability of class 1 for each row; the model picks its columns by ``feature_names_in_``."""
    if not hasattr(model, "predict_proba"):
        raise TrainingError(f"{type(model).__name__} has no predict_proba")
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise TrainingError(f"the holdout lacks columns {', '.join(missing)} that {type(model).__name__} needs")
    data = features[columns] if columns else features
    classes = [int(c) for c in getattr(model, "classes_", [0, 1])]
    if 1 not in classes:
        raise TrainingError(f"{type(model).__name__} has no positive class 1 (classes: {classes})")
    return np.asarray(model.predict_proba(data.astype("float64"))[:, classes.index(1)], dtype="float64")


def metric(name: str, labels: Any, probabilities: Any) -> float:
    """Compute holdout metric ``name`` (one of :data:`METRICS`)."""
    if name not in METRICS:
        raise TrainingError(f"unknown comparison metric {name!r} (use one of {', '.join(METRICS)})")
    return METRICS[name](np.asarray(labels).astype("int64"), probabilities)


def feature_importance(model: Any, columns: Sequence[str]) -> dict[str, float]:
    """Return importances from ``feature_importances_`` (trees) or ``|coef_|`` (linear models); empty if neither."""
    values = getattr(model, "feature_importances_", None)
    if values is None and getattr(model, "coef_", None) is not None:
        values = np.abs(np.asarray(model.coef_)).ravel()
    if values is None:
        return {}
    names = [str(c) for c in getattr(model, "feature_names_in_", columns)]
    return {name: float(v) for name, v in zip(names, np.asarray(values).ravel(), strict=False)}


def plot_files(folder: Path, labels: Any, probabilities: Any, importance: dict[str, float], title: str) -> list[Path]:
    """Write ROC curve, confusion matrix and (if known) feature-importance PNGs into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

    y = np.asarray(labels).astype("int64")
    p = np.asarray(probabilities, dtype="float64")
    written = []

    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=f"ROC curve, {title}")
    ax.legend(loc="lower right")
    written.append(_save(fig, folder / "roc_curve.png"))

    matrix = confusion_matrix(y, (p >= 0.5).astype("int64"), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="Predicted", ylabel="Actual", title=f"Confusion matrix, {title}")
    written.append(_save(fig, folder / "confusion_matrix.png"))

    if importance:
        ordered = sorted(importance.items(), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(ordered) + 1.2))
        ax.barh([k for k, _ in ordered], [v for _, v in ordered])
        ax.set(xlabel="Importance", title=f"Feature importance, {title}")
        written.append(_save(fig, folder / "feature_importance.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
