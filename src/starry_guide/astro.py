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


def sun_elevation(times_utc: pd.Series | pd.DatetimeIndex, latitude: float, longitude: float,
                  elevation_m: float = 0.0) -> np.ndarray:
    """Geometric sun elevation in degrees (no refraction), vectorised — all the features
    need, and a third of the work of :func:`sun_moon`."""
    _, eph = _sky()
    observer = eph["earth"] + wgs84.latlon(latitude, longitude, elevation_m=elevation_m)
    alt = observer.at(_times(times_utc)).observe(eph["sun"]).apparent().altaz()[0].degrees
    return np.atleast_1d(alt).astype(float)


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


def moon_phase_angle(times_utc: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Sun-moon-earth phase angle in degrees: 0 at full moon, 180 at new moon."""
    _, eph = _sky()
    return np.atleast_1d(almanac.phase_angle(eph, "moon", _times(times_utc)).degrees)


def airmass(zenith_deg: np.ndarray) -> np.ndarray:
    """Krisciunas & Schaefer (1991) eq. 3: X(Z) = (1 - 0.96 sin^2 Z)^-1/2."""
    z = np.deg2rad(np.asarray(zenith_deg, dtype=float))
    return 1.0 / np.sqrt(1.0 - 0.96 * np.sin(z) ** 2)


def _nanolamberts(v_mag: np.ndarray) -> np.ndarray:
    return 34.08 * np.exp(20.7233 - 0.92104 * np.asarray(v_mag, dtype=float))


def _v_mag(nanolamberts: np.ndarray) -> np.ndarray:
    return (20.7233 - np.log(np.asarray(nanolamberts, dtype=float) / 34.08)) / 0.92104


def sky_brightness_zenith(moon_elevation_deg: np.ndarray, phase_angle_deg: np.ndarray,
                          dark_sky_mag: float = 21.587, extinction: float = 0.172) -> np.ndarray:
    """Moonlit sky brightness at the zenith, V mag/arcsec^2 (Krisciunas & Schaefer 1991).

    Parameters
    ----------
    moon_elevation_deg : moon altitude; below the horizon the moon adds nothing
    phase_angle_deg : 0 = full moon, 180 = new moon
    dark_sky_mag : moonless zenith brightness — the light-pollution knob (21.6 is a
        pristine site, 18-19 a suburb, 16-17 a city centre)
    extinction : V-band extinction coefficient, mag/airmass (0.172 at Mauna Kea)

    Larger numbers mean a darker sky.
    """
    moon_alt = np.asarray(moon_elevation_deg, dtype=float)
    alpha = np.abs(np.asarray(phase_angle_deg, dtype=float))
    moon_zenith = 90.0 - moon_alt
    # the target is the zenith, so the moon-target separation is Z_moon; the model holds for
    # separations beyond ~10 degrees (closer is the moon's own glare)
    rho = np.clip(moon_zenith, 10.0, None)
    # eq. 20: the moon's illuminance outside the atmosphere
    illuminance = 10 ** (-0.4 * (3.84 + 0.026 * alpha + 4e-9 * alpha**4))
    # eq. 21: Rayleigh + Mie scattering function
    scattering = 10**5.36 * (1.06 + np.cos(np.deg2rad(rho)) ** 2) + 10 ** (6.15 - rho / 40.0)
    # eq. 15 with the target at the zenith (X = 1)
    moon = (scattering * illuminance * 10 ** (-0.4 * extinction * airmass(np.clip(moon_zenith,
                                                                                  0, 90)))
            * (1 - 10 ** (-0.4 * extinction)))
    moon = np.where(moon_alt > 0, moon, 0.0)
    return _v_mag(_nanolamberts(dark_sky_mag) + moon)
