import numpy as np
import pandas as pd
import pytest

from starry_guide.core import evaluate


def test_perfect_forecast():
    y = np.array([0, 1, 1, 0])
    s = evaluate.scores(y, y.astype(float), 0.5, p_reference=np.full(4, 0.5))
    assert s["brier"] == 0 and s["accuracy"] == 1 and s["roc_auc"] == 1 and s["bss"] == 1


def test_bss_of_the_reference_itself_is_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    assert evaluate.scores(y, p, 0.5, p_reference=p)["bss"] == 0


def test_worse_than_reference_is_negative():
    y = np.array([1, 1, 0, 0])
    s = evaluate.scores(y, np.array([0.4, 0.4, 0.6, 0.6]), 0.5,
                        p_reference=np.array([0.6, 0.6, 0.4, 0.4]))
    assert s["bss"] < 0


def test_decision_threshold_sets_precision_and_recall():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.55, 0.1])
    assert evaluate.scores(y, p, 0.5)["precision"] == pytest.approx(2 / 3)
    assert evaluate.scores(y, p, 0.58)["precision"] == 1.0


def test_scores_by_horizon():
    rows = pd.DataFrame({"horizon_h": [1, 1, 2, 2], "clear": [1, 0, 1, 0]})
    table = evaluate.scores_by_horizon(rows, np.array([1.0, 0.0, 0.5, 0.5]), 0.5)
    assert table.loc[1, "brier"] == 0
    assert table.loc[2, "brier"] == 0.25


def test_reliability_bins_observed_rate():
    p = np.array([0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 1, 1, 1])
    table = evaluate.reliability(y, p, bins=10)
    assert table["observed"].tolist() == [0.5, 1.0]
    assert table["rows"].tolist() == [2, 2]


def test_population_stability_index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert evaluate.population_stability_index(x, x) == 0
    assert evaluate.population_stability_index(x, rng.normal(1.0, size=5000)) > 0.2
    assert evaluate.population_stability_index(x, rng.normal(size=5000)) < 0.02
    gone = rng.normal(size=5000)
    gone[:2500] = np.nan
    assert evaluate.population_stability_index(x, gone) > 0.2  # going missing is a shift


def test_unseen_station_shift_ranks_the_moved_feature_first():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"same": rng.normal(size=3000), "moved": rng.normal(size=3000)})
    unseen = pd.DataFrame({"same": rng.normal(size=3000), "moved": rng.normal(2, size=3000)})
    table = evaluate.unseen_station_shift(reference, unseen, ["same", "moved"])
    assert table.index[0] == "moved" and table.loc["moved", "ks_statistic"] > 0.5
    assert table.loc["same", "psi"] < 0.05
