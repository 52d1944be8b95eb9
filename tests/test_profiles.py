"""Input profiles: their definitions on real station data, the profile rows, the fallback
sub-models (scikit-learn and ONNX), the gate's profile test, the monitor's coverage alerts
and `starry validate`'s coverage lines."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from starry_guide.artifacts import onnx_export
from starry_guide.core import features, models, profiles, splits
from starry_guide.ingest import profiles as ingest_profiles
from starry_guide.monitor import checks
from starry_guide.pipeline import champion
from starry_guide.pipeline import profiles as pipeline_profiles


@pytest.fixture(scope="module")
def rows(observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    return rows


@pytest.fixture(scope="module")
def by_profile(observations, rows, settings):
    return pipeline_profiles.profile_rows(observations, rows, settings)


def test_metar_categories_follow_the_okta_ranges():
    tenths = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, np.nan])
    got = profiles.quantise_cover(tenths)
    expected = [0, 1.875, 1.875, 1.875, 4.375, 4.375, 7.5, 7.5, 7.5, 7.5, 10]
    np.testing.assert_array_equal(got[:-1], expected)
    assert np.isnan(got[-1])


def test_each_profile_takes_away_what_its_source_lacks(observations):
    greensboro = observations[observations["station_id"] == "greensboro_nc"]
    columns = {c: greensboro[c].to_numpy(dtype=float)
               for c in (*profiles.COVER_INPUTS, *profiles.OPTIONAL_INPUTS)}
    metar = profiles.apply_profile(columns, profiles.METAR_LIKE)
    assert np.isnan(metar["precipitable_water_cm"]).all()
    assert np.nanmax(metar["visibility_km"]) <= profiles.METAR_VISIBILITY_CAP_KM
    ceiling = metar["ceiling_m"]
    assert np.nanmax(ceiling) <= profiles.METAR_CEILING_SEEN_TO_M
    # unlimited (20000 m) and high ceilings became unknown, low ones are kept as they were
    low = columns["ceiling_m"] <= profiles.METAR_CEILING_SEEN_TO_M
    np.testing.assert_array_equal(ceiling[low], columns["ceiling_m"][low])
    assert np.isnan(ceiling[~low]).all()
    assert set(np.unique(metar["opaque_cloud_tenths"])) <= set(profiles.METAR_COVER_TENTHS)
    np.testing.assert_array_equal(metar["temp_air_c"], columns["temp_air_c"])
    only = profiles.apply_profile(columns, profiles.COVER_ONLY)
    assert all(np.isnan(only[c]).all() for c in profiles.COVER_ONLY.absent)
    np.testing.assert_array_equal(only["opaque_cloud_tenths"], columns["opaque_cloud_tenths"])
    # nothing is changed in place
    assert not np.isnan(columns["precipitable_water_cm"]).all()


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_a_profiled_file_is_detected_as_that_profile(observations, name):
    greensboro = observations[observations["station_id"] == "greensboro_nc"]
    shaped = pipeline_profiles.apply_to_frame(greensboro, profiles.PROFILES[name])
    coverage = ingest_profiles.file_coverage(shaped)
    assert coverage["input_profile"] == name
    assert set(profiles.PROFILES[name].absent) <= set(coverage["missing_inputs"])


def test_a_file_with_a_dropped_field_lists_it(observations):
    sand_point = observations[observations["station_id"] == "sand_point_ak"]
    # pvlib's Sand Point reports 1012 hPa for every hour: the quality policy drops it
    assert ingest_profiles.file_coverage(sand_point) == {"missing_inputs": ["pressure_hpa"],
                                                         "input_profile": "full"}


def test_unknown_profile_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown input profile 'iwec'.*no_precipitable_water"):
        profiles.profile("iwec")
    with pytest.raises(ValueError, match="names 'cloud_base', not optional inputs"):
        models.PersistenceLogisticClassifier(fallbacks=(("cloud_base",),)).fit(
            pd.DataFrame({"horizon_h": [1.0, 1.0], "opaque_cloud_tenths": [0.0, 9.0]}), [1, 0])


def test_profile_rows_equal_rows_rebuilt_from_profiled_observations(observations, rows,
                                                                    by_profile, settings):
    columns = features.feature_columns(settings.features)
    for name in ("metar_like", "cover_only"):
        shaped = pipeline_profiles.apply_to_frame(observations, profiles.PROFILES[name])
        rebuilt = features.supervised_rows(shaped, settings.label, settings.features)
        fast = by_profile[name]
        assert len(fast) == len(rows)
        np.testing.assert_array_equal(rebuilt["time"].to_numpy(), fast["time"].to_numpy())
        np.testing.assert_array_equal(rebuilt[columns].to_numpy(), fast[columns].to_numpy())
        # the labels are the full record's, never the profile's coarser cover
        np.testing.assert_array_equal(fast["clear"].to_numpy(), rows["clear"].to_numpy())


@pytest.fixture(scope="module")
def fallback_model(rows, settings):
    """The persistence logistic as params.yaml configures it (fallbacks included)."""
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    model = models.build_candidate("persistence_logistic",
                                   settings.train.params_for("persistence_logistic"),
                                   settings.seed, settings.label.clear_max_opaque_tenths)
    assert len(model.fallbacks) == 3
    return model.fit(train[columns], train["clear"])


def test_rows_use_the_first_sub_model_that_lacks_nothing_they_lack(fallback_model, by_profile,
                                                                   settings):
    columns = features.feature_columns(settings.features)
    held = {name: frame[frame["split"] == "held_out"][columns]
            for name, frame in by_profile.items()}
    judged = ["precipitable_water_cm", "visibility_km", "ceiling_m", "temp_air_c",
              "relative_humidity", "wind_speed_ms", "total_cloud_tenths", "pressure_change_3h"]
    complete = held["full"][judged].notna().all(axis=1).to_numpy()
    used = fallback_model.sub_model(held["full"])
    assert (used[complete] == 0).all() and (used[~complete] > 0).all()
    # without precipitable water: never the full regression; the no-PW one when the rest is
    no_water = fallback_model.sub_model(held["no_precipitable_water"])
    assert (no_water > 0).all() and (no_water[complete] == 1).all()
    # cover only (the total cover kept): the last sub-model, the opaque cover alone
    assert (fallback_model.sub_model(held["cover_only"]) == 3).all()
    metar = fallback_model.sub_model(held["metar_like"])
    low_ceiling = held["metar_like"]["ceiling_m"].notna().to_numpy()
    # a ceiling seen below 3,650 m: the no-PW model; none seen: the one without ceiling
    assert (metar[complete & low_ceiling] == 1).all()
    assert (metar[complete & ~low_ceiling] == 2).all()
    # a station without pressure (Sand Point's is stuck and dropped) falls back too: imputing
    # it would let its missing indicator stand for "Sand Point"
    no_pressure = fallback_model.sub_model(held["full"].assign(pressure_change_3h=np.nan))
    assert (no_pressure[complete] == 1).all()


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_fallback_sub_models_export_to_onnx_with_parity(fallback_model, by_profile, settings,
                                                        name):
    columns = features.feature_columns(settings.features)
    held = by_profile[name][by_profile[name]["split"] == "held_out"]
    session = ort.InferenceSession(onnx_export.to_onnx(fallback_model, columns)
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    p_onnx = session.run(["p_clear"], {"features": held[columns].to_numpy(np.float32)})[0]
    p_sklearn = fallback_model.predict_proba(held[columns])[:, 1]
    assert np.max(np.abs(p_onnx - p_sklearn)) <= onnx_export.PARITY_TOLERANCE


def test_a_fallback_is_anchored_on_the_last_sub_model(fallback_model, by_profile, settings):
    """``fallback_anchor`` averages a fallback's logit with the last (cover-only) one, before
    the fallback shrinkage; the full regression and the last sub-model's own rows are
    untouched."""
    columns = features.feature_columns(settings.features)
    held = by_profile["metar_like"]
    held = held[held["split"] == "held_out"][columns]
    choice = fallback_model.sub_model(held)
    assert set(np.unique(choice)) >= {1, 2}
    at_ends = copy.deepcopy(fallback_model)

    def logit(model, anchor):
        model.fallback_anchor = anchor
        return models.to_logit(model.predict_proba(held)[:, 1])

    alone, anchored, halfway = (logit(at_ends, a) for a in (0.0, 1.0, 0.5))
    assert fallback_model.fallback_anchor > 0  # params.yaml anchors the fallbacks
    middle = (choice == 1) | (choice == 2)
    # anchor 1: every fallback forecasts as the last sub-model would (shrunk alike)
    cover_only = held.assign(**{c: np.nan for c in fallback_model.optional_features_})
    assert (fallback_model.sub_model(cover_only) == 3).all()
    last = models.to_logit(at_ends.predict_proba(cover_only)[:, 1])
    np.testing.assert_allclose(anchored[middle], last[middle], atol=1e-9)
    # in between, the average of the two (the shrinkage is linear in the logit)
    np.testing.assert_allclose(halfway[middle], (alone[middle] + anchored[middle]) / 2,
                               atol=1e-9)
    assert not np.allclose(alone[middle], anchored[middle])
    for other in (0, 3):
        np.testing.assert_array_equal(alone[choice == other], anchored[choice == other])


def test_a_missing_field_costs_the_fallback_model_nothing_against_persistence(
        fallback_model, by_profile, settings):
    """Training stations, held-out months, under every profile: never worse than
    calibrated persistence fit on the profile's fields (new places: tests/test_behaviour.py)."""
    columns = features.feature_columns(settings.features)
    for name, frame in by_profile.items():
        held = frame[frame["split"] == "held_out"]
        fit = frame[frame["split"] == "train"]
        baseline = models.CalibratedPersistenceClassifier().fit(fit[columns], fit["clear"])
        y = held["clear"].to_numpy()
        model = np.mean((fallback_model.predict_proba(held[columns])[:, 1] - y) ** 2)
        reference = np.mean((baseline.predict_proba(held[columns])[:, 1] - y) ** 2)
        assert model <= reference, name


