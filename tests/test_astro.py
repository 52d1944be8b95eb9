import numpy as np
import pandas as pd
import pvlib
import pytest

from starry_guide.core import astro


def test_sun_elevation_agrees_with_pvlib_spa():
    # an independent implementation: NREL's SPA in pvlib
    times = pd.date_range("2001-03-01", periods=24 * 30, freq="h", tz="UTC")
    ours = astro.sun_moon(times, 36.1, -79.95, 273.0)["sun_elevation_deg"].to_numpy()
    spa = pvlib.solarposition.get_solarposition(times, 36.1, -79.95, altitude=273.0)
    # skyfield's altaz() without weather applies no refraction: compare geometric elevation
    reference = spa["elevation"].to_numpy()
    assert np.max(np.abs(ours - reference)) < 0.01


def test_moon_is_full_and_new_on_the_published_dates():
    # USNO: full moon 2001-01-09 20:24 UTC, new moon 2001-01-24 13:07 UTC
    times = pd.DatetimeIndex(["2001-01-09 20:24", "2001-01-24 13:07"], tz="UTC")
    illumination = astro.sun_moon(times, 0.0, 0.0)["moon_illumination"].to_numpy()
    assert illumination[0] > 0.99
    assert illumination[1] < 0.01


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        astro.sun_moon(pd.DatetimeIndex(["2001-01-01 00:00"]), 0.0, 0.0)


def test_assessed_stations_carry_sun_and_moon(observations):
    assert observations["sun_elevation_deg"].notna().all()
    assert observations["sun_elevation_deg"].between(-90, 90).all()
    # Miami (25.8 N) near noon in June has the sun close to overhead
    miami = observations[observations["station_id"] == "miami_fl"]
    assert miami["sun_elevation_deg"].max() > 80


@pytest.mark.parametrize(("latitude", "longitude"), [(36.1, -79.95), (-33.9, 18.4),
                                                     (64.8, -147.7), (0.0, 179.0)])
def test_sun_elevation_agrees_with_skyfield_topocentric(latitude, longitude):
    # the fast geocentric formula vs skyfield's full topocentric altitude, over a year
    from skyfield.api import wgs84

    times = pd.date_range("2023-01-01", periods=365 * 4, freq="6h", tz="UTC")
    ours = astro.sun_elevation(times, latitude, longitude)
    _, eph = astro._sky()
    observer = eph["earth"] + wgs84.latlon(latitude, longitude)
    topocentric = observer.at(astro._times(times)).observe(eph["sun"]).apparent().altaz()[0]
    assert np.max(np.abs(ours - topocentric.degrees)) < 0.003


def test_sun_elevation_is_the_same_cached_or_not_and_per_row():
    times = pd.date_range("2024-06-01", periods=48, freq="h", tz="UTC")
    first = astro.sun_elevation(times, 36.1, -79.95)
    astro._SUN_NODES.clear()
    # computed in another batch (a subset, then from the cache) gives the same numbers
    part = astro.sun_elevation(times[10:20], 36.1, -79.95)
    np.testing.assert_array_equal(part, first[10:20])
    np.testing.assert_array_equal(astro.sun_elevation(times, 36.1, -79.95), first)
    # one place per row == one call per place; epoch seconds == timestamps
    lat = np.where(np.arange(48) % 2 == 0, 36.1, -33.9)
    lon = np.where(np.arange(48) % 2 == 0, -79.95, 18.4)
    per_row = astro.sun_elevation(astro.epoch_seconds(times), lat, lon)
    np.testing.assert_array_equal(per_row[::2], first[::2])
    np.testing.assert_array_equal(per_row[1::2],
                                  astro.sun_elevation(times, -33.9, 18.4)[1::2])


