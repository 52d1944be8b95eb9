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


def test_decision_scores_are_scikit_learns_bit_for_bit():
    # evaluate.decision_scores replaces four scikit-learn calls in scores(): the same floats,
    # including the zero-division cases (nothing predicted clear, no clear hour at all)
    import sklearn.metrics as skm

    rng = np.random.default_rng(7)
    cases = []
    for i in range(600):
        n = int(rng.integers(1, 500))
        y = (rng.random(n) < rng.random()).astype(int)
        if i % 5 == 0:
            y[:] = i % 2  # one class only
        cases.append((y, rng.random(n) >= rng.random() * (i % 3 != 0)))
    cases.append((np.array([0, 1, 1]), np.array([False, False, False])))  # none predicted
    for y, decided in cases:
        d = decided.astype(int)
        expected = {"accuracy": skm.accuracy_score(y, d),
                    "precision": skm.precision_score(y, d, zero_division=0.0),
                    "recall": skm.recall_score(y, d, zero_division=0.0),
                    "f1": skm.f1_score(y, d, zero_division=0.0)}
        got = evaluate.decision_scores(y, decided)
        assert got == {k: float(v) for k, v in expected.items()}


def test_night_ids_number_station_nights_in_order_of_appearance():
    # the definition: local solar time - 12 h, its date, per station; ids in order of first
    # appearance (what factorising "station/YYYYMMDD" strings gives), -1 without a time
    times = pd.Series(pd.to_datetime([
        "2001-03-01 23:00", "2001-03-02 05:00",   # one night at longitude 0
        "2001-03-02 13:00",                       # the next "day" after local noon
        "2001-03-01 23:00", None,                 # another station; no time
        "2001-03-02 11:30"], utc=True))
    rows = pd.DataFrame({"target_time": times,
                         "station_id": ["a", "a", "a", "b", "b", "a"],
                         "longitude": [0.0, 0.0, 0.0, 0.0, 0.0, 15.0]})
    # the last row: 11:30 UTC at 15 deg E is 12:30 local, past noon: a new night
    assert evaluate.night_ids(rows).tolist() == [0, 0, 1, 2, -1, 1]
    naive = rows.assign(target_time=times.dt.tz_convert(None))
    assert evaluate.night_ids(naive).tolist() == [0, 0, 1, 2, -1, 1]
    # west of Greenwich the local night starts later in UTC: 2001-03-02 03:00 UTC at
    # 120 deg W is 19:00 local on 1 March — the evening of the 1st's night
    west = pd.DataFrame({"target_time": pd.to_datetime(["2001-03-02 03:00", "2001-03-02 19:00"],
                                                       utc=True),
                         "station_id": ["w", "w"], "longitude": [-120.0, -120.0]})
    assert evaluate.night_ids(west).tolist() == [0, 0]
