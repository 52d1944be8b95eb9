"""Behavioural tests of the champion (in the spirit of CheckList / Made-With-ML): properties
any forecast must have, checked on the committed champion bundle through the one inference
chain, and on its recipe left one station out — whatever model the pipeline promoted.

* more opaque cover now never raises P(clear);
* P(clear) is a finite probability under every input profile;
* removing any one optional input never makes the leave-one-station-out Brier score worse
  than calibrated persistence's on the same fields.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starry_guide.artifacts import champion_card
from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import astro, features, inference, models, profiles, splits
from starry_guide.pipeline import loso
from starry_guide.pipeline import profiles as pipeline_profiles

#: a few horizons keep the leave-one-station-out refits within seconds
LOSO_HORIZONS = (1, 3, 6, 12)


@pytest.fixture(scope="module")
def bundle(settings):
    return load_bundle(settings.paths.champion_dir / "bundle")


def inputs(frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    frame = frame.sort_values(["station_id", "time"], kind="stable")
    columns = {c: frame[c].to_numpy(dtype=float) for c in features.INPUT_COLUMNS}
    seconds = astro.epoch_seconds(frame["time"])
    return columns, seconds, inference.runs_of_hours(seconds, frame["station_id"].to_numpy())


def test_more_opaque_cover_now_never_raises_p_clear(bundle, observations):
    columns, seconds, run_start = inputs(observations)
    history = bundle.feature_settings.history_h
    # issue hours further apart than the history: changing one never touches another's inputs
    issue = np.arange(history, len(seconds), history + 2)
    issue = issue[[not run_start[i - history + 1:i + 1].any() for i in issue]]
    by_cover = []
    for cover in range(11):
        changed = {**columns, "opaque_cloud_tenths": columns["opaque_cloud_tenths"].copy()}
        changed["opaque_cloud_tenths"][issue] = cover
        result = inference.infer(changed, seconds, run_start, bundle, bundle.feature_settings,
                                 bundle.horizons, issue_at=issue)
        by_cover.append(result.p_clear)
    p = np.stack(by_cover)  # cover, issue hour, horizon
    rises = np.diff(p, axis=0)
    assert len(issue) > 1000
    assert rises.max() <= 1e-6, (
        f"P(clear) rises by up to {rises.max():.4f} when the opaque cover now grows "
        f"(from {int(np.unravel_index(rises.argmax(), rises.shape)[0])} tenths)")


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_p_clear_is_a_finite_probability_under_every_profile(bundle, observations, name):
    shaped = pipeline_profiles.apply_to_frame(observations, profiles.PROFILES[name])
    columns, seconds, run_start = inputs(shaped)
    result = inference.infer(columns, seconds, run_start, bundle, bundle.feature_settings,
                             bundle.horizons)
    assert result.p_clear.size > 10_000
    assert np.isfinite(result.p_clear).all()
    assert ((result.p_clear >= 0) & (result.p_clear <= 1)).all()


@pytest.fixture(scope="module")
def champion_recipe(settings):
    card = champion_card.read(settings.paths.champion_dir)
    name = card["candidate"] if card else "persistence_logistic"
    if name in ("persistence", "calibrated_persistence"):
        pytest.skip(f"the champion is {name}: persistence itself")
    return models.build_candidate(name, settings.train.params_for(name), settings.seed,
                                  settings.label.clear_max_opaque_tenths)


def test_removing_any_one_optional_input_never_loses_to_persistence_at_new_places(
        champion_recipe, observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows = rows[rows["horizon_h"].isin(LOSO_HORIZONS)].reset_index(drop=True)
    rows["split"] = splits.assign_splits(rows, settings.split)
    shapes = [profiles.FULL] + [profiles.InputProfile(f"without {name}", name, absent=(name,))
                                for name in profiles.OPTIONAL_INPUTS]
    by_shape = pipeline_profiles.profile_rows(observations, rows, settings, shapes)
    results = loso.leave_one_station_out_by_profile(by_shape, champion_recipe, settings,
                                                    "champion")
    table = loso.profile_table(results)
    # the property is about removals: with three stations as different as Greensboro, Miami
    # and Sand Point the full model itself sits near calibrated persistence at new places
    # (-0.007 BSS; +0.019 over the eight stations), and a missing field must not push it below
    losing = {name: t["bss"] for name, t in table.items()
              if name != "full" and t["brier"] > t["brier_baseline"]}
    assert not losing, f"worse than calibrated persistence at new places: {losing}"
    assert len(table) == 1 + len(profiles.OPTIONAL_INPUTS)
