"""Sun and moon geometry with skyfield, offline.

The JPL ephemeris ``de421.bsp`` (1900-2050) ships inside ``skyfield-data``; time scales use
skyfield's built-in tables, so nothing is downloaded at run time.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from skyfield import almanac, nutationlib
from skyfield.api import Loader
from skyfield.constants import ASEC2RAD, T0, tau

#: the dates the bundled DE421 ephemeris covers, with a day's margin for horizons
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 2), dt.date(2049, 12, 30)


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


#: below this many instants the fixed-order sums run as one vectorised pass (Python loops
#: would dominate); above, as a loop skipping the zero multipliers. Same additions, same order:
#: the results are bit-identical either way (tested)
_SMALL_BATCH = 256


def _fixed_order_sum(weights: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``sum_k weights[k] * terms[k]`` over the first axis, accumulated term by term in index
    order with elementwise NumPy operations: every instant's value depends only on its own
    terms. A matrix product (``dot``, ``@``) goes through BLAS, whose kernel (chosen by the
    CPU, or ``OPENBLAS_CORETYPE``), thread count and blocking (the batch size) decide the
    order of the additions, so its last bits vary from machine to machine and batch to batch."""
    weights = np.asarray(weights, dtype=float)
    if terms[0].size < _SMALL_BATCH:
        products = weights.reshape(-1, *(1,) * (terms.ndim - 1)) * terms
        products[0] += 0.0  # the loop below starts from +0.0 too (-0.0 + 0.0 is +0.0)
        return np.ascontiguousarray(np.add.accumulate(products, axis=0)[-1])
    total = np.zeros(terms.shape[1:])
    for weight, term in zip(weights.tolist(), terms, strict=True):
        if weight:  # adding a zero product changes nothing
            total += weight * term
    return total


def _integer_combinations(multipliers: np.ndarray, arguments: np.ndarray) -> np.ndarray:
    """``multipliers @ arguments`` ((k, j) integers times (j, n) angles -> (k, n)), summed
    over j in index order without BLAS (see :func:`_fixed_order_sum`)."""
    if arguments[0].size < _SMALL_BATCH:
        total = np.zeros((multipliers.shape[0], *arguments.shape[1:]))
        for j, argument in enumerate(arguments):
            total += multipliers[:, j, None].astype(float) * argument
        return total
    total = np.empty((multipliers.shape[0], *arguments.shape[1:]))
    for k, row in enumerate(multipliers):
        total[k] = _fixed_order_sum(row, arguments)
    return total


