"""Holdout metrics per task type on real scikit-learn models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from asgard_provider import evaluation

MULTICLASS = "multiclass_classification"


@pytest.mark.parametrize("classes", [[0, 1, 2], ["lapsing", "casual", "loyal"]])
def test_multiclass_metrics_for_integer_and_string_classes(classes: list) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    labels = np.asarray(classes, dtype=object)[np.digitize(frame["x"], [-0.5, 0.5])]
    labels = labels.astype(type(classes[0]))
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, labels)
    predicted = evaluation.predict(model, frame, MULTICLASS)
    assert predicted.values.dtype != object
    assert evaluation.metric("accuracy", MULTICLASS, labels, predicted) > 0.9
    assert evaluation.metric("macro_f1", MULTICLASS, labels, predicted) > 0.9
    assert evaluation.metric("log_loss", MULTICLASS, labels, predicted) < 0.5
