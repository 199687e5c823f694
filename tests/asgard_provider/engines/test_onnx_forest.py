"""ONNX Runtime scoring of scikit-learn forests: the same probabilities as ``predict_proba``, or no session at all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from asgard_provider.engines.onnx_forest import TOLERANCE, forest_session, probe_rows


def _data(classes: int, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Counts and amounts like online features (integers, two-decimal money), labels depending on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "purchases": rng.poisson(8, 2000).astype("float64"),
            "value": np.round(rng.lognormal(4.0, 0.5, 2000), 2),
            "recency": rng.integers(0, 400, 2000).astype("float64"),
            "ratio": rng.random(2000) / 3.0,  # not representable in float32: rounding happens before each split
        }
    )
    score = frame["recency"] / 100 - frame["purchases"] / 4 + frame["ratio"] + rng.normal(0, 0.5, 2000)
    return frame, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


@pytest.mark.parametrize(
    ("estimator", "classes"),
    [
        (RandomForestClassifier(n_estimators=40, max_depth=8, random_state=0), 2),
        (RandomForestClassifier(n_estimators=30, max_depth=None, min_samples_leaf=2, random_state=0), 3),
    ],
)
def test_session_gives_predict_proba_of_one_row(estimator: object, classes: int) -> None:
    frame, labels = _data(classes)
    model = estimator.fit(frame, labels)  # type: ignore[attr-defined]
    session = forest_session(model)
    assert session is not None
    rows = np.vstack([frame.to_numpy()[:300], probe_rows(model, 300, seed=9)])
    expected = model.predict_proba(pd.DataFrame(rows, columns=frame.columns))
    got = np.vstack([session.predict_proba(row[None, :]) for row in rows])
    assert got.shape == (len(rows), classes)
    assert np.abs(got - expected).max() <= TOLERANCE
    # The rows do exercise the model: they span its range of answers.
    assert expected[:, 0].min() < 0.2 and expected[:, 0].max() > 0.8


def test_probe_rows_sit_on_the_split_thresholds() -> None:
    frame, labels = _data(2)
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(frame, labels)
    thresholds = {float(t) for tree in model.estimators_ for t in tree.tree_.threshold[tree.tree_.feature >= 0]}
    probe = probe_rows(model, 200)
    assert probe.shape == (200, 4)
    assert thresholds & set(probe.ravel().tolist())


def test_no_session_for_models_it_does_not_cover() -> None:
    frame, labels = _data(2)
    assert forest_session(LogisticRegression(max_iter=500).fit(frame, labels)) is None
    assert forest_session(ExtraTreesClassifier(n_estimators=3, random_state=0).fit(frame, labels)) is None
    assert forest_session(RandomForestRegressor(n_estimators=3, random_state=0).fit(frame, labels)) is None
    two_outputs = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, np.column_stack([labels, labels]))
    assert forest_session(two_outputs) is None
