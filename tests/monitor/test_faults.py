"""The replay's faults: pure functions of the frame, each changing what it says from its
date on and nothing before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.tools import replay

START = pd.Timestamp("2001-07-01", tz="UTC")


@pytest.fixture(scope="module")
def frame(observations):
    return observations[observations["station_id"] == "greensboro_nc"].reset_index(drop=True)


def _split(frame):
    after = (frame["time"] >= START).to_numpy()
    return ~after, after


@pytest.mark.parametrize("name", list(replay.FAULTS))
def test_faults_are_pure_and_leave_the_past_alone(frame, name):
    copy = frame.copy()
    out = replay.FAULTS[name].apply(frame, START, np.random.default_rng(1))
    pd.testing.assert_frame_equal(frame, copy)  # input untouched
    before, after = _split(frame)
    pd.testing.assert_frame_equal(out[before], frame[before])
    assert not out.loc[after, list(WEATHER_COLUMNS)].equals(frame.loc[after, list(WEATHER_COLUMNS)])
    again = replay.FAULTS[name].apply(frame, START, np.random.default_rng(1))
    pd.testing.assert_frame_equal(out, again)


def test_stuck_cloud_sensor_freezes_the_last_value(frame):
    out = replay.stuck_cloud_sensor(frame, START, np.random.default_rng(0))
    before, after = _split(frame)
    last = frame.loc[before, "opaque_cloud_tenths"].iloc[-1]
    assert (out.loc[after, "opaque_cloud_tenths"] == last).all()
    assert out.loc[after, "total_cloud_tenths"].equals(frame.loc[after, "total_cloud_tenths"])


def test_unit_changes(frame):
    _, after = _split(frame)
    metres = replay.visibility_in_metres(frame, START, np.random.default_rng(0))
    np.testing.assert_allclose(metres.loc[after, "visibility_km"],
                               frame.loc[after, "visibility_km"] * 1000)
    fahrenheit = replay.temperature_in_fahrenheit(frame, START, np.random.default_rng(0))
    np.testing.assert_allclose(fahrenheit.loc[after, "temp_air_c"],
                               frame.loc[after, "temp_air_c"] * 1.8 + 32)
    missing = replay.missing_sensor(frame, START, np.random.default_rng(0))
    assert missing.loc[after, "pressure_hpa"].isna().all()


def test_shift_clear_rate_clouds_the_nights_over(frame):
    out = replay.shift_clear_rate(frame, START, np.random.default_rng(0))
    _, after = _split(frame)
    night = after & (frame["sun_elevation_deg"] < -12).to_numpy()
    rate = (frame.loc[night, "opaque_cloud_tenths"] <= 2).mean()
    shifted = (out.loc[night, "opaque_cloud_tenths"] <= 2).mean()
    assert rate > 0.3 and shifted < 0.3 * rate
    noon = after & (frame["sun_elevation_deg"] > 30).to_numpy()
    pd.testing.assert_series_equal(out.loc[noon, "opaque_cloud_tenths"],
                                   frame.loc[noon, "opaque_cloud_tenths"])
    assert (out["opaque_cloud_tenths"] <= 10).all()


def test_world_faults_reach_the_users_sensor_faults_do_not(frame):
    faults = [replay.parse_fault("shift-clear-rate@2001-07-01"),
              replay.parse_fault("stuck-cloud-sensor@2001-09-01")]
    sent, world = replay.apply_faults(frame, faults, seed=5)
    september = (frame["time"] >= pd.Timestamp("2001-09-01", tz="UTC")).to_numpy()
    assert sent.loc[september, "opaque_cloud_tenths"].nunique() == 1
    assert world.loc[september, "opaque_cloud_tenths"].nunique() > 5
    july = (frame["time"] >= START).to_numpy() & ~september
    pd.testing.assert_series_equal(sent.loc[july, "opaque_cloud_tenths"],
                                   world.loc[july, "opaque_cloud_tenths"])
    again, _ = replay.apply_faults(frame, faults, seed=5)
    pd.testing.assert_frame_equal(sent, again)


@pytest.mark.parametrize("text, message", [
    ("stuck-cloud-sensor", "write NAME@DATE"),
    ("melting-sensor@2001-07-01", "unknown fault 'melting-sensor'"),
    ("stuck-cloud-sensor@July", "is not a date"),
])
def test_bad_fault_arguments_are_explained(text, message):
    with pytest.raises(replay.ReplayError, match=message):
        replay.parse_fault(text)
