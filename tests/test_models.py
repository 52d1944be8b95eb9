import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from starry_guide.core import models


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


def weather_frame(n=3000, seed=2):
    """Cover, horizon and one weather column that really moves the label."""
    rng = np.random.default_rng(seed)
    X = frame(rng.integers(0, 11, n), rng.integers(1, 4, n))
    X["dew_point_spread_c"] = rng.gamma(2.0, 3.0, n)
    logit = 1.5 - 0.4 * X["opaque_cloud_tenths"] + 0.3 * (X["dew_point_spread_c"] - 6)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def logit_of(p):
    return np.log(p / (1 - p))


def test_shrinkage_keeps_that_share_of_the_weather_correction():
    X, y = weather_frame()
    full = models.PersistenceLogisticClassifier(C=1.0).fit(X, y)
    half = models.PersistenceLogisticClassifier(C=1.0, shrinkage=0.5).fit(X, y)
    none = models.PersistenceLogisticClassifier(C=1.0, shrinkage=0.0).fit(X, y)
    persistence = models.CalibratedPersistenceClassifier(1.0).fit(X, y)
    p_full, p_half, p_none = (m.predict_proba(X)[:, 1] for m in (full, half, none))
    p_persistence = persistence.predict_proba(X)[:, 1]
    # shrinkage 0 is calibrated persistence itself; 0.5 lies halfway in logit space
    np.testing.assert_allclose(p_none, p_persistence, rtol=1e-9)
    np.testing.assert_allclose(logit_of(p_half),
                               (logit_of(p_full) + logit_of(p_persistence)) / 2, atol=1e-9)
    # the fit itself does not depend on the shrinkage: only the prediction does
    np.testing.assert_array_equal(full.coef_, half.coef_)
    # the weather column matters, so the shrunk model differs from both ends
    assert np.abs(p_half - p_full).max() > 0.01 and np.abs(p_half - p_none).max() > 0.01
    # in-sample, the full correction fits best and persistence worst
    brier = [np.mean((p - y) ** 2) for p in (p_full, p_half, p_none)]
    assert brier[0] < brier[1] < brier[2]


@pytest.mark.parametrize("shrinkage", [-0.1, 1.5])
def test_shrinkage_outside_zero_one_is_refused(shrinkage):
    X, y = weather_frame(300)
    with pytest.raises(ValueError, match=r"shrinkage must lie in \[0, 1\].*" + str(shrinkage)):
        models.PersistenceLogisticClassifier(shrinkage=shrinkage).fit(X, y)


def test_the_shrunk_candidate_reads_its_shrinkage_from_params(settings):
    params = settings.train.params_for("persistence_logistic_shrunk")
    model = models.build_candidate("persistence_logistic_shrunk", params, settings.seed, 2)
    assert isinstance(model, models.PersistenceLogisticClassifier)
    assert model.shrinkage == params["shrinkage"] < 1


def test_blend_is_persistence_plus_the_shrunk_average_of_two_corrections():
    X, y = weather_frame()
    blend = models.PersistenceBlendClassifier(C=1.0, shrinkage=0.7, boosting_weight=0.5,
                                              boosting_iter=30, min_samples_leaf=50).fit(X, y)
    persistence, logistic, boosting = blend.logits(X)
    # the logistic part is exactly the persistence logistic fit on the same rows
    alone = models.PersistenceLogisticClassifier(C=1.0).fit(X, y)
    np.testing.assert_allclose(1 / (1 + np.exp(-logistic)), alone.predict_proba(X)[:, 1],
                               rtol=1e-9)
    expected = persistence + 0.7 * ((logistic + boosting) / 2 - persistence)
    np.testing.assert_allclose(logit_of(blend.predict_proba(X)[:, 1]), expected, atol=1e-9)
    # the boosting sees the persistence logit as its last input column
    assert blend.boosting_.n_features_in_ == X.shape[1] + 1
    # both corrections carry the weather signal: the blend beats persistence in-sample
    p_persistence = 1 / (1 + np.exp(-persistence))
    assert np.mean((blend.predict_proba(X)[:, 1] - y) ** 2) < np.mean((p_persistence - y) ** 2)


def test_blend_with_no_shrinkage_left_is_calibrated_persistence():
    X, y = weather_frame(1000)
    blend = models.PersistenceBlendClassifier(shrinkage=0.0, boosting_iter=10).fit(X, y)
    p_persistence = models.CalibratedPersistenceClassifier(1.0).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(blend.predict_proba(X), p_persistence, rtol=1e-9)


def test_blend_boosting_subsample_is_seeded_and_scales_the_leaves():
    X, y = weather_frame(4000)
    half = models.PersistenceBlendClassifier(boosting_iter=20, boosting_subsample=0.5,
                                             min_samples_leaf=100, random_state=5)
    first, second = half.fit(X, y).predict_proba(X), clone(half).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    assert half.boosting_.min_samples_leaf == 50
    full = models.PersistenceBlendClassifier(boosting_iter=20, min_samples_leaf=100,
                                             random_state=5).fit(X, y)
    assert not np.array_equal(first, full.predict_proba(X))  # fit on other rows


@pytest.mark.parametrize("name,value", [("shrinkage", 1.2), ("boosting_weight", -0.5),
                                        ("boosting_subsample", 0.0)])
def test_blend_weights_outside_zero_one_are_refused(name, value):
    X, y = weather_frame(300)
    model = models.PersistenceBlendClassifier(**{name: value})
    with pytest.raises(ValueError, match=rf"{name} must lie in [\[(]0, 1\], got {value}"):
        model.fit(X, y)


def test_blend_is_deterministic_for_a_seed():
    X, y = weather_frame(2000)
    first = models.PersistenceBlendClassifier(boosting_iter=20, random_state=3).fit(X, y)
    second = models.PersistenceBlendClassifier(boosting_iter=20, random_state=3).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_a_monotone_persistence_table_never_rises_with_the_cover():
    rng = np.random.default_rng(5)
    cover = rng.integers(0, 11, 4000)
    X = frame(cover, rng.integers(1, 4, 4000))
    # clear less likely with cover, except a bump at 7 tenths that a count table follows
    p = np.clip(0.9 - 0.08 * cover + 0.25 * (cover == 7), 0.02, 0.98)
    y = (rng.random(4000) < p).astype(int)
    plain = models.CalibratedPersistenceClassifier().fit(X, y)
    monotone = models.CalibratedPersistenceClassifier(monotone=True).fit(X, y)
    assert (np.diff(plain.table_[:, :11], axis=1) > 0).any()
    assert (np.diff(monotone.table_[:, :11], axis=1) <= 1e-12).all()
    np.testing.assert_array_equal(monotone.table_[:, 11], plain.table_[:, 11])