def test_interpolated_sun_place_equals_skyfield_at_the_instant():
    # random instants over the ephemeris' range, and minutes around a leap second (UTC
    # pauses there; interpolating in UTC would be off by a second's turn, 0.004 degrees)
    rng = np.random.default_rng(7)
    start = pd.Timestamp("1950-01-01", tz="UTC").value // 10**9
    seconds = start + rng.integers(0, 99 * 365 * 86400, 2000)
    leap = pd.Timestamp("2017-01-01", tz="UTC").value // 10**9
    seconds = np.concatenate([seconds, leap + np.arange(-7200, 7200, 300)]).astype(np.int64)
    sin_dec, _, hour_angle = astro._sun_places(seconds)
    _, eph = astro._sky()
    t = astro._times(pd.to_datetime(seconds, unit="s", utc=True))
    ra, dec, _ = eph["earth"].at(t).observe(eph["sun"]).apparent().radec(epoch="date")
    exact_hour_angle = np.deg2rad((t.gast - ra.hours) * 15)
    assert np.rad2deg(np.max(np.abs(np.arcsin(sin_dec) - dec.radians))) < 1e-6
    assert np.rad2deg(np.max(np.abs(astro._wrap(hour_angle - exact_hour_angle)))) < 1e-6


def test_moon_elevation_matches_skyfield_topocentric_at_several_places():
    from skyfield import almanac
    from skyfield.api import wgs84

    times = pd.date_range("2001-03-01", periods=24 * 40, freq="h", tz="UTC")
    _, eph = astro._sky()
    t = astro._times(times)
    for lat, lon, elevation in ((39.74, -105.18, 1829.0), (64.8, -147.7, 130.0),
                                (-33.9, 151.2, 10.0), (0.0, 0.0, 0.0)):
        ours = astro.sun_moon(times, lat, lon, elevation)
        observer = eph["earth"] + wgs84.latlon(lat, lon, elevation_m=elevation)
        reference = observer.at(t).observe(eph["moon"]).apparent().altaz()[0].degrees
        assert np.abs(ours["moon_elevation_deg"].to_numpy() - reference).max() < 0.001
        np.testing.assert_allclose(ours["moon_illumination"],
                                   almanac.fraction_illuminated(eph, "moon", t), atol=1e-12)


def test_nutation_without_blas_agrees_with_skyfield_and_ignores_the_batch():
    # skyfield sums its nutation series with numpy.dot (BLAS: last bits vary with the kernel,
    # thread count and batch size); ours adds the same terms in a fixed order
    from skyfield.nutationlib import (
        equation_of_the_equinoxes_complimentary_terms,
        iau2000a_radians,
    )

    times = pd.date_range("1950-01-01", "2049-12-01", periods=600, tz="UTC")
    t = astro._times(times)
    d_psi, d_eps = astro._nutation_radians(t.tt)
    reference_psi, reference_eps = iau2000a_radians(t)
    np.testing.assert_allclose(d_psi, reference_psi, rtol=0, atol=1e-17)
    np.testing.assert_allclose(d_eps, reference_eps, rtol=0, atol=1e-17)
    terms = astro._equation_of_equinoxes_terms(t.tt)
    np.testing.assert_allclose(terms, equation_of_the_equinoxes_complimentary_terms(t.tt),
                               rtol=0, atol=1e-20)
    reference_gast = t.gast
    np.testing.assert_allclose(astro._deterministic(astro._times(times)).gast, reference_gast,
                               rtol=0, atol=1e-13)
    # bit-identical whichever batch an instant comes in (small batches take another path)
    assert len(times) >= astro._SMALL_BATCH
    for part in (slice(0, 1), slice(7, 8), slice(100, 131), slice(0, astro._SMALL_BATCH - 1),
                 slice(50, 50 + astro._SMALL_BATCH)):
        psi, eps = astro._nutation_radians(t.tt[part])
        np.testing.assert_array_equal(psi, d_psi[part])
        np.testing.assert_array_equal(eps, d_eps[part])
        np.testing.assert_array_equal(astro._equation_of_equinoxes_terms(t.tt[part]),
                                      terms[part])

