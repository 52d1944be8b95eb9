"""Sun and moon geometry with skyfield, offline.

The JPL ephemeris ``de421.bsp`` (1900-2050) ships inside ``skyfield-data``; time scales use
skyfield's built-in tables, so nothing is downloaded at run time.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from skyfield import almanac
from skyfield.api import Loader, wgs84


@lru_cache(maxsize=1)
def _sky():
    # skyfield-data warns that its finals2000A.all (Earth orientation) has expired. We never
    # load that file: the built-in timescale below carries its own delta-T and leap seconds,
    # which is more than accurate enough for altitudes at the 0.01 degree level.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The file .* has expired",
                                category=RuntimeWarning)
        from skyfield_data import get_skyfield_data_path

        load = Loader(get_skyfield_data_path(), verbose=False)
    timescale = load.timescale(builtin=True)
    ephemeris = load("de421.bsp")
    return timescale, ephemeris


def _times(times_utc: pd.Series | pd.DatetimeIndex):
    timescale, _ = _sky()
    index = pd.DatetimeIndex(times_utc)
    if index.tz is None:
        raise ValueError("times must be timezone-aware (UTC); got naive timestamps")
    index = index.tz_convert("UTC")
    seconds = index.second + index.microsecond / 1e6
    return timescale.utc(
        index.year.to_numpy(), index.month.to_numpy(), index.day.to_numpy(),
        index.hour.to_numpy(), index.minute.to_numpy(), np.asarray(seconds, dtype=float),
    )


def sun_moon(
    times_utc: pd.Series | pd.DatetimeIndex,
    latitude: float,
    longitude: float,
    elevation_m: float = 0.0,
) -> pd.DataFrame:
    """Sun elevation, moon elevation and moon illumination at one place, vectorised.

    Parameters
    ----------
    times_utc : timezone-aware timestamps
    latitude, longitude : degrees (north, east positive)
    elevation_m : metres above sea level

    Returns
    -------
    DataFrame with ``sun_elevation_deg``, ``moon_elevation_deg`` and ``moon_illumination``
    (illuminated fraction of the disc, 0..1), one row per timestamp, in input order.
    """
    _, eph = _sky()
    t = _times(times_utc)
    observer = eph["earth"] + wgs84.latlon(latitude, longitude, elevation_m=elevation_m)
    sun_alt = observer.at(t).observe(eph["sun"]).apparent().altaz()[0].degrees
    moon_alt = observer.at(t).observe(eph["moon"]).apparent().altaz()[0].degrees
    illumination = almanac.fraction_illuminated(eph, "moon", t)
    return pd.DataFrame(
        {
            "sun_elevation_deg": np.atleast_1d(sun_alt).astype(float),
            "moon_elevation_deg": np.atleast_1d(moon_alt).astype(float),
            "moon_illumination": np.atleast_1d(illumination).astype(float),
        }
    )
