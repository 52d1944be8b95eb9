import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from starry_guide import models


def frame(cover, horizon):
    return pd.DataFrame({"opaque_cloud_tenths": np.asarray(cover, dtype=float),
                         "horizon_h": np.asarray(horizon, dtype=float)})


def test_persistence_predicts_the_sky_now():
    X = frame([0, 2, 3, 10, np.nan], [1] * 5)
    model = models.PersistenceClassifier(2).fit(X, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(model.predict_proba(X)[:, 1], [1, 1, 0, 0, 0])


def test_calibrated_persistence_is_the_conditional_frequency():
    rng = np.random.default_rng(0)
    cover = rng.integers(0, 11, 5000)
    horizon = rng.integers(1, 4, 5000)
    y = (rng.random(5000) < np.where(cover <= 2, 0.8, 0.2)).astype(int)
    X = frame(cover, horizon)
    model = models.CalibratedPersistenceClassifier(prior_strength=0.0).fit(X, y)
    mask = (cover == 1) & (horizon == 2)
    assert model.predict_proba(frame([1], [2]))[0, 1] == pytest.approx(y[mask].mean())


def test_calibrated_persistence_shrinks_rare_cells_toward_the_horizon_rate():
    X = frame([0, 0, 0, 10], [1, 1, 1, 1])
    y = [1, 1, 1, 0]
    strong = models.CalibratedPersistenceClassifier(prior_strength=100.0).fit(X, y)
    assert strong.predict_proba(frame([10], [1]))[0, 1] == pytest.approx(
        (0 + 100 * 0.75) / (1 + 100))
    # missing cover gets the horizon's rate
    assert strong.predict_proba(frame([np.nan], [1]))[0, 1] == pytest.approx(0.75)


@pytest.mark.parametrize("name", models.CANDIDATES)
def test_candidates_follow_sklearn_conventions(name):
    model = models.build_candidate(name, {}, seed=1, clear_max_opaque_tenths=2)
    clone(model)  # get_params/set_params round-trip
    rng = np.random.default_rng(1)
    X = frame(rng.integers(0, 11, 300), rng.integers(1, 13, 300))
    X["temp_air_c"] = rng.normal(size=300)
    y = (X["opaque_cloud_tenths"] <= 3).astype(int).to_numpy()
    p = model.fit(X, y).predict_proba(X)
    assert p.shape == (300, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {0, 1}


def test_unknown_candidate_names_the_choices():
    with pytest.raises(ValueError, match="hist_gradient_boosting"):
        models.build_candidate("random_forest", {}, seed=1, clear_max_opaque_tenths=2)
