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


def epoch_seconds(times_utc: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Timezone-aware timestamps -> integer seconds since 1970-01-01 UTC."""
    index = pd.DatetimeIndex(times_utc)
    if index.tz is None:
        raise ValueError("times must be timezone-aware (UTC); got naive timestamps")
    return index.as_unit("s").asi8.astype(np.int64)


#: the sun's apparent geocentric place per instant (epoch second) ->
#: (sin declination, cos declination, Greenwich apparent sidereal time - right ascension)
_SUN_PLACES: dict[int, tuple[float, float, float]] = {}
_SUN_PLACES_LIMIT = 400_000


def _sun_places(seconds: np.ndarray) -> np.ndarray:
    """(n, 3) array of the sun's geocentric place at each epoch second, from skyfield.

    The place is the same for every observer, so it is computed once per instant and kept:
    a service answering many stations within the hour, or a year of hourly rows from many
    stations, pays skyfield (about 40 microseconds an instant) once per distinct instant.
    """
    places = _SUN_PLACES
    if len(seconds) <= 64:  # a request's few instants: usually all known already
        try:
            return np.array([places[s] for s in seconds.tolist()], dtype=float).reshape(-1, 3)
        except KeyError:
            pass
    unique, inverse = np.unique(seconds, return_inverse=True)
    missing = [s for s in unique.tolist() if s not in places]
    if missing:
        _, eph = _sky()
        t = _times(pd.to_datetime(np.asarray(missing, dtype=np.int64), unit="s", utc=True))
        ra, dec, _ = eph["earth"].at(t).observe(eph["sun"]).apparent().radec(epoch="date")
        hour_angle_offset = np.deg2rad((np.atleast_1d(t.gast) - np.atleast_1d(ra.hours)) * 15)
        dec_rad = np.atleast_1d(dec.radians)
        if len(places) + len(missing) > _SUN_PLACES_LIMIT:
            places.clear()
        places.update(zip(missing, zip(np.sin(dec_rad).tolist(), np.cos(dec_rad).tolist(),
                                       hour_angle_offset.tolist(), strict=True), strict=True))
    table = np.array([places[s] for s in unique.tolist()], dtype=float).reshape(-1, 3)
    return table[inverse.reshape(-1)]


def sun_elevation(times_utc: pd.Series | pd.DatetimeIndex | np.ndarray,
                  latitude: float | np.ndarray, longitude: float | np.ndarray) -> np.ndarray:
    """Geometric sun elevation in degrees (no refraction), vectorised; latitude and longitude
    may be scalars or one value per time.

    The sun's apparent geocentric right ascension and declination (DE421, via skyfield) and
    the sidereal time give the altitude for any place by the standard spherical-astronomy
    formula. The topocentric parallax this leaves out is under 0.0025 degrees (the tests
    compare with skyfield's topocentric altitude and with NREL's SPA).

    Parameters
    ----------
    times_utc : timezone-aware timestamps, or integer seconds since the Unix epoch (UTC)
    latitude, longitude : degrees (north, east positive)
    """
    if isinstance(times_utc, np.ndarray) and np.issubdtype(times_utc.dtype, np.integer):
        seconds = times_utc.astype(np.int64, copy=False)
    else:
        seconds = epoch_seconds(times_utc)
    places = _sun_places(seconds)
    lat = np.deg2rad(np.asarray(latitude, dtype=float))
    hour_angle = places[:, 2] + np.deg2rad(np.asarray(longitude, dtype=float))
    sin_alt = np.sin(lat) * places[:, 0] + np.cos(lat) * places[:, 1] * np.cos(hour_angle)
    return np.rad2deg(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))


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
    elevation_m : metres above sea level (matters for the moon's parallax)

    Returns
    -------
    DataFrame with ``sun_elevation_deg`` (:func:`sun_elevation`), ``moon_elevation_deg``
    (topocentric: the moon's parallax reaches a degree) and ``moon_illumination``
    (illuminated fraction of the disc, 0..1), one row per timestamp, in input order.
    """
    _, eph = _sky()
    t = _times(times_utc)
    observer = eph["earth"] + wgs84.latlon(latitude, longitude, elevation_m=elevation_m)
    moon_alt = observer.at(t).observe(eph["moon"]).apparent().altaz()[0].degrees
    illumination = almanac.fraction_illuminated(eph, "moon", t)
    return pd.DataFrame(
        {
            "sun_elevation_deg": sun_elevation(times_utc, latitude, longitude),
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
