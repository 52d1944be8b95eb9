import numpy as np
import pandas as pd
import pytest

from starry_guide.core import features


@pytest.fixture(scope="module")
def rows(observations, settings):
    return features.supervised_rows(observations, settings.label, settings.features)


def test_every_row_has_the_model_columns(rows, settings):
    assert set(features.feature_columns(settings.features)) <= set(rows.columns)
    assert set(rows["horizon_h"].unique()) == set(map(float, settings.label.horizons))


def test_label_is_opaque_cover_at_target(rows, settings):
    expected = rows["target_opaque_cloud_tenths"] <= settings.label.clear_max_opaque_tenths
    assert (rows["clear"] == expected.astype(int)).all()
    hours = (rows["target_time"] - rows["time"]) / pd.Timedelta(hours=1)
    assert (hours == rows["horizon_h"]).all()


def test_targets_are_night_hours(rows, settings):
    assert (rows["target_sun_elevation_deg"] < settings.label.night_max_sun_elevation_deg).all()


def test_no_row_straddles_a_month_of_another_year(rows, observations, settings):
    segment_at = observations.set_index(["station_id", "time"])["segment"]
    target_segment = segment_at.reindex(
        pd.MultiIndex.from_arrays([rows["station_id"], rows["target_time"]])).to_numpy()
    assert (target_segment == rows["segment"].to_numpy()).all()
    # and the history window too: the earliest hour a row looks back to is in its segment
    first_hour = observations.groupby(["station_id", "segment"])["time"].min()
    start = first_hour.reindex(pd.MultiIndex.from_arrays([rows["station_id"], rows["segment"]]))
    history = pd.Timedelta(hours=settings.features.history_h)
    assert (rows["time"].to_numpy() - history >= start.to_numpy()).all()


def test_features_at_t_ignore_everything_after_t(observations, settings):
    station = observations[observations["station_id"] == "greensboro_nc"].reset_index(drop=True)
    t = station["time"].iloc[4000]
    before = features.hourly_features(station, settings.features)
    perturbed = station.copy()
    later = perturbed["time"] > t
    for column in ["opaque_cloud_tenths", "total_cloud_tenths", "temp_air_c", "pressure_hpa",
                   "relative_humidity", "temp_dew_c", "wind_speed_ms", "visibility_km"]:
        perturbed.loc[later, column] = perturbed.loc[later, column] * 0.5 + 3.0
    after = features.hourly_features(perturbed, settings.features)
    columns = [c for c in before.columns if c != "history_complete"]
    at_or_before = before["time"] <= t
    pd.testing.assert_frame_equal(before.loc[at_or_before, columns],
                                  after.loc[at_or_before, columns])
    # sanity: the perturbation did change later features
    assert not before.loc[~at_or_before, "opaque_lag_1h"].equals(
        after.loc[~at_or_before, "opaque_lag_1h"])


def test_lags_are_the_observations_k_hours_before(observations, settings):
    hourly = features.hourly_features(observations, settings.features)
    miami = hourly[hourly["station_id"] == "miami_fl"].reset_index(drop=True)
    obs = observations[observations["station_id"] == "miami_fl"].reset_index(drop=True)
    i = 500  # well inside January
    for k in settings.features.cloud_lags_h:
        assert miami.loc[i, f"opaque_lag_{k}h"] == obs.loc[i - k, "opaque_cloud_tenths"]
    w = settings.features.rolling_windows_h[-1]
    assert miami.loc[i, f"opaque_mean_{w}h"] == pytest.approx(
        obs.loc[i - w + 1:i, "opaque_cloud_tenths"].mean())


def test_serving_rows_match_training_rows(observations, settings, rows):
    # the API path (model_rows on recent hours) gives the same features as training rows
    station = observations[observations["station_id"] == "miami_fl"]
    recent = station.iloc[2000:2030]
    hourly = features.hourly_features(recent, settings.features)
    served = features.model_rows(hourly.tail(1), settings.label.horizons, settings.features)
    trained = rows[(rows["station_id"] == "miami_fl") & (rows["time"] == recent["time"].iloc[-1])]
    assert len(trained) > 0
    columns = features.feature_columns(settings.features)
    merged = served.merge(trained, on="horizon_h", suffixes=("_served", "_trained"))
    for column in columns:
        if column == "horizon_h":
            continue
        np.testing.assert_allclose(merged[f"{column}_served"], merged[f"{column}_trained"],
                                   equal_nan=True, rtol=1e-12, err_msg=column)


def test_history_features_match_a_pandas_groupby_reference(observations, settings):
    # an independent reference: pandas' groupby shift/rolling over (station, segment)
    fs = settings.features
    obs = observations.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    # knock out some hours so the windows must skip missing values
    obs.loc[obs.index % 7 == 3, "opaque_cloud_tenths"] = np.nan
    hourly = features.hourly_features(obs, fs)
    grouped = obs.groupby(["station_id", "segment"], sort=False)["opaque_cloud_tenths"]
    for k in fs.cloud_lags_h:
        np.testing.assert_array_equal(hourly[f"opaque_lag_{k}h"], grouped.shift(k))
    for w in fs.rolling_windows_h:
        rolling = grouped.rolling(w, min_periods=1)
        mean = rolling.mean().reset_index(level=[0, 1], drop=True).sort_index()
        std = rolling.std(ddof=0).reset_index(level=[0, 1], drop=True).sort_index()
        np.testing.assert_allclose(hourly[f"opaque_mean_{w}h"], mean, atol=1e-12)
        # pandas' running-sum algorithm drifts (2e-7 where a window is constant); ours is
        # computed per window and gives exactly 0 there
        np.testing.assert_allclose(hourly[f"opaque_std_{w}h"], std, atol=1e-6)
        constant = hourly[f"opaque_std_{w}h"] == 0
        assert (std[constant.to_numpy()] < 1e-6).all()
    n = fs.tendency_h
    np.testing.assert_array_equal(
        hourly[f"pressure_change_{n}h"],
        obs["pressure_hpa"] - obs.groupby(["station_id", "segment"])["pressure_hpa"].shift(n))
    position = obs.groupby(["station_id", "segment"]).cumcount()
    np.testing.assert_array_equal(hourly["history_complete"], position >= fs.history_h)
