"""The decision threshold: the vectorised search agrees with scikit-learn's metrics."""

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from starry_guide.core.evaluate import choose_threshold

GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def reference(y, p, metric):
    """The definition: score every cut-off with scikit-learn, keep the first best."""
    if metric == "f1":
        values = [skm.f1_score(y, (p >= t).astype(int), zero_division=0.0) for t in GRID]
    else:
        values = [skm.accuracy_score(y, (p >= t).astype(int)) for t in GRID]
    return float(GRID[int(np.argmax(values))])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 100)), min_size=1, max_size=300),
       st.sampled_from(["f1", "accuracy"]))
def test_matches_scikit_learn(pairs, metric):
    # probabilities on the 0.01 grid itself, where ">=" ties matter most
    y = np.array([a for a, _ in pairs])
    p = np.array([b / 100 for _, b in pairs])
    assert choose_threshold(y, p, metric) == reference(y, p, metric)


def test_real_sized_inputs_match():
    rng = np.random.default_rng(7)
    p = rng.beta(2, 3, 50_000)
    y = (rng.random(50_000) < p).astype(int)
    for metric in ("f1", "accuracy"):
        assert choose_threshold(y, p, metric) == reference(y, p, metric)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="roc_auc"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), "roc_auc")
