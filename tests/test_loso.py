"""Leave one station out and the adaptation simulation, on pvlib's three real stations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starry_guide.core import features, models, splits
from starry_guide.pipeline import loso


@pytest.fixture(scope="module")
def rows(observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    return rows


def test_baseline_against_itself_has_zero_skill_everywhere(rows, settings):
    result = loso.leave_one_station_out(rows, models.CalibratedPersistenceClassifier(),
                                        settings, "calibrated_persistence")
    assert set(result.rows["station_id"]) == set(rows["station_id"])
    assert len(result.rows) == len(rows)  # every row of every station is scored once
    summary = result.summary()
    assert summary["pooled"]["bss"] == 0
    assert all(v == 0 for v in summary["bss_by_station"].values())
    assert set(summary["bss_by_station_and_horizon"]["miami_fl"]) == {
        str(h) for h in settings.label.horizons}


def test_a_station_never_sees_its_own_labels(rows, settings):
    model = models.PersistenceLogisticClassifier(C=0.1)
    first = loso.leave_one_station_out(rows, model, settings, "persistence_logistic")
    flipped = rows.copy()
    at = flipped["station_id"] == "miami_fl"
    flipped.loc[at, "clear"] = 1 - flipped.loc[at, "clear"]
    second = loso.leave_one_station_out(flipped, model, settings, "persistence_logistic")
    mine = first.rows["station_id"] == "miami_fl"
    np.testing.assert_array_equal(first.rows.loc[mine, "p"], second.rows.loc[mine, "p"])
    np.testing.assert_array_equal(first.rows.loc[mine, "p_baseline"],
                                  second.rows.loc[mine, "p_baseline"])
    # ... while the other stations' models did learn from them
    assert not np.array_equal(first.rows.loc[~mine, "p"], second.rows.loc[~mine, "p"])


def test_recalibration_fixes_a_biased_forecast_and_shrinks_with_few_rows():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.8).astype(int)
    p = np.full(4000, 0.5)
    fixed = loso.recalibrate(p[:2000], y[:2000], p[2000:], shrinkage=10.0)
    assert abs(fixed.mean() - 0.8) < 0.03
    barely = loso.recalibrate(p[:5], y[:5], p[2000:], shrinkage=10.0)
    assert abs(barely.mean() - 0.5) < abs(fixed.mean() - 0.5)
    np.testing.assert_array_equal(loso.recalibrate(p[:0], y[:0], p, 10.0), p)


def test_adaptation_compares_every_n_on_the_same_later_nights(rows, settings):
    result = loso.leave_one_station_out(rows, models.PersistenceLogisticClassifier(C=0.1),
                                        settings, "persistence_logistic")
    table = loso.adaptation(result, labelled_nights=(0, 7, 30), starts=2)
    assert list(table.index) == [0, 7, 30]
    assert table["scored_rows"].nunique() == 1
    zero = table.loc[0]
    assert zero["bss_vs_baseline"] == zero["bss_vs_adapted_baseline"]
    assert np.isfinite(table.to_numpy(dtype=float)).all()
    assert isinstance(table, pd.DataFrame)


def test_design_loso_never_fits_or_scores_a_held_out_month(rows, settings):
    """The numbers choices are made on: validation months scored, training months fitted.
    Flipping every label of the held-out and validation months changes no forecast (they
    are never fitted); flipping the training months' labels does."""
    model = models.PersistenceLogisticClassifier(C=0.1)
    first = loso.leave_one_station_out(rows, model, settings, "persistence_logistic",
                                       design=True)
    month = rows["segment"] % 100
    scored = rows[month.isin(settings.split.validation_months)]
    assert len(first.rows) == len(scored)
    assert set(first.rows["station_id"]) == set(rows["station_id"])
    assert first.summary()["pooled_held_out_months"] is None
    flipped = rows.copy()
    untouched = month.isin((*settings.split.held_out_months, *settings.split.validation_months))
    flipped.loc[untouched, "clear"] = 1 - flipped.loc[untouched, "clear"]
    second = loso.leave_one_station_out(flipped, model, settings, "persistence_logistic",
                                        design=True)
    np.testing.assert_array_equal(first.rows["p"], second.rows["p"])
    np.testing.assert_array_equal(first.rows["p_baseline"], second.rows["p_baseline"])
    # ... but the training months are what it learns from
    trained = flipped.copy()
    trained.loc[~untouched, "clear"] = 1 - trained.loc[~untouched, "clear"]
    third = loso.leave_one_station_out(trained, model, settings, "persistence_logistic",
                                       design=True)
    assert not np.array_equal(first.rows["p"], third.rows["p"])


def test_summary_and_pooled_are_computed_once_and_handed_out_as_copies(rows, settings):
    result = loso.leave_one_station_out(rows, models.CalibratedPersistenceClassifier(),
                                        settings, "calibrated_persistence")
    first = result.summary()
    first["bss_by_station"].clear()  # a caller editing its copy ...
    first["pooled"]["bss"] = 99.0
    pooled = result.pooled()
    pooled["brier"] = -1.0
    again = result.summary()  # ... changes nothing for the next one
    assert again["bss_by_station"] and again["pooled"]["bss"] == 0
    assert result.pooled()["brier"] == again["pooled"]["brier"] > 0
    # and the memo holds what a fresh result computes
    fresh = loso.LosoResult(result.candidate, result.rows)
    assert fresh.summary() == again and fresh.pooled(held_out_only=True) == \
        result.pooled(held_out_only=True)
