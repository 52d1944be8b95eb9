"""The night planner: tonight's timeline at 15-minute steps — sun, twilight, moon, moonlit
sky brightness, P(clear) — a stargazing score, and the best windows to look up."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from starry_guide import astro

#: sun altitude (degrees) at the lower edge of each phase; below the last: full night
TWILIGHT = [(-0.833, "day"), (-6.0, "civil twilight"), (-12.0, "nautical twilight"),
            (-18.0, "astronomical twilight")]
#: a zenith brighter than this (V mag/arcsec^2) shows few stars: the darkness score is 0 there
BRIGHT_SKY_MAG = 18.0


def twilight_phase(sun_elevation_deg: np.ndarray) -> np.ndarray:
    """day / civil / nautical / astronomical twilight / night, per sun altitude."""
    sun = np.asarray(sun_elevation_deg, dtype=float)
    phase = np.full(sun.shape, "night", dtype=object)
    for edge, name in reversed(TWILIGHT):
        phase[sun >= edge] = name
    return phase


def night_steps(latitude: float, longitude: float, date: dt.date,
                step_minutes: int = 15) -> pd.DatetimeIndex:
    """15-minute UTC steps from local solar noon of ``date`` to the next noon."""
    noon = (pd.Timestamp(date, tz="UTC") + pd.Timedelta(hours=12)
            - pd.Timedelta(hours=longitude / 15.0)).round("min")
    return pd.date_range(noon, noon + pd.Timedelta(hours=24), freq=f"{step_minutes}min",
                         inclusive="left")


def climatology_p_clear(climatology: dict, latitude: float, longitude: float,
                        times_utc: pd.DatetimeIndex) -> tuple[np.ndarray, str]:
    """P(clear) by month and local solar hour from the nearest station's record."""
    def distance(entry: dict) -> float:
        lat1, lon1, lat2, lon2 = map(np.deg2rad, (latitude, longitude, entry["latitude"],
                                                  entry["longitude"]))
        a = (np.sin((lat2 - lat1) / 2) ** 2
             + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
        return float(2 * np.arcsin(np.sqrt(a)))

    station = min(sorted(climatology), key=lambda k: distance(climatology[k]))
    table = np.asarray(climatology[station]["p_clear_by_month_hour"])
    local = times_utc + pd.to_timedelta(longitude / 15.0 * 3600, unit="s")
    return table[local.month.to_numpy() - 1, local.hour.to_numpy()], station


def timeline(latitude: float, longitude: float, date: dt.date, p_clear: np.ndarray,
             times_utc: pd.DatetimeIndex, dark_sky_mag: float = 21.587,
             extinction: float = 0.172) -> pd.DataFrame:
    """Sun, moon, sky brightness and stargazing score for the dark part of the night.

    ``p_clear`` gives P(clear) at each of ``times_utc`` (from :func:`night_steps`). Returns
    the steps with the sun below the horizon; empty when it never sets (polar summer).
    """
    geometry = astro.sun_moon(times_utc, latitude, longitude)
    phase_angle = astro.moon_phase_angle(times_utc)
    brightness = astro.sky_brightness_zenith(geometry["moon_elevation_deg"], phase_angle,
                                             dark_sky_mag, extinction)
    sun = geometry["sun_elevation_deg"].to_numpy()
    # darkness: 0 until the sun is 12 degrees down, 1 from astronomical night; times how
    # much of the range from a bright to the site's own dark sky the moon leaves
    twilight_dark = np.clip((-sun - 12.0) / 6.0, 0.0, 1.0)
    sky_dark = np.clip((brightness - BRIGHT_SKY_MAG) / max(dark_sky_mag - BRIGHT_SKY_MAG, 0.1),
                       0.0, 1.0)
    frame = pd.DataFrame({
        "time": times_utc,
        "sun_altitude_deg": np.round(sun, 2),
        "twilight": twilight_phase(sun),
        "moon_altitude_deg": np.round(geometry["moon_elevation_deg"].to_numpy(), 2),
        "moon_illumination": np.round(geometry["moon_illumination"].to_numpy(), 3),
        "sky_brightness_mag_arcsec2": np.round(brightness, 2),
        "p_clear": np.round(np.asarray(p_clear, dtype=float), 4),
        "score": np.round(np.asarray(p_clear, dtype=float) * twilight_dark * sky_dark, 4),
    })
    return frame[frame["sun_altitude_deg"] < TWILIGHT[0][0]].reset_index(drop=True)


def best_windows(frame: pd.DataFrame, step_minutes: int = 15, top: int = 3,
                 minimum_score: float = 0.2) -> list[dict]:
    """Runs of consecutive steps scoring at least 80 % of the night's best (and at least
    ``minimum_score``), best first by mean score x duration."""
    if frame.empty or frame["score"].max() < minimum_score:
        return []
    good = frame["score"] >= max(minimum_score, 0.8 * frame["score"].max())
    run = (good != good.shift()).cumsum()
    windows = []
    for _, part in frame[good].groupby(run[good]):
        end = part["time"].iloc[-1] + pd.Timedelta(minutes=step_minutes)
        windows.append({"start": part["time"].iloc[0].isoformat(), "end": end.isoformat(),
                        "mean_score": round(float(part["score"].mean()), 4),
                        "minutes": len(part) * step_minutes})
    windows.sort(key=lambda w: (-w["mean_score"] * w["minutes"], w["start"]))
    return windows[:top]
