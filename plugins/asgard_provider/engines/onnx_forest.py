"""One-row scoring of a scikit-learn random forest classifier with ONNX Runtime (the model converted once by skl2onnx).

scikit-learn's ``predict_proba`` dispatches one joblib job per tree: about 6-10 ms for a single row of a 100-tree
forest here, which bounds an online server at a few hundred requests per second per core. ONNX Runtime's
``TreeEnsembleClassifier`` evaluates the same trees in about 0.01 ms. The row is rounded to float32 (as
scikit-learn does before walking its trees) and passed as float64, so every split compares the same two numbers
as scikit-learn; the probabilities agree with ``predict_proba`` to :data:`TOLERANCE`. The converted model is
checked against ``predict_proba`` on :data:`PROBE_ROWS` rows when loaded; on any difference (or a model skl2onnx
cannot convert) :func:`forest_session` returns ``None`` and the caller keeps scikit-learn.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Largest difference from scikit-learn's ``predict_proba`` the converted model may show.
TOLERANCE = 1e-6

#: Rows the converted model is compared on at load: split thresholds of the forest, and values either side.
PROBE_ROWS = 256


class ForestSession:
    """A fitted forest classifier as an ONNX Runtime session (one thread: one row at a time)."""

    def __init__(self, model: Any) -> None:
        import onnxruntime as ort
        from skl2onnx import to_onnx

        features = int(model.n_features_in_)
        onx = to_onnx(model, np.zeros((1, features), dtype=np.float64), options={"zipmap": False})
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = next(o.name for o in self.session.get_outputs() if o.name == "probabilities")

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order) of float64 rows without missing values."""
        data = np.ascontiguousarray(rows, dtype=np.float32).astype(np.float64)
        return np.asarray(self.session.run([self.output], {self.input: data})[0])


def forest_session(model: Any) -> ForestSession | None:
    """Return a checked :class:`ForestSession` of a single-output random forest classifier, else ``None``.

    Extra-trees are left to scikit-learn: skl2onnx 1.20 converts them to a graph ONNX Runtime refuses for float64.
    """
    from sklearn.ensemble import RandomForestClassifier

    if not isinstance(model, RandomForestClassifier) or getattr(model, "n_outputs_", 1) != 1:
        return None
    try:
        session = ForestSession(model)
        probe = probe_rows(model)
        gap = float(np.abs(session.predict_proba(probe) - model.predict_proba(_named(model, probe))).max())
    except Exception as exc:  # an estimator or option skl2onnx does not convert: scikit-learn scores instead
        log.warning("ONNX conversion of %s failed, scoring with scikit-learn: %s", type(model).__name__, exc)
        return None
    if gap > TOLERANCE:
        log.warning("ONNX model differs from scikit-learn by %.3g, scoring with scikit-learn", gap)
        return None
    return session


def _named(model: Any, rows: np.ndarray) -> Any:
    """``rows`` as the model was fitted: a DataFrame with its column names, if it has them."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names))


def probe_rows(model: Any, count: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows whose values sit on and right beside the forest's split thresholds (where rounding could matter)."""
    rng = np.random.default_rng(seed)
    features = int(model.n_features_in_)
    splits: list[list[float]] = [[] for _ in range(features)]
    for tree in model.estimators_:
        inner = tree.tree_.feature >= 0
        for feature, threshold in zip(tree.tree_.feature[inner], tree.tree_.threshold[inner], strict=True):
            splits[int(feature)].append(float(threshold))
    columns = []
    for values in splits:
        base = np.asarray(values or [0.0])
        picked = rng.choice(base, count)
        columns.append(picked + rng.choice([-1e-3, 0.0, 1e-3], count) * np.maximum(np.abs(picked), 1.0))
    return np.column_stack(columns).astype(np.float64)