def _nutation_radians(jd_tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IAU 2000A nutation (delta psi, delta epsilon; radians) at TT Julian dates: skyfield's
    own ``iau2000a_radians`` series, coefficients and argument order, with its matrix products
    replaced by fixed-order sums (agrees with skyfield to a few units in the last place)."""
    n = nutationlib
    t = (jd_tt - T0) / 36525.0
    # luni-solar terms
    arg = _integer_combinations(n.nals_t, n.fundamental_arguments(t, 5))
    sarg, carg = np.sin(arg), np.cos(arg)
    lon, obl = n.lunisolar_longitude_coefficients, n.lunisolar_obliquity_coefficients
    dpsi = (_fixed_order_sum(lon[:, 0], sarg) + _fixed_order_sum(lon[:, 1], sarg) * t
            + _fixed_order_sum(lon[:, 2], carg))
    deps = (_fixed_order_sum(obl[:, 0], carg) + _fixed_order_sum(obl[:, 1], carg) * t
            + _fixed_order_sum(obl[:, 2], sarg))
    # planetary terms
    a = n.anomaly_coefficient[:, None] * t + n.anomaly_constant[:, None]
    a[-1] *= t
    arg = _integer_combinations(n.napl_t, a)
    sarg, carg = np.sin(arg), np.cos(arg)
    lon, obl = n.nutation_coefficients_longitude, n.nutation_coefficients_obliquity
    dpsi = dpsi + _fixed_order_sum(lon[:, 0], sarg) + _fixed_order_sum(lon[:, 1], carg)
    deps = deps + _fixed_order_sum(obl[:, 0], sarg) + _fixed_order_sum(obl[:, 1], carg)
    # tenths of a micro-arcsecond -> radians
    return dpsi * (ASEC2RAD / 1e7), deps * (ASEC2RAD / 1e7)


#: the Delaunay arguments of the equation of the equinoxes' complementary terms (skyfield's
#: ``equation_of_the_equinoxes_complimentary_terms``): arcsecond polynomial in TT centuries,
#: then whole turns per century
_EQEQ_DELAUNAY = (
    (485868.249036, 715923.2178, 31.8792, 0.051635, -0.00024470, 1325.0),
    (1287104.793048, 1292581.0481, -0.5532, 0.000136, -0.00001149, 99.0),
    (335779.526232, 295262.8478, -12.7512, -0.001037, 0.00000417, 1342.0),
    (1072260.703692, 1105601.2090, -6.3706, 0.006593, -0.00003169, 1236.0),
    (450160.398036, -482890.5431, 7.4722, 0.007702, -0.00005939, -5.0),
)
#: and its planetary longitudes, Mercury..Neptune (radians, radians per century)
_EQEQ_PLANETS = ((4.402608842, 2608.7903141574), (3.176146697, 1021.3285546211),
                 (1.753470314, 628.3075849991), (6.203480913, 334.0612426700),
                 (0.599546497, 52.9690962641), (0.874016757, 21.3299104960),
                 (5.481293872, 7.4781598567), (5.311886287, 3.8133035638))


def _equation_of_equinoxes_terms(jd_tt: np.ndarray) -> np.ndarray:
    """The complementary terms of the equation of the equinoxes (radians), as skyfield's
    ``equation_of_the_equinoxes_complimentary_terms`` without its matrix products."""
    n = nutationlib
    t = (jd_tt - T0) / 36525.0
    fa = np.zeros((14, *np.shape(t)))
    for i, (c0, c1, c2, c3, c4, turns) in enumerate(_EQEQ_DELAUNAY):
        fa[i] = ((c0 + (c1 + (c2 + (c3 + c4 * t) * t) * t) * t) * ASEC2RAD
                 + (turns * t % 1.0) * tau)
    for i, (c0, c1) in enumerate(_EQEQ_PLANETS, start=5):
        fa[i] = c0 + c1 * t
    fa[13] = (0.024381750 + 0.00000538691 * t) * t
    fa %= tau
    a = _fixed_order_sum(n.ke1, fa)
    c_terms = (n.se1_0 * np.sin(a) + n.se1_1 * np.cos(a)) * t
    a = _integer_combinations(n.ke0_t, fa)
    c_terms = (c_terms + _fixed_order_sum(n.se0_t_0, np.sin(a))
               + _fixed_order_sum(n.se0_t_1, np.cos(a)))
    return c_terms * ASEC2RAD


def _deterministic(t):
    """``t`` with its nutation angles and apparent sidereal time (the only parts of
    skyfield's sun and moon places that use BLAS matrix products) computed by
    :func:`_nutation_radians` and :func:`_equation_of_equinoxes_terms`, so that the places,
    and the sun and moon elevations ``prepare`` stores, come out bit-identical whatever the
    BLAS kernel (``OPENBLAS_CORETYPE``) and thread count (tests/e2e/test_blas_independence.py).
    Both are cached attributes of ``t``, which skyfield's own almanac overrides the same way
    (``t._nutation_angles_radians = iau2000b_radians(t)``)."""
    tt = np.asarray(t.tt, dtype=float)
    d_psi, d_eps = (angle.reshape(tt.shape) for angle in _nutation_radians(tt.reshape(-1)))
    t._nutation_angles_radians = (d_psi, d_eps)
    terms = _equation_of_equinoxes_terms(tt.reshape(-1)).reshape(tt.shape)
    eq_eq = d_psi * np.cos(t._mean_obliquity_radians) + terms
    t.gast = (t.gmst + eq_eq / tau * 24.0) % 24.0
    return t


def epoch_seconds(times_utc: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Timezone-aware timestamps -> integer seconds since 1970-01-01 UTC."""
    index = pd.DatetimeIndex(times_utc)
    if index.tz is None:
        raise ValueError("times must be timezone-aware (UTC); got naive timestamps")
    return index.as_unit("s").asi8.astype(np.int64)


#: skyfield evaluates the sun's apparent geocentric place at fixed nodes of atomic time (TAI),
#: this many seconds apart; instants in between are interpolated (cubic, 4 nearest nodes)
SUN_NODE_SECONDS = 6 * 3600
#: node number -> (declination, Greenwich hour angle - pi - 2 pi * TAI day fraction), radians
_SUN_NODES: dict[int, tuple[float, float]] = {}
#: Unix second -> the three values of _sun_places, for the API's repeated few instants
_SUN_INSTANTS: dict[int, tuple[float, float, float]] = {}
_MEMO_MAX = 1024
_UNIX_EPOCH_JD = 2440587.5


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@lru_cache(maxsize=1)
def _leap_seconds() -> tuple[np.ndarray, np.ndarray]:
    timescale, _ = _sky()
    starts = np.round((timescale.leap_dates - _UNIX_EPOCH_JD) * 86400).astype(np.int64)
    return starts, timescale.leap_offsets.astype(np.int64)


def _tai_seconds(seconds: np.ndarray) -> np.ndarray:
    """Unix seconds (UTC, which pauses at leap seconds) -> continuous TAI seconds. Sky
    positions are smooth in TAI; in UTC the Earth's angle jumps by a second's turn at every
    leap second, which interpolation would smear over a day."""
    starts, offsets = _leap_seconds()
    i = np.searchsorted(starts, seconds, side="right") - 1
    # before the table's first leap second (1972-07-01) TAI - UTC was one second less
    return seconds + np.where(i >= 0, offsets[np.clip(i, 0, None)], offsets[0] - 1)


def _compute_sun_nodes(nodes: list[int]) -> None:
    timescale, eph = _sky()
    tai = np.asarray(nodes, dtype=np.int64) * SUN_NODE_SECONDS
    t = _deterministic(timescale.tai_jd(_UNIX_EPOCH_JD + tai // 86400,
                                        (tai % 86400) / 86400.0))
    ra, dec, _ = eph["earth"].at(t).observe(eph["sun"]).apparent().radec(epoch="date")
    hour_angle = np.deg2rad((np.atleast_1d(t.gast) - np.atleast_1d(ra.hours)) * 15)
    # what is left of the hour angle after the mean daily turn: the equation of time, a
    # smooth function that interpolates well (the hour angle itself wraps every day)
    residual = _wrap(hour_angle - np.pi - 2 * np.pi * (tai % 86400) / 86400.0)
    _SUN_NODES.update(zip(nodes, zip(np.atleast_1d(dec.radians).tolist(), residual.tolist(),
                                     strict=True), strict=True))


def _sun_places(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sin and cos of the sun's declination, and its Greenwich hour angle (radians), at
    each Unix second.

    skyfield (about 40 microseconds an instant) runs only at the nodes, each computed once
    and kept: the place is the same for every observer, so a year of hourly rows from any
    number of stations needs 1 461 nodes, and a service answering many stations reuses the
    same few. The value at an instant depends only on the fixed nodes around it, never on
    which other instants were asked for together. Interpolation error: below 1e-6 degrees
    (tested against skyfield at the instants themselves).
    """
    if len(seconds) <= _MEMO_MAX:  # a batch of requests' instants: most often asked before
        try:
            known = np.array([_SUN_INSTANTS[s] for s in seconds.tolist()],
                             dtype=float).reshape(-1, 3)  # no instants: an empty (0, 3)
            return known[:, 0], known[:, 1], known[:, 2]
        except KeyError:
            pass
    # rows repeat instants (stations share hours; horizons overlap): interpolate each once
    instants, repeated = np.unique(seconds, return_inverse=True)
    tai = _tai_seconds(instants)
    node = tai // SUN_NODE_SECONDS
    x = (tai - node * SUN_NODE_SECONDS) / SUN_NODE_SECONDS
    around = node[:, None] + np.arange(-1, 3)[None, :]
    needed, inverse = np.unique(around, return_inverse=True)
    missing = [n for n in needed.tolist() if n not in _SUN_NODES]
    if missing:
        _compute_sun_nodes(missing)
    values = np.array([_SUN_NODES[n] for n in needed.tolist()], dtype=float)
    values = values[inverse.reshape(around.shape)]  # (n, 4 nodes, 2 quantities)
    # Lagrange weights for nodes at -1, 0, 1, 2 (in node spacings), summed term by term so
    # that every instant's value is the same whatever else is computed with it
    weights = (-x * (x - 1) * (x - 2) / 6, (x + 1) * (x - 1) * (x - 2) / 2,
               -(x + 1) * x * (x - 2) / 2, (x + 1) * x * (x - 1) / 6)
    declination, residual = (
        weights[0] * values[:, 0, q] + weights[1] * values[:, 1, q]
        + weights[2] * values[:, 2, q] + weights[3] * values[:, 3, q] for q in (0, 1))
    hour_angle = residual + np.pi + 2 * np.pi * (tai % 86400) / 86400.0
    places = tuple(place[repeated.reshape(-1)] for place in
                   (np.sin(declination), np.cos(declination), hour_angle))
    if len(seconds) <= _MEMO_MAX:
        if len(_SUN_INSTANTS) > 100_000:
            _SUN_INSTANTS.clear()
        _SUN_INSTANTS.update(zip(seconds.tolist(), zip(*(p.tolist() for p in places),
                                                       strict=True), strict=True))
    return places


def sun_elevation(times_utc: pd.Series | pd.DatetimeIndex | np.ndarray,
                  latitude: float | np.ndarray, longitude: float | np.ndarray) -> np.ndarray:
    """Geometric sun elevation in degrees (no refraction), vectorised; latitude and longitude
    may be scalars or one value per time.

    The sun's apparent geocentric declination and Greenwich hour angle (DE421 via skyfield,
    interpolated between 6-hourly nodes, see :func:`_sun_places`) give the altitude for any
    place by the standard spherical-astronomy formula. The topocentric parallax this leaves
    out is under 0.0025 degrees (the tests compare with skyfield's topocentric altitude and
    with NREL's SPA).

    Parameters
    ----------
    times_utc : timezone-aware timestamps, or integer seconds since the Unix epoch (UTC)
    latitude, longitude : degrees (north, east positive)
    """
    if isinstance(times_utc, np.ndarray) and np.issubdtype(times_utc.dtype, np.integer):
        seconds = times_utc.astype(np.int64, copy=False)
    else:
        seconds = epoch_seconds(times_utc)
    sin_dec, cos_dec, greenwich_hour_angle = _sun_places(seconds)
    lat = np.deg2rad(np.asarray(latitude, dtype=float))
    hour_angle = greenwich_hour_angle + np.deg2rad(np.asarray(longitude, dtype=float))
    sin_alt = np.sin(lat) * sin_dec + np.cos(lat) * cos_dec * np.cos(hour_angle)
    return np.rad2deg(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))


#: Unix second -> the moon's apparent geocentric place (right ascension and declination of
#: date, radians; distance, km), Greenwich apparent sidereal time (radians) and illuminated
#: fraction: the same for every observer, so stations sharing hours compute them once
_MOON_INSTANTS: dict[int, tuple[float, float, float, float, float]] = {}
#: WGS84 ellipsoid
_EARTH_A_KM = 6378.137
_EARTH_E2 = 6.69437999014e-3


def _moon_places(seconds: np.ndarray) -> np.ndarray:
    """(n, 5) array of :data:`_MOON_INSTANTS` values at each Unix second; skyfield runs only
    for instants not asked for before, all in one call."""
    missing = sorted(set(seconds.tolist()) - _MOON_INSTANTS.keys())
    if missing:
        _, eph = _sky()
        t = _deterministic(_times(pd.to_datetime(np.asarray(missing, dtype=np.int64),
                                                 unit="s", utc=True)))
        ra, dec, distance = eph["earth"].at(t).observe(eph["moon"]).apparent().radec(
            epoch="date")
        gast = np.deg2rad(np.atleast_1d(t.gast) * 15.0)
        illumination = almanac.fraction_illuminated(eph, "moon", t)
        if len(_MOON_INSTANTS) > 200_000:
            _MOON_INSTANTS.clear()
        _MOON_INSTANTS.update(zip(missing, zip(
            *(np.atleast_1d(v).astype(float).tolist() for v in (
                ra.radians, dec.radians, distance.km, gast, illumination)), strict=True),
            strict=True))
    return np.array([_MOON_INSTANTS[s] for s in seconds.tolist()], dtype=float)


def moon_elevation(seconds: np.ndarray, latitude: float, longitude: float,
                   elevation_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Topocentric moon elevation (degrees, no refraction) and illuminated fraction at one
    place, from the moon's geocentric place (computed once per instant for all places) and
    the observer's WGS84 position rotated by the sidereal time: the moon's parallax (up to a
    degree) is exact, not approximated (tests compare with skyfield's topocentric altitude)."""
    ra, dec, distance, gast, illumination = _moon_places(np.asarray(seconds,
                                                                    dtype=np.int64)).T
    moon = distance[:, None] * np.column_stack(
        [np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    phi = np.deg2rad(latitude)
    theta = gast + np.deg2rad(longitude)
    h = elevation_m / 1000.0
    n = _EARTH_A_KM / np.sqrt(1 - _EARTH_E2 * np.sin(phi) ** 2)
    up = np.column_stack([np.cos(phi) * np.cos(theta), np.cos(phi) * np.sin(theta),
                          np.full_like(theta, np.sin(phi))])
    observer = np.column_stack([(n + h) * np.cos(phi) * np.cos(theta),
                                (n + h) * np.cos(phi) * np.sin(theta),
                                np.full_like(theta, (n * (1 - _EARTH_E2) + h) * np.sin(phi))])
    v = moon - observer
    sin_alt = np.einsum("ij,ij->i", v, up) / np.linalg.norm(v, axis=1)
    return np.rad2deg(np.arcsin(np.clip(sin_alt, -1, 1))), illumination


def sun_moon(
    times_utc: pd.Series | pd.DatetimeIndex,
    latitude: float,
    longitude: float,
    elevation_m: float = 0.0,
) -> pd.DataFrame:
    """Sun elevation, moon elevation and moon illumination at one place, vectorised.

    Parameters
    ----------
    times_utc : timezone-aware timestamps (whole seconds)
    latitude, longitude : degrees (north, east positive)
    elevation_m : metres above sea level (matters for the moon's parallax)

    Returns
    -------
    DataFrame with ``sun_elevation_deg`` (:func:`sun_elevation`), ``moon_elevation_deg``
    (topocentric, :func:`moon_elevation`) and ``moon_illumination`` (illuminated fraction
    of the disc, 0..1), one row per timestamp, in input order.
    """
    seconds = epoch_seconds(times_utc)
    moon_alt, illumination = moon_elevation(seconds, latitude, longitude, elevation_m)
    return pd.DataFrame(
        {
            "sun_elevation_deg": sun_elevation(seconds, latitude, longitude),
            "moon_elevation_deg": moon_alt,
            "moon_illumination": illumination,
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
