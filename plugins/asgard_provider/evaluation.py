"""Evaluate models on a holdout by ML task type: predictions, metrics with a direction, gates and plots."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from asgard_provider.exceptions import InferenceError, ModelTaskError, TrainingError

TaskType = Literal["binary_classification", "multiclass_classification", "regression"]
#: The ML task types a train stage can declare (``train.task``).
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
BINARY, MULTICLASS, REGRESSION = TASK_TYPES
#: Pipeline key that declares the task type (named by every error about a model that does not fit it).
TASK_KEY = "train.task"

#: Risk-level cut-offs (``predict.thresholds``) when none are given.
DEFAULT_RISK_THRESHOLDS = {"high": 0.7, "medium": 0.4}

#: Probability at or above which a binary classifier predicts class 1.
DECISION_THRESHOLD = 0.5


def risk_thresholds(thresholds: Mapping[str, float] | None = None) -> tuple[float, float]:
    """Return ``(high, medium)`` from ``thresholds`` over the defaults; raise unless ``0 < medium < high < 1``."""
    cuts = {**DEFAULT_RISK_THRESHOLDS, **(thresholds or {})}
    high, medium = float(cuts["high"]), float(cuts["medium"])
    if not 0 < medium < high < 1:
        raise InferenceError(f"thresholds need 0 < medium < high < 1, got medium={medium}, high={high}")
    return high, medium


def risk_level(probability: float, high: float, medium: float) -> str:
    """``high`` at or above ``high``, ``medium`` at or above ``medium``, else ``low``."""
    return "high" if probability >= high else "medium" if probability >= medium else "low"


@dataclass(frozen=True)
class Predictions:
    """What a model predicts for a frame, in the form its task is evaluated on.

    ``values``: the probability of class 1 (binary), the predicted class (multiclass) or the predicted number
    (regression). ``probabilities``: one column per class of ``classes`` (classification only).
    """

    task: str
    values: np.ndarray
    probabilities: np.ndarray | None = None
    classes: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Metric:
    """A holdout metric: how it is computed from labels and predictions, and which way is better."""

    name: str
    compute: Callable[[np.ndarray, Predictions], float]
    higher_is_better: bool = True


def _binary_cut(p: Predictions) -> np.ndarray:
    return (p.values >= DECISION_THRESHOLD).astype("int64")


def _sk(name: str, **kwargs: Any) -> Callable[[np.ndarray, Any], float]:
    def compute(y: np.ndarray, predicted: Any) -> float:
        from sklearn import metrics

        return float(getattr(metrics, name)(y, predicted, **kwargs))

    return compute


def _on(fn: Callable[[np.ndarray, Any], float], view: Callable[[Predictions], Any]) -> Callable[..., float]:
    return lambda y, p: fn(y, view(p))


def _values(p: Predictions) -> np.ndarray:
    return p.values


def _wape(y: np.ndarray, p: Predictions) -> float:
    total = float(np.abs(y).sum())
    if total == 0:
        raise TrainingError("wape is undefined: the holdout labels sum to zero")
    return float(np.abs(y - p.values).sum() / total)


def _rmse(y: np.ndarray, p: Predictions) -> float:
    return float(np.sqrt(np.mean(np.square(y - p.values))))


def _log_loss(y: np.ndarray, p: Predictions) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, p.probabilities, labels=list(p.classes)))


#: Holdout metrics per task type; thresholded binary metrics cut at :data:`DECISION_THRESHOLD`.
METRICS: dict[str, dict[str, Metric]] = {
    BINARY: {
        m.name: m
        for m in (
            Metric("roc_auc", _on(_sk("roc_auc_score"), _values)),
            Metric("average_precision", _on(_sk("average_precision_score"), _values)),
            Metric("accuracy", _on(_sk("accuracy_score"), _binary_cut)),
            Metric("precision", _on(_sk("precision_score", zero_division=0), _binary_cut)),
            Metric("recall", _on(_sk("recall_score", zero_division=0), _binary_cut)),
            Metric("f1_score", _on(_sk("f1_score", zero_division=0), _binary_cut)),
            Metric("log_loss", _on(_sk("log_loss", labels=[0, 1]), _values), higher_is_better=False),
        )
    },
    MULTICLASS: {
        m.name: m
        for m in (
            Metric("accuracy", _on(_sk("accuracy_score"), _values)),
            Metric("macro_f1", _on(_sk("f1_score", average="macro", zero_division=0), _values)),
            Metric("log_loss", _log_loss, higher_is_better=False),
        )
    },
    REGRESSION: {
        m.name: m
        for m in (
            Metric("mae", _on(_sk("mean_absolute_error"), _values), higher_is_better=False),
            Metric("rmse", _rmse, higher_is_better=False),
            Metric("wape", _wape, higher_is_better=False),
            Metric("r2", _on(_sk("r2_score"), _values)),
        )
    },
}

#: Metric the new model is compared with the champion on, per task type, unless ``train.compare_metric`` says.
DEFAULT_COMPARE_METRIC = {BINARY: "roc_auc", MULTICLASS: "macro_f1", REGRESSION: "rmse"}


def task_metrics(task: str) -> dict[str, Metric]:
    """Return the metrics of task type ``task``; raise naming :data:`TASK_KEY` for an unknown type."""
    if task not in METRICS:
        raise TrainingError(f"{TASK_KEY} {task!r} is not one of {', '.join(TASK_TYPES)}")
    return METRICS[task]


def metric_problems(task: str, key: str, names: Sequence[str]) -> list[str]:
    """Problems of metric names configured under ``key`` (a gate or ``compare_metric``) for task type ``task``."""
    known = METRICS.get(task, {})
    return [
        f"{key}: {name!r} is not a metric of {TASK_KEY} {task!r} (use one of {', '.join(known)})"
        for name in names
        if name not in known
    ]


def labels_for(task: str, labels: Any) -> np.ndarray:
    """Holdout labels as the task compares them: 0/1 integers, numbers, or class labels as they are."""
    data = np.asarray(labels)
    if task == BINARY:
        return data.astype("int64")
    if task == REGRESSION:
        return data.astype("float64")
    return data


def check_model(model: Any, task: str) -> None:
    """Raise :class:`ModelTaskError` naming :data:`TASK_KEY` unless ``model`` can serve task type ``task``."""
    from sklearn.base import is_classifier, is_regressor

    name = type(model).__name__
    kind = "classifier" if is_classifier(model) else "regressor" if is_regressor(model) else "estimator"
    if task == REGRESSION:
        if not hasattr(model, "predict") or is_classifier(model):
            raise ModelTaskError(
                f"{name} is a {kind}, but {TASK_KEY} is {task!r}: log a regressor, or set {TASK_KEY} to "
                f"{BINARY!r} or {MULTICLASS!r} in the pipeline file"
            )
        return
    if not hasattr(model, "predict_proba"):
        raise ModelTaskError(
            f"{name} has no predict_proba, but {TASK_KEY} is {task!r}: log a classifier, or set {TASK_KEY} to "
            f"{REGRESSION!r} in the pipeline file"
        )
    classes = list(getattr(model, "classes_", []))
    if task == BINARY and not _zero_one(classes):
        raise ModelTaskError(
            f"{name} has classes {classes}, but {TASK_KEY} {task!r} needs exactly 0 and 1: set {TASK_KEY} to "
            f"{MULTICLASS!r} in the pipeline file, or train on a 0/1 label"
        )
    if task == MULTICLASS and len(classes) < 2:
        raise ModelTaskError(f"{name} has classes {classes}; {TASK_KEY} {task!r} needs at least two")


def _zero_one(classes: list[Any]) -> bool:
    try:
        return sorted(float(c) for c in classes) == [0.0, 1.0]
    except (TypeError, ValueError):
        return False


def model_frame(model: Any, features: Any, error: type[Exception] = TrainingError) -> Any:
    """Return the columns ``model`` was fitted on (in order) as float64; raise if some are absent."""
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise error(f"the frame lacks columns {', '.join(missing)} that {type(model).__name__} needs")
    return (features[columns] if columns else features).astype("float64")


def predict(model: Any, features: Any, task: str) -> Predictions:
    """Predict ``features`` (a pandas frame holding the model's columns) as task type ``task`` needs."""
    check_model(model, task)
    data = model_frame(model, features)
    if task == REGRESSION:
        return Predictions(task, np.asarray(model.predict(data), dtype="float64"))
    classes = tuple(getattr(model, "classes_", ()))
    proba = np.asarray(model.predict_proba(data), dtype="float64")
    if task == BINARY:
        positive = [float(c) for c in classes].index(1.0)
        return Predictions(task, proba[:, positive], proba, classes)
    # The classes' own dtype (integers stay integers): sklearn's metrics reject an object array of numbers.
    return Predictions(task, np.asarray(classes)[proba.argmax(axis=1)], proba, classes)


def metric(name: str, task: str, labels: Any, predictions: Predictions) -> float:
    """Compute holdout metric ``name`` of task type ``task``."""
    known = task_metrics(task)
    if name not in known:
        raise TrainingError(f"{name!r} is not a metric of {TASK_KEY} {task!r} (use one of {', '.join(known)})")
    return known[name].compute(labels_for(task, labels), predictions)


def all_metrics(task: str, labels: Any, predictions: Predictions) -> dict[str, float]:
    """Every metric of ``task`` that can be computed on the holdout (e.g. roc_auc needs both classes present)."""
    values = {}
    for name in task_metrics(task):
        try:
            values[name] = metric(name, task, labels, predictions)
        except (ValueError, TrainingError):
            continue
    return values


def higher_is_better(name: str, task: str) -> bool:
    """Direction of metric ``name``: metrics not known for ``task`` (custom ones a script logs) count as higher."""
    known = METRICS.get(task, {})
    return known[name].higher_is_better if name in known else True


def not_worse(name: str, task: str, new: float, old: float) -> bool:
    """Whether ``new`` matches or beats ``old`` on metric ``name`` in that metric's direction."""
    return new >= old if higher_is_better(name, task) else new <= old


def gate_failures(
    metrics: Mapping[str, float], min_metrics: Mapping[str, float], max_metrics: Mapping[str, float]
) -> list[str]:
    """List why ``metrics`` miss the gates: ``min_metrics`` values are floors, ``max_metrics`` ceilings."""
    failures = []
    for name, floor in min_metrics.items():
        if name not in metrics:
            failures.append(f"{name} was not logged (gate: >= {floor})")
        elif metrics[name] < float(floor):
            failures.append(f"{name} = {metrics[name]:.4f} is below {float(floor)}")
    for name, ceiling in max_metrics.items():
        if name not in metrics:
            failures.append(f"{name} was not logged (gate: <= {ceiling})")
        elif metrics[name] > float(ceiling):
            failures.append(f"{name} = {metrics[name]:.4f} is above {float(ceiling)}")
    return failures


def feature_importance(model: Any, columns: Sequence[str]) -> dict[str, float]:
    """Return importances from ``feature_importances_`` (trees) or ``|coef_|`` (linear models); empty if neither."""
    values = getattr(model, "feature_importances_", None)
    if values is None and getattr(model, "coef_", None) is not None:
        coef = np.abs(np.asarray(model.coef_))
        values = coef.mean(axis=0) if coef.ndim == 2 else coef.ravel()
    if values is None:
        return {}
    names = [str(c) for c in getattr(model, "feature_names_in_", columns)]
    return {name: float(v) for name, v in zip(names, np.asarray(values).ravel(), strict=False)}


def plot_files(
    folder: Path, labels: Any, predictions: Predictions, importance: dict[str, float], title: str
) -> list[Path]:
    """Write the task's diagnostic PNGs (and feature importance, if known) into ``folder``.

    Binary: ROC curve and confusion matrix; multiclass: confusion matrix; regression: predicted against
    actual and the residual histogram.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on workers

    y = labels_for(predictions.task, labels)
    drawers = {BINARY: _binary_plots, MULTICLASS: _multiclass_plots, REGRESSION: _regression_plots}
    written = drawers[predictions.task](folder, y, predictions, title)
    if importance:
        import matplotlib.pyplot as plt

        ordered = sorted(importance.items(), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(ordered) + 1.2))
        ax.barh([k for k, _ in ordered], [v for _, v in ordered])
        ax.set(xlabel="Importance", title=f"Feature importance, {title}")
        written.append(_save(fig, folder / "feature_importance.png"))
    return written


def _binary_plots(folder: Path, y: np.ndarray, p: Predictions, title: str) -> list[Path]:
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, p.values)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y, p.values):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=f"ROC curve, {title}")
    ax.legend(loc="lower right")
    return [_save(fig, folder / "roc_curve.png"), _confusion(folder, y, _binary_cut(p), [0, 1], title)]


def _multiclass_plots(folder: Path, y: np.ndarray, p: Predictions, title: str) -> list[Path]:
    return [_confusion(folder, y, p.values, list(p.classes), title)]


def _confusion(folder: Path, y: Any, predicted: Any, classes: list[Any], title: str) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y, predicted, labels=classes)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ticks = list(range(len(classes)))
    ax.set(xticks=ticks, yticks=ticks, xlabel="Predicted", ylabel="Actual", title=f"Confusion matrix, {title}")
    ax.set_xticklabels([str(c) for c in classes])
    ax.set_yticklabels([str(c) for c in classes])
    return _save(fig, folder / "confusion_matrix.png")


def _regression_plots(folder: Path, y: np.ndarray, p: Predictions, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p.values, s=6, alpha=0.5)
    low, high = float(min(y.min(), p.values.min())), float(max(y.max(), p.values.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="Actual", ylabel="Predicted", title=f"Predicted vs actual, {title}")
    ax.legend(loc="upper left")
    scatter = _save(fig, folder / "predicted_vs_actual.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(p.values - y, bins=40)
    ax.set(xlabel="Predicted - actual", ylabel="Rows", title=f"Residuals, {title}")
    return [scatter, _save(fig, folder / "residuals.png")]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
