"""Where and when a night plan is for: the place's IANA time zone (offline), the station
whose climatology stands in for it, how far away that station is, an honest fallback when no
station is near enough, and the server's clock that decides which night is "tonight".

Pure functions over the bundle's ``climatology.json`` (see
:func:`starry_guide.artifacts.bundle.climatology`: P(clear) by station, month and local solar
hour over night hours).

The clock (:func:`now`) is the real time, unless ``STARRY_CLOCK_START`` is set — **a test
and demo setting**, never for production: an ISO 8601 instant with a UTC offset (e.g.
``2026-12-06T22:40:00Z``) at which the server's clock starts when ``starry serve`` starts
(or :func:`starry_guide.serve.app.create_app` builds an app), advancing in real time from
there. Every place the service resolves "tonight" or "now" for
a plan reads this one clock (``GET /v1/night?date=tonight``, a station's night plan, the
events stream), so a test can pin the night it plans and set a browser's clock to match.
All worker processes share one clock (the instant it started is handed to them in
``STARRY_CLOCK_ANCHOR``, real Unix seconds; a worker replaced on SIGHUP keeps it). The
store's own stamps (``received_at``, ``created_at``: when a row arrived, by which the purge
ages rows) stay on the real clock.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

#: mean Earth radius (km) for great-circle distances
EARTH_RADIUS_KM = 6371.0088
#: beyond this distance a station's climatology no longer describes a place (the default of
#: ``starry serve --max-station-km``); synoptic weather decorrelates over a few hundred km
DEFAULT_MAX_STATION_KM = 300.0
#: width (degrees of latitude) of the kernel that weights stations in the fallback
LATITUDE_KERNEL_DEG = 15.0
#: test/demo setting: the instant (ISO 8601 with a UTC offset) the server's clock starts at
CLOCK_ENV = "STARRY_CLOCK_START"
#: the real Unix time at which that clock stood at its start: set by the first process that
#: starts the clock, inherited by the worker processes it spawns
CLOCK_ANCHOR_ENV = "STARRY_CLOCK_ANCHOR"


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in km between two points given in degrees."""
    p1, l1, p2, l2 = map(np.deg2rad, (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return float(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(min(1.0, a))))


@lru_cache(maxsize=1)
def _finder():
    from timezonefinder import TimezoneFinder

    return TimezoneFinder()


@lru_cache(maxsize=4096)
def time_zone(latitude: float, longitude: float) -> str:
    """The IANA time zone at a place, from timezonefinder's bundled boundaries (offline).

    Over the open sea, where no country's zone applies, it is the nautical zone
    ``Etc/GMT±N`` that timezonefinder returns; ``UTC`` if it finds none at all.
    """
    name = _finder().timezone_at(lng=float(longitude), lat=float(latitude))
    return name or "UTC"


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_iso(instant: dt.datetime | pd.Timestamp, zone_name: str) -> str:
    """An instant as ISO 8601 local time with its UTC offset, e.g. ``2026-11-27T22:40:00+01:00``."""
    return pd.Timestamp(instant).tz_convert(zone(zone_name)).isoformat()


@dataclass(frozen=True)
class ClimateChoice:
    """The climatology that gives P(clear) where no recent observations are available."""

    kind: str  #: "station" or "latitude_season"
    station_id: str | None  #: the station used (kind "station"), else None
    nearest_station_id: str
    nearest_distance_km: float
    max_distance_km: float
    weights: dict[str, float]  #: station -> weight in the table (1.0 for kind "station")
    table: np.ndarray  #: P(clear), 12 months x 24 local solar hours (the place's seasons)
    description: str


def _nearest(climatology: dict, latitude: float, longitude: float) -> tuple[str, float]:
    distances = {k: distance_km(latitude, longitude, v["latitude"], v["longitude"])
                 for k, v in sorted(climatology.items())}
    station = min(distances, key=lambda k: (distances[k], k))
    return station, distances[station]


def _mirrored(table: np.ndarray, from_north: bool, to_north: bool) -> np.ndarray:
    """A month x hour table with its months shifted by six when the hemispheres differ, so
    that January in the north lines up with July in the south (same season)."""
    return table if from_north == to_north else np.roll(table, 6, axis=0)


def choose_climatology(climatology: dict, latitude: float, longitude: float,
                       max_distance_km: float = DEFAULT_MAX_STATION_KM) -> ClimateChoice:
    """The nearest station's climatology if it is within ``max_distance_km``; otherwise a
    **latitude/season climatology**: every bundled station's table, months mirrored for the
    other hemisphere, averaged with weights exp(-½ (Δ|latitude| / 15°)²) — stations at a
    similar distance from the equator count most. It is a rough prior (the bundled stations
    are few), and it is labelled as such.
    """
    nearest, km = _nearest(climatology, latitude, longitude)
    if km <= max_distance_km:
        return ClimateChoice(
            "station", nearest, nearest, km, max_distance_km, {nearest: 1.0},
            np.asarray(climatology[nearest]["p_clear_by_month_hour"], dtype=float),
            f"climatology of station {nearest}, {km:,.0f} km away")
    north = latitude >= 0
    weights, tables = {}, []
    for station, entry in sorted(climatology.items()):
        w = float(np.exp(-0.5 * ((abs(latitude) - abs(entry["latitude"]))
                                 / LATITUDE_KERNEL_DEG) ** 2))
        weights[station] = w
        tables.append(w * _mirrored(np.asarray(entry["p_clear_by_month_hour"], dtype=float),
                                    entry["latitude"] >= 0, north))
    total = sum(weights.values())
    if total < 1e-6:  # far from every station's latitude: plain average
        weights = dict.fromkeys(weights, 1.0)
        tables = [_mirrored(np.asarray(e["p_clear_by_month_hour"], dtype=float),
                            e["latitude"] >= 0, north) for _, e in sorted(climatology.items())]
        total = float(len(tables))
    weights = {k: round(v / total, 4) for k, v in weights.items()}
    listed = ", ".join(f"{k} ({climatology[k]['latitude']:.1f}°, weight {w:.2f})"
                       for k, w in weights.items())
    return ClimateChoice(
        "latitude_season", None, nearest, km, max_distance_km, weights,
        np.sum(tables, axis=0) / total,
        f"no station within {max_distance_km:,.0f} km (the nearest, {nearest}, is {km:,.0f} km "
        f"away): latitude/season climatology — P(clear) by season and local solar hour pooled "
        f"from the bundled stations, weighted by nearness in latitude, seasons mirrored across "
        f"the equator: {listed}. A rough prior, not local weather.")


def p_clear_from_table(table: np.ndarray, longitude: float,
                       times_utc: pd.DatetimeIndex) -> np.ndarray:
    """Look up P(clear) in a month x local-solar-hour table at each UTC time."""
    local = times_utc + pd.to_timedelta(longitude / 15.0 * 3600, unit="s")
    return np.asarray(table)[local.month.to_numpy() - 1, local.hour.to_numpy()]


def tonight(longitude: float, now_utc: dt.datetime) -> dt.date:
    """The date of the night in progress or coming: the date D whose local solar noon
    starts the 24 hours (noon to noon, as :func:`starry_guide.serve.planning.planner.night_steps`)
    that contain ``now_utc``. At 03:00 it is yesterday's date (the night still running), at
    15:00 today's."""
    # datetime arithmetic, not pandas': every cached read asks (ten times cheaper)
    local_solar = now_utc.astimezone(dt.UTC) + dt.timedelta(hours=longitude / 15.0)
    return (local_solar - dt.timedelta(hours=12)).date()


def clock_start() -> dt.datetime | None:
    """The instant ``STARRY_CLOCK_START`` names (UTC), or None when it is not set.

    Raises
    ------
    ValueError
        not an ISO 8601 instant with a UTC offset (a local time would be ambiguous).
    """
    raw = (os.environ.get(CLOCK_ENV) or "").strip()
    if not raw:
        return None
    try:
        start = dt.datetime.fromisoformat(raw)
    except ValueError:
        start = None
    if start is None or start.tzinfo is None:
        raise ValueError(f"{CLOCK_ENV}={raw!r} is not an ISO 8601 instant with a UTC offset "
                         "(e.g. 2026-12-06T22:40:00Z)")
    return start.astimezone(dt.UTC)


def start_clock() -> None:
    """Check ``STARRY_CLOCK_START`` and, when it is set, start the clock now unless a parent
    process already did (``STARRY_CLOCK_ANCHOR``): ``starry serve`` calls this before it
    starts worker processes, :func:`starry_guide.serve.app.create_app` for an app built in
    this process.

    Raises
    ------
    ValueError
        from :func:`clock_start`.
    """
    if clock_start() is not None:
        os.environ.setdefault(CLOCK_ANCHOR_ENV, repr(time.time()))
        _anchor()


def _anchor() -> float:
    raw = os.environ[CLOCK_ANCHOR_ENV]
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{CLOCK_ANCHOR_ENV}={raw!r} is not a Unix time in seconds (unset "
                         "it: the clock starts by itself)") from None


def now() -> dt.datetime:
    """The server's clock (UTC): the real time, or — when ``STARRY_CLOCK_START`` is set —
    that instant plus the real time elapsed since the clock started (see the module
    docstring). The one clock behind "tonight" and "now" in the service's plans."""
    start = clock_start()
    if start is None:
        return dt.datetime.now(dt.UTC)
    start_clock()  # the first reading starts it, if nothing did before
    elapsed = time.time() - _anchor()
    return start + dt.timedelta(seconds=elapsed)
