"""The night planner: tonight's timeline at 15-minute steps — sun, twilight, moon, moonlit
sky brightness, P(clear) — a stargazing score, and the best windows to look up."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from starry_guide.core import astro
from starry_guide.serve.planning import place

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
    """P(clear) by month and local solar hour from the nearest station's record, however
    far it is (see :func:`starry_guide.serve.planning.place.choose_climatology` for the distance
    check the API applies)."""
    station, _ = place._nearest(climatology, latitude, longitude)
    table = np.asarray(climatology[station]["p_clear_by_month_hour"])
    return place.p_clear_from_table(table, longitude, times_utc), station


def night_frame(latitude: float, longitude: float, p_clear: np.ndarray,
                times_utc: pd.DatetimeIndex, dark_sky_mag: float = 21.587,
                extinction: float = 0.172, elevation_m: float = 0.0) -> pd.DataFrame:
    """Sun, moon, sky brightness and stargazing score at every one of ``times_utc`` (the
    whole 24 hours of :func:`night_steps`, day included)."""
    geometry = astro.sun_moon(times_utc, latitude, longitude, elevation_m)
    phase_angle = astro.moon_phase_angle(times_utc)
    brightness = astro.sky_brightness_zenith(geometry["moon_elevation_deg"], phase_angle,
                                             dark_sky_mag, extinction)
    sun = geometry["sun_elevation_deg"].to_numpy()
    # darkness: 0 until the sun is 12 degrees down, 1 from astronomical night; times how
    # much of the range from a bright to the site's own dark sky the moon leaves
    twilight_dark = np.clip((-sun - 12.0) / 6.0, 0.0, 1.0)
    sky_dark = np.clip((brightness - BRIGHT_SKY_MAG) / max(dark_sky_mag - BRIGHT_SKY_MAG, 0.1),
                       0.0, 1.0)
    return pd.DataFrame({
        "time": times_utc,
        "sun_altitude_deg": np.round(sun, 2),
        "twilight": twilight_phase(sun),
        "moon_altitude_deg": np.round(geometry["moon_elevation_deg"].to_numpy(), 2),
        "moon_illumination": np.round(geometry["moon_illumination"].to_numpy(), 3),
        "sky_brightness_mag_arcsec2": np.round(brightness, 2),
        "p_clear": np.round(np.asarray(p_clear, dtype=float), 4),
        "score": np.round(np.asarray(p_clear, dtype=float) * twilight_dark * sky_dark, 4),
    })


def timeline(latitude: float, longitude: float, date: dt.date, p_clear: np.ndarray,
             times_utc: pd.DatetimeIndex, dark_sky_mag: float = 21.587,
             extinction: float = 0.172) -> pd.DataFrame:
    """Sun, moon, sky brightness and stargazing score for the dark part of the night.

    ``p_clear`` gives P(clear) at each of ``times_utc`` (from :func:`night_steps`). Returns
    the steps with the sun below the horizon; empty when it never sets (polar summer).
    """
    frame = night_frame(latitude, longitude, p_clear, times_utc, dark_sky_mag, extinction)
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


#: the altitude (degrees) of a body's centre at rising and setting: refraction at the horizon
#: (34') plus a semi-diameter (16'), the almanac convention for the sun and, within a
#: minute, the moon
HORIZON_DEG = -0.8333
#: astronomical dusk and dawn: the sun 18 degrees below the horizon
ASTRONOMICAL_DEG = -18.0
#: the go/no-go rule: a best window at least this long with at least this mean P(clear)
GO_MIN_MINUTES = 30
GO_MIN_P_CLEAR = 0.5


def counts(window: dict, min_p_clear: float = GO_MIN_P_CLEAR) -> bool:
    """Whether a best window is a *clear window* — for the events stream and the push
    nudges alike: its mean P(clear) is at least ``min_p_clear`` (the go/no-go rule's
    threshold by default) and the nowcast covers at least one of its steps
    (``nowcast_minutes`` > 0). Climatology alone is a seasonal prior, not a forecast that
    the sky will be clear."""
    return window["mean_p_clear"] >= min_p_clear and window["nowcast_minutes"] > 0


def crossings(seconds: np.ndarray, values: np.ndarray, level: float
              ) -> tuple[list[float], list[float]]:
    """Instants (Unix seconds, linear interpolation between samples) where ``values`` rise
    through ``level`` and where they fall through it, each in time order."""
    v = np.asarray(values, dtype=float) - level
    t = np.asarray(seconds, dtype=float)
    below = v < 0
    change = np.flatnonzero(below[:-1] != below[1:])
    instants = t[change] + v[change] / (v[change] - v[change + 1]) * (t[change + 1] - t[change])
    rising = [float(x) for x, i in zip(instants, change, strict=True) if below[i]]
    falling = [float(x) for x, i in zip(instants, change, strict=True) if not below[i]]
    return rising, falling


def _instant(seconds: float | None) -> pd.Timestamp | None:
    return None if seconds is None else pd.Timestamp(round(seconds), unit="s", tz="UTC")


def events(latitude: float, longitude: float, times_utc: pd.DatetimeIndex,
           elevation_m: float = 0.0, moon_altitude_deg: np.ndarray | None = None) -> dict:
    """Sunset, sunrise, astronomical dusk and dawn, moonrise and moonset within the 24 hours
    of ``times_utc`` (noon to noon), as UTC timestamps or None when they do not happen; and
    the sun's lowest altitude.

    The sun comes from :func:`starry_guide.core.astro.sun_elevation` on a 1-minute grid, the
    moon from skyfield's topocentric altitude every 15 minutes (interpolated linearly
    between, well within a minute near the horizon: tested against skyfield's almanac).
    ``moon_altitude_deg``, when given, is the moon's altitude at each of ``times_utc`` and
    at the closing noon (one more value), already computed by the caller.
    """
    start = int(times_utc[0].timestamp())
    minutes = start + 60 * np.arange(24 * 60 + 1, dtype=np.int64)
    sun = astro.sun_elevation(minutes, latitude, longitude)
    sunrise, sunset = crossings(minutes, sun, HORIZON_DEG)
    dawn, dusk = crossings(minutes, sun, ASTRONOMICAL_DEG)
    steps = times_utc.append(pd.DatetimeIndex([times_utc[0] + pd.Timedelta(hours=24)]))
    if moon_altitude_deg is None:
        moon_altitude_deg = astro.sun_moon(steps, latitude, longitude,
                                           elevation_m)["moon_elevation_deg"].to_numpy()
    moonrise, moonset = crossings(astro.epoch_seconds(steps), moon_altitude_deg, HORIZON_DEG)
    first = (lambda xs: xs[0] if xs else None)  # noqa: E731
    last = (lambda xs: xs[-1] if xs else None)  # noqa: E731
    return {
        "sunset": _instant(first(sunset)), "sunrise": _instant(last(sunrise)),
        "astronomical_dusk": _instant(first(dusk)), "astronomical_dawn": _instant(last(dawn)),
        "moonrise": _instant(first(moonrise)), "moonset": _instant(first(moonset)),
        "lowest_sun_altitude_deg": round(float(sun.min()), 2),
        "highest_sun_altitude_deg": round(float(sun.max()), 2),
    }


def darkness(latitude: float, date: dt.date, lowest_sun_deg: float,
             highest_sun_deg: float) -> dict:
    """How dark the night gets, as a kind and a plain sentence saying why.

    kinds: ``night`` (the sun reaches 18° below the horizon), ``astronomical twilight only``,
    ``no dark sky`` (the sun sets but stays above -12°: no stargazing score at all),
    ``midnight sun`` (the sun does not set), ``polar night`` (the sun does not rise).
    """
    where = f"{abs(latitude):.1f}°{'N' if latitude >= 0 else 'S'}"
    low = f"{lowest_sun_deg:.1f}°"
    if highest_sun_deg < HORIZON_DEG:
        return {"kind": "polar night", "reason": f"The sun does not rise at {where} on "
                f"{date} (polar night): the whole 24 hours are dark, its highest altitude is "
                f"{highest_sun_deg:.1f}°."}
    if lowest_sun_deg >= HORIZON_DEG:
        return {"kind": "midnight sun", "reason": f"The sun does not set at {where} on the "
                f"night of {date} (midnight sun): its lowest altitude is {low}. No stars "
                "tonight, so there is no timeline and no window."}
    if lowest_sun_deg >= -12.0:
        return {"kind": "no dark sky", "reason": f"The sun sets at {where} on {date} but "
                f"gets no lower than {low}: the sky stays in civil or nautical twilight "
                "(a white night), too bright for stargazing, so no window scores."}
    if lowest_sun_deg >= ASTRONOMICAL_DEG:
        return {"kind": "astronomical twilight only", "reason": f"The sun gets no lower "
                f"than {low} at {where} on {date}: astronomical twilight all night. Bright "
                "stars and planets show; faint objects stay washed out, so scores are "
                "reduced."}
    return {"kind": "night", "reason": None}


def describe_windows(frame: pd.DataFrame, windows: list[dict],
                     step_minutes: int = 15) -> list[dict]:
    """Each window with its mean P(clear), whether the moon is up during it, its mean
    illuminated fraction while up, and how many of its minutes the nowcast covers (the
    frame's boolean ``from_nowcast`` column; 0 without one: climatology alone)."""
    described = []
    times = pd.DatetimeIndex(frame["time"])
    for w in windows:
        inside = frame[(times >= pd.Timestamp(w["start"])) & (times < pd.Timestamp(w["end"]))]
        up = inside["moon_altitude_deg"] > 0
        moon = "down" if not up.any() else "up" if up.all() else "partly up"
        covered = int(inside["from_nowcast"].sum()) if "from_nowcast" in inside else 0
        described.append({**w, "mean_p_clear": round(float(inside["p_clear"].mean()), 4),
                          "moon": moon,
                          "moon_illumination": round(float(inside.loc[up, "moon_illumination"]
                                                           .mean()), 3) if up.any() else 0.0,
                          "nowcast_minutes": covered * step_minutes})
    return described


def verdict(windows: list[dict], dark: dict, frame: pd.DataFrame, zone_name: str) -> dict:
    """One go/no-go for the night and the sentence an app shows: "Go: 22:40–01:10, 78 %
    clear, moon down". Go when the best window lasts at least :data:`GO_MIN_MINUTES` with a
    mean P(clear) of at least :data:`GO_MIN_P_CLEAR`."""
    if dark["kind"] in ("midnight sun", "no dark sky"):
        return {"go": False, "headline": f"No-go: no dark sky tonight ({dark['kind']})."}
    if not windows:
        dark_steps = frame[frame["sun_altitude_deg"] < -12.0]
        best = float(dark_steps["p_clear"].max()) if len(dark_steps) else 0.0
        return {"go": False, "headline": f"No-go: no good window tonight (at best "
                f"{percent(best)} clear)."}
    best = windows[0]

    def hhmm(instant: str) -> str:
        return pd.Timestamp(instant).tz_convert(place.zone(zone_name)).strftime("%H:%M")

    lit = percent(best["moon_illumination"])
    moon = {"down": "moon down", "up": f"moon up ({lit} lit)",
            "partly up": f"moon partly up ({lit} lit)"}[best["moon"]]
    text = (f"{hhmm(best['start'])}–{hhmm(best['end'])}, {percent(best['mean_p_clear'])} "
            f"clear, {moon}")
    go = best["minutes"] >= GO_MIN_MINUTES and best["mean_p_clear"] >= GO_MIN_P_CLEAR
    return {"go": go, "headline": f"{'Go' if go else 'No-go'}: {text}" + (
        "" if go else f" (needs {percent(GO_MIN_P_CLEAR)} clear for {GO_MIN_MINUTES} min)")}


def percent(fraction: float) -> str:
    """0.78 -> "78 %" (the SI style, with a space)."""
    return f"{round(100 * fraction):d} %"