def test_the_gate_refuses_a_challenger_below_persistence_under_a_profile(settings):
    rng = np.random.default_rng(3)
    n_nights, hours = 150, 12
    nights = np.repeat(np.arange(n_nights), hours)
    horizons = np.tile(np.arange(1, hours + 1), n_nights).astype(float)
    truth = rng.uniform(0.05, 0.95, n_nights)[nights]
    y = (rng.random(len(nights)) < truth).astype(float)
    baseline = np.clip(truth + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    good = np.clip(truth + rng.normal(0, 0.05, len(y)), 0.01, 0.99)
    frame = pd.DataFrame({"station_id": "s", "clear": y.astype(int), "horizon_h": horizons,
                          "longitude": 0.0,
                          "target_time": pd.Timestamp("2001-01-01", tz="UTC")
                          + pd.to_timedelta(nights * 24 + horizons % 6, unit="h")})
    quick = dataclasses.replace(settings, select=dataclasses.replace(settings.select,
                                                                     bootstrap_samples=300))
    incumbent = champion.Incumbent("old", "old-id", "models/champion", lambda X: None)

    def decide(p_profile):
        test = champion.HeldOutTest(frame, {"new": p_profile}, baseline, n_nights,
                                    label="input profile metar_like (validation months)",
                                    key="profile_metar_like", p_baseline=baseline)
        return champion.decide(["new"], {"new": "new-id"}, {"new": good}, incumbent,
                               baseline, baseline, frame, quick, {"new": {"brier": 0.1}},
                               {"brier": 0.2}, profile_tests=[test])

    kept = decide(good)
    assert kept.promote, kept.reason
    assert kept.tried[0]["profile_metar_like"]["bss_vs_calibrated_persistence"] > 0
    # as good on validation, but worse than persistence (and the champion) under the profile
    worse = np.clip(truth + rng.normal(0, 0.45, len(y)), 0.01, 0.99)
    refused = decide(worse)
    assert not refused.promote
    assert "input profile metar_like (validation months): worse than calibrated " \
           "persistence" in refused.reason
    assert "significantly worse" in refused.reason


def test_the_monitor_alerts_when_a_field_disappears_and_when_it_appears(observations,
                                                                        settings):
    hours = observations[observations["station_id"] == "greensboro_nc"].iloc[:24 * 7 * 4]
    hours = hours.assign(time=pd.date_range("2026-10-05", periods=len(hours), freq="h",
                                            tz="UTC"))  # a Monday: four whole weeks
    gone = hours["time"] >= pd.Timestamp("2026-10-19", tz="UTC")
    back = hours["time"] >= pd.Timestamp("2026-10-26", tz="UTC")
    feed = hours.assign(precipitable_water_cm=hours["precipitable_water_cm"].mask(
        gone & ~back))
    alerts = checks.coverage_alerts(feed, settings.monitor)
    assert list(alerts["sensor"]) == ["precipitable_water_cm"] * 2
    assert [str(c)[:10] for c in alerts["chunk"]] == ["2026-10-19", "2026-10-26"]
    assert "disappeared (input profile full -> no_precipitable_water)" in alerts["detail"][0]
    assert "appeared (input profile no_precipitable_water -> full)" in alerts["detail"][1]
    assert checks.coverage_alerts(hours, settings.monitor).empty


def test_a_nowcast_says_what_its_latest_hour_lacks(observations):
    hours = observations[observations["station_id"] == "miami_fl"].iloc[100:107]
    columns = {c: hours[c].to_numpy(dtype=float) for c in (*profiles.COVER_INPUTS,
                                                           *profiles.OPTIONAL_INPUTS)}
    assert profiles.coverage(columns) == {"missing_inputs": [], "input_profile": "full"}
    metar = profiles.apply_profile(columns, profiles.METAR_LIKE)
    got = profiles.coverage(metar)
    assert "precipitable_water_cm" in got["missing_inputs"]
    assert got["input_profile"] in ("metar_like", "no_precipitable_water")


def test_one_hour_and_many_hours_follow_one_missing_rule(observations):
    hours = observations[observations["station_id"] == "miami_fl"].iloc[200:204]
    frame = hours[list(dict.fromkeys((*profiles.COVER_INPUTS, *profiles.OPTIONAL_INPUTS)))]
    frame = frame.astype(float)
    frame.loc[frame.index[-1], "visibility_km"] = np.nan      # the latest hour lacks it
    frame["ceiling_m"] = np.nan                               # every hour lacks it
    # as arrays, as lists holding None, and as Series indexed by time (not from 0)
    as_arrays = {c: frame[c].to_numpy() for c in frame}
    as_lists = {c: [None if np.isnan(v) else v for v in frame[c]] for c in frame}
    as_series = {c: frame[c].set_axis(hours["time"]) for c in frame}
    for columns in (as_arrays, as_lists, as_series):
        assert profiles.missing_inputs(columns) == ["ceiling_m"]
        latest = {c: v[-1:] for c, v in columns.items()}
        assert profiles.missing_inputs(latest) == ["visibility_km", "ceiling_m"]
        assert profiles.coverage(columns)["missing_inputs"] == ["visibility_km", "ceiling_m"]
    assert profiles.missing_inputs({}) == list(profiles.OPTIONAL_INPUTS)
    assert "visibility_km" in profiles.missing_inputs({"visibility_km": np.array([])})
