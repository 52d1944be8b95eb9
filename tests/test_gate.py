"""The champion gate on constructed forecasts with known truth."""

import numpy as np
import pytest

from starry_guide.core import evaluate
from starry_guide.pipeline import champion

N_NIGHTS, HOURS = 200, 12


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(7)
    nights = np.repeat(np.arange(N_NIGHTS), HOURS)
    horizons = np.tile(np.arange(1, HOURS + 1), N_NIGHTS).astype(float)
    truth_p = rng.uniform(0.05, 0.95, N_NIGHTS)[nights]  # a night is clear-ish or not
    y = (rng.random(len(nights)) < truth_p).astype(float)
    baseline = np.clip(truth_p + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    return y, nights, horizons, truth_p, baseline, rng


def run_gate(y, p_new, p_old, baseline, horizons, nights, tolerance=0.01):
    return champion.gate(y, p_new, p_old, baseline, horizons, nights, n_boot=1000,
                         confidence=0.95, horizon_tolerance=tolerance, seed=1)


def test_a_clearly_better_model_is_promoted(world):
    y, nights, horizons, truth_p, baseline, rng = world
    better = np.clip(truth_p + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    passed, reasons, details = run_gate(y, better, baseline, baseline, horizons, nights)
    assert passed, reasons
    assert details["ci_high"] < 0
    assert "Brier improves" in reasons[0]


def test_a_noisy_equal_model_is_refused(world):
    y, nights, horizons, truth_p, baseline, rng = world
    # the same information, different noise: no real improvement
    equal = np.clip(truth_p + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    passed, reasons, details = run_gate(y, equal, baseline, baseline, horizons, nights)
    assert not passed
    assert "not significant" in reasons[0]
    assert details["ci_low"] < 0 < details["ci_high"] or details["ci_low"] > 0


def test_a_model_that_loses_at_one_horizon_is_refused(world):
    y, nights, horizons, truth_p, baseline, rng = world
    better = np.clip(truth_p + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    at_1h = horizons == 1
    better[at_1h] = np.clip(baseline[at_1h] + rng.normal(0, 0.2, at_1h.sum()), 0.01, 0.99)
    passed, reasons, details = run_gate(y, better, baseline, baseline, horizons, nights)
    assert not passed
    assert details["ci_high"] < 0  # significant overall ...
    assert details["losing_horizons"] == [1]  # ... but it loses at 1 h
    assert "horizon(s) 1 h" in reasons[1]


def test_bootstrap_resamples_nights_not_rows(world):
    y, nights, horizons, truth_p, baseline, rng = world
    # errors shared by the hours of a night, as a weather model's are
    p = np.clip(truth_p + rng.normal(0, 0.2, N_NIGHTS)[nights], 0.01, 0.99)
    by_night = evaluate.paired_bootstrap_brier(y, p, baseline, nights, 2000, 0)
    by_row = evaluate.paired_bootstrap_brier(y, p, baseline, np.arange(len(y)), 2000, 0)
    # correlated hours: treating rows as independent understates the uncertainty
    assert (by_night["ci_high"] - by_night["ci_low"]) > (by_row["ci_high"] - by_row["ci_low"])
    assert by_night["nights"] == N_NIGHTS


def test_threshold_is_chosen_to_maximise_the_metric():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.35, 0.4, 0.8, 0.9])
    t = evaluate.choose_threshold(y, p, "accuracy")
    assert 0.35 < t <= 0.4


def test_expected_calibration_error():
    y = np.array([0, 1] * 50)
    assert evaluate.expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0)
    assert evaluate.expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)


# ----------------------------------------------------------------- the recent production window


def night_rows(y, nights, horizons, station="s"):
    import pandas as pd

    start = pd.Timestamp("2001-01-01T03:00", tz="UTC")  # 03 UTC: one night per date at lon 0
    return pd.DataFrame({"station_id": station, "clear": y.astype(int), "horizon_h": horizons,
                         "longitude": 0.0,
                         "target_time": start + pd.to_timedelta(nights * 24 + horizons % 6,
                                                                unit="h")})


@pytest.fixture(scope="module")
def decide_settings():
    import dataclasses

    from starry_guide.config import load_settings

    s = load_settings()
    return dataclasses.replace(s, select=dataclasses.replace(s.select, bootstrap_samples=400))


def decide(world, settings, p_val_new, p_recent_new, recent=True):
    y, nights, horizons, truth_p, baseline, rng = world
    incumbent = champion.Incumbent("old", "old-id", "models/champion", lambda X: None)
    window = None
    if recent:
        window = champion.HeldOutTest(night_rows(y, nights, horizons, "r"),
                                       {"new": p_recent_new}, baseline, N_NIGHTS)
    return champion.decide(
        ["new"], {"new": "new-id"}, {"new": p_val_new}, incumbent, baseline, baseline,
        night_rows(y, nights, horizons), settings, {"new": {"brier": 0.1}},
        {"brier": 0.2}, window)


