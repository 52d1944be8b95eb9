import dataclasses

import numpy as np
import pandas as pd

from starry_guide import drift


def test_identical_samples_have_no_drift():
    x = np.random.default_rng(0).normal(size=5000)
    assert drift.psi(x, x) == 0


def test_shifted_sample_drifts():
    rng = np.random.default_rng(0)
    assert drift.psi(rng.normal(size=5000), rng.normal(1.0, size=5000)) > 0.2
    assert drift.psi(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_a_feature_going_missing_is_drift():
    rng = np.random.default_rng(0)
    current = rng.normal(size=1000)
    current[:500] = np.nan
    assert drift.psi(rng.normal(size=1000), current) > 0.2


def test_feature_drift_table(settings):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"same": rng.normal(size=3000), "moved": rng.normal(size=3000)})
    current = pd.DataFrame({"same": rng.normal(size=3000), "moved": rng.normal(2, size=3000)})
    table = drift.feature_drift(reference, current, ["same", "moved"], settings.drift)
    assert table.loc["moved", "drifted"] and not table.loc["same", "drifted"]
    assert table.loc["moved", "ks_pvalue"] < 1e-6


def test_tiny_but_significant_ks_difference_is_not_drift(settings):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=200_000)})
    current = pd.DataFrame({"x": rng.normal(0.03, size=200_000)})
    table = drift.feature_drift(reference, current, ["x"], settings.drift)
    assert table.loc["x", "ks_pvalue"] < settings.drift.ks_alpha
    assert not table.loc["x", "drifted"]


def test_verdict_reasons(settings):
    ok = drift.verdict(0.1, 0.05, 0.17, 0.175, settings.drift)
    assert not ok.retrain_recommended and ok.reasons == []
    strict = dataclasses.replace(settings.drift, brier_degradation_threshold=0.001)
    bad = drift.verdict(0.5, 0.3, 0.17, 0.19, strict)
    assert bad.retrain_recommended and len(bad.reasons) == 3
