import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from starry_guide.core import astro
from starry_guide.serve.planning import planner


def ks91_reference(moon_alt: float, alpha: float, v_dark: float, k: float) -> float:
    """Krisciunas & Schaefer (1991) transcribed independently, scalar, with the paper's
    nanoLambert <-> magnitude relation written out: B(nL) = pi * 1e5 * 108400 * 10^(-0.4 V)
    (the form used by other published implementations)."""
    if moon_alt <= 0:
        return v_dark
    zm = math.radians(90 - moon_alt)
    rho = max(90 - moon_alt, 10.0)
    i_star = 10 ** (-0.4 * (3.84 + 0.026 * abs(alpha) + 4e-9 * alpha ** 4))
    f_rho = 10 ** 5.36 * (1.06 + math.cos(math.radians(rho)) ** 2) + 10 ** (6.15 - rho / 40)
    x_moon = (1 - 0.96 * math.sin(zm) ** 2) ** -0.5
    b_moon = f_rho * i_star * 10 ** (-0.4 * k * x_moon) * (1 - 10 ** (-0.4 * k))
    b_dark = math.pi * 1e5 * 108400 * 10 ** (-0.4 * v_dark)
    return -2.5 * math.log10((b_dark + b_moon) / (math.pi * 1e5 * 108400))


@pytest.mark.parametrize("moon_alt, alpha", [(60, 0), (30, 0), (45, 90), (20, 120), (-5, 0),
                                             (85, 10)])
def test_sky_brightness_matches_an_independent_transcription(moon_alt, alpha):
    ours = astro.sky_brightness_zenith(np.array([moon_alt]), np.array([alpha]), 21.587, 0.172)
    assert ours[0] == pytest.approx(ks91_reference(moon_alt, alpha, 21.587, 0.172), abs=0.01)


def test_sky_brightness_physics():
    full_high = astro.sky_brightness_zenith(np.array([60.0]), np.array([0.0]))[0]
    quarter = astro.sky_brightness_zenith(np.array([60.0]), np.array([90.0]))[0]
    # a high full moon brightens a dark site by ~3-4 magnitudes (K&S 1991, fig. 1)
    assert 17.0 < full_high < 18.8
    assert full_high < quarter < 21.587
    # light pollution: a suburban baseline stays the floor
    assert astro.sky_brightness_zenith(np.array([-10.0]), np.array([0.0]), 18.5)[0] == 18.5


def test_twilight_phases():
    phases = planner.twilight_phase(np.array([5, -3, -8, -15, -30]))
    assert list(phases) == ["day", "civil twilight", "nautical twilight",
                            "astronomical twilight", "night"]


def test_night_steps_cover_one_night_in_15_minutes():
    steps = planner.night_steps(36.1, -79.95, dt.date(2026, 1, 15))
    assert len(steps) == 96 and (np.diff(steps.asi8) == 15 * 60 * 10**6).all()


def test_timeline_and_best_window_prefer_dark_clear_hours():
    times = planner.night_steps(36.1, -79.95, dt.date(2026, 1, 15))
    # clear only in the first half of the night
    p = np.where(np.arange(len(times)) < 60, 0.9, 0.1)
    frame = planner.timeline(36.1, -79.95, dt.date(2026, 1, 15), p, times)
    assert (frame["sun_altitude_deg"] < -0.833).all()
    windows = planner.best_windows(frame)
    assert windows
    best_start = pd.Timestamp(windows[0]["start"])
    assert best_start < times[60]
    # no score during twilight
    assert (frame.loc[frame["sun_altitude_deg"] > -12, "score"] == 0).all()


def test_polar_summer_has_no_night():
    times = planner.night_steps(78.2, 15.6, dt.date(2026, 6, 21))  # Svalbard
    frame = planner.timeline(78.2, 15.6, dt.date(2026, 6, 21), np.full(len(times), 0.9), times)
    assert frame.empty and planner.best_windows(frame) == []