def test_a_model_better_only_now_is_promoted_on_the_recent_window(world, decide_settings):
    y, nights, horizons, truth_p, baseline, rng = world
    same = np.clip(baseline + rng.normal(0, 0.002, len(y)), 0.01, 0.99)
    better = np.clip(truth_p + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    d = decide(world, decide_settings, same, better)
    assert d.promote and d.champion == "new", d.reason
    tried = d.tried[0]
    assert tried["recent"]["ci_high"] < 0 and tried["ci_low"] < 0 < tried["ci_high"]
    assert tried["confidence"] == pytest.approx(1 - 0.05 / 2)  # one challenger, two tests
    assert "recent production window" in d.reason
    # without a recent window the same model is judged on validation alone: refused
    assert not decide(world, decide_settings, same, better, recent=False).promote


def test_a_model_better_now_but_worse_on_validation_is_refused(world, decide_settings):
    y, nights, horizons, truth_p, baseline, rng = world
    worse = np.clip(baseline + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
    better = np.clip(truth_p + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    d = decide(world, decide_settings, worse, better)
    assert not d.promote and d.champion == "old"
    assert "significantly worse on the validation months" in d.reason


def transfer_test(world, p_refit):
    """A "new places" test whose refits (on demand, recorded in the list returned) all
    predict ``p_refit``."""
    y, nights, horizons, truth_p, baseline, rng = world
    asked = []

    def refit(name):  # on demand: only challengers the gate tries are refit
        asked.append(name)
        return p_refit

    rows = night_rows(y, nights, horizons, "t").assign(night=nights)
    return champion.HeldOutTest(rows, refit, baseline, N_NIGHTS, label="new places",
                                key="transfer", screens=False), asked


def test_a_recipe_better_at_new_places_is_promoted_on_the_transfer_test(world, decide_settings):
    y, nights, horizons, truth_p, baseline, rng = world
    same = np.clip(baseline + rng.normal(0, 0.002, len(y)), 0.01, 0.99)
    better = np.clip(truth_p + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    transfer, asked = transfer_test(world, better)
    incumbent = champion.Incumbent("old", "old-id", "models/champion", lambda X: None)
    d = champion.decide(["new", "worse"], {"new": "new-id", "worse": "worse-id"},
                        {"new": same, "worse": same}, incumbent, baseline, baseline,
                        night_rows(y, nights, horizons), decide_settings,
                        {"new": {"brier": 0.1}, "worse": {"brier": 0.3}}, {"brier": 0.2},
                        None, transfer)
    assert d.promote and d.champion == "new", d.reason
    assert d.tried[0]["transfer"]["ci_high"] < 0 and "new places" in d.reason
    assert asked == ["new"]  # 'worse' ranks below the champion: never refit
    assert d.tried[0]["confidence"] == pytest.approx(1 - 0.05 / 2)


def test_the_champions_own_recipe_retrained_is_not_judged_at_new_places(world, decide_settings):
    """Leave-one-station-out refits of the same recipe are the same models: no test there."""
    y, nights, horizons, truth_p, baseline, rng = world
    same = np.clip(baseline + rng.normal(0, 0.002, len(y)), 0.01, 0.99)
    transfer, asked = transfer_test(world, baseline)
    incumbent = champion.Incumbent("old", "old-id", "models/champion", lambda X: None)
    d = champion.decide(["old"], {"old": "retrained-id"}, {"old": same}, incumbent, baseline,
                        baseline, night_rows(y, nights, horizons), decide_settings,
                        {"old": {"brier": 0.1}}, {"brier": 0.2}, None, transfer)
    assert not d.promote and asked == [] and "transfer" not in d.tried[0]
    assert "new places: the champion's own recipe, nothing to compare" in d.reason
    assert "old (retrained) vs the champion old" in d.reason


def test_core_gate_statistics_are_pure_and_decide_as_documented():
    from starry_guide.core import gate as core_gate

    assert core_gate.bonferroni_level(0.95, 2, 3) == pytest.approx(1 - 0.05 / 6)
    assert core_gate.bonferroni_level(0.95, 0, 1) == pytest.approx(0.95)
    rng = np.random.default_rng(3)
    nights = np.repeat(np.arange(200), 6)
    y = (rng.random(len(nights)) < 0.4).astype(float)
    sharp = np.clip(y * 0.8 + 0.1, 0, 1)  # close to the truth
    vague = np.full(len(y), 0.5)
    better = core_gate.comparison(y, sharp, vague, nights, n_boot=200, confidence=0.95, seed=1)
    worse = core_gate.comparison(y, vague, sharp, nights, n_boot=200, confidence=0.95, seed=1)
    assert better["better"] and not better["worse"]
    assert worse["worse"] and not worse["better"]
    horizons = np.tile(np.arange(1, 7), 200)
    gate_result = core_gate.validation_gate(y, sharp, vague, vague, horizons, nights,
                                            n_boot=200, confidence=0.95,
                                            horizon_tolerance=0.0, seed=1)
    assert gate_result["passed"] and gate_result["losing_horizons"] == []
    neutral = {**better, "better": False, "worse": False}
    # better on a further test alone passes; worse on any test refuses
    assert core_gate.passes({**gate_result, "better": False}, [better])
    assert not core_gate.passes(gate_result, [worse])
    assert not core_gate.passes({**gate_result, "better": False}, [neutral])
    assert not core_gate.passes({**gate_result, "losing_horizons": [3]}, [better])
