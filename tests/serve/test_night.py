"""The night plan an app needs: honest location handling, local time, the night's events,
nights without darkness, `date=tonight` (pure functions and the API in process)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from skyfield import almanac
from skyfield.api import wgs84

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import astro
from starry_guide.serve.app import create_app
from starry_guide.serve.planning import place, planner
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store


@pytest.fixture()
def client(bundle_dir, tmp_path):
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    with TestClient(create_app(service)) as c:
        yield c


def test_distance_is_great_circle():
    # Greensboro to Miami: about 1,000 km; a quarter of the equator: 10,008 km
    assert place.distance_km(36.1, -79.95, 25.8, -80.3) == pytest.approx(1146, abs=5)
    assert place.distance_km(0, 0, 0, 90) == pytest.approx(10_007.5, abs=1)


def test_time_zone_from_coordinates_offline():
    assert place.time_zone(52.52, 13.40) == "Europe/Berlin"
    assert place.time_zone(-33.87, 151.21) == "Australia/Sydney"
    assert place.time_zone(36.1, -79.95) == "America/New_York"
    assert place.time_zone(0.0, -30.0).startswith("Etc/GMT")  # the open Atlantic


def test_tonight_is_the_night_in_progress_or_coming():
    utc = dt.UTC
    # Greensboro (solar time = UTC - 5.3 h): 15:00 local -> today; 03:00 local -> yesterday
    assert place.tonight(-79.95, dt.datetime(2026, 11, 27, 20, 0, tzinfo=utc)) == \
        dt.date(2026, 11, 27)
    assert place.tonight(-79.95, dt.datetime(2026, 11, 28, 8, 0, tzinfo=utc)) == \
        dt.date(2026, 11, 27)
    assert place.tonight(151.2, dt.datetime(2026, 11, 27, 12, 0, tzinfo=utc)) == \
        dt.date(2026, 11, 27)  # 22:00 in Sydney


def test_far_places_get_a_labelled_latitude_season_climatology(bundle_dir):
    climatology = load_bundle(bundle_dir).climatology
    near = place.choose_climatology(climatology, 36.0, -80.0, 300)
    assert near.kind == "station" and near.station_id == "greensboro_nc"
    assert near.nearest_distance_km < 20
    berlin = place.choose_climatology(climatology, 52.52, 13.4, 300)
    assert berlin.kind == "latitude_season" and berlin.station_id is None
    assert berlin.nearest_distance_km > 6000
    assert "no station within 300 km" in berlin.description
    # Berlin (52.5 N) leans on Sand Point (55.3 N) far more than on Miami (25.8 N)
    assert berlin.weights["sand_point_ak"] > berlin.weights["greensboro_nc"] > \
        berlin.weights["miami_fl"]
    assert sum(berlin.weights.values()) == pytest.approx(1, abs=1e-3)
    # the southern hemisphere's January is the northern July: tables are mirrored
    sydney = place.choose_climatology(climatology, -33.87, 151.2, 300)
    greensboro = np.asarray(climatology["greensboro_nc"]["p_clear_by_month_hour"])
    only_greensboro = {"greensboro_nc": climatology["greensboro_nc"]}
    mirrored = place.choose_climatology(only_greensboro, -36.1, 151.2, 300)
    assert np.allclose(mirrored.table[0], greensboro[6])
    assert sydney.table.shape == (12, 24) and ((0 <= sydney.table) & (sydney.table <= 1)).all()


@pytest.mark.parametrize("latitude, longitude, date", [
    (36.1, -79.95, dt.date(2026, 11, 27)), (52.52, 13.4, dt.date(2026, 3, 3)),
    (-33.87, 151.2, dt.date(2026, 12, 21))])
def test_events_match_skyfield_almanac_within_a_minute(latitude, longitude, date):
    times = planner.night_steps(latitude, longitude, date)
    ours = planner.events(latitude, longitude, times)
    timescale, eph = astro._sky()
    start, end = times[0], times[0] + pd.Timedelta(hours=24)
    t0, t1 = timescale.from_datetime(start.to_pydatetime()), \
        timescale.from_datetime(end.to_pydatetime())
    observer = eph["earth"] + wgs84.latlon(latitude, longitude)

    def first(found) -> pd.Timestamp | None:
        t, _ = found
        return pd.Timestamp(t[0].utc_datetime()) if len(t) else None

    expected = {
        "sunset": first(almanac.find_settings(observer, eph["sun"], t0, t1)),
        "sunrise": first(almanac.find_risings(observer, eph["sun"], t0, t1)),
        "moonrise": first(almanac.find_risings(observer, eph["moon"], t0, t1)),
        "moonset": first(almanac.find_settings(observer, eph["moon"], t0, t1)),
    }
    f = almanac.dark_twilight_day(eph, wgs84.latlon(latitude, longitude))
    t, state = almanac.find_discrete(t0, t1, f)
    dusk = [ti for ti, s, before in zip(t, state, np.r_[4, state[:-1]], strict=True)
            if s == 0 and before == 1]
    dawn = [ti for ti, s, before in zip(t, state, np.r_[4, state[:-1]], strict=True)
            if s == 1 and before == 0]
    expected["astronomical_dusk"] = pd.Timestamp(dusk[0].utc_datetime()) if dusk else None
    expected["astronomical_dawn"] = pd.Timestamp(dawn[0].utc_datetime()) if dawn else None
    for name, value in expected.items():
        if value is None:
            assert ours[name] is None, name
        else:
            # the moon's rising altitude varies with its distance by a few arcminutes
            tolerance = 3 if name.startswith("moon") else 1
            assert abs((ours[name] - value).total_seconds()) < tolerance * 60, (name, value)


def test_night_plan_for_a_station_has_local_times_and_events(client):
    night = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                            "date": "2026-11-27"}).json()
    assert night["place"]["time_zone"] == "America/New_York"
    assert night["climatology"]["kind"] == "station"
    assert night["climatology"]["station_id"] == "greensboro_nc"
    assert night["p_clear_source"].startswith("climatology of station greensboro_nc")
    step = night["timeline"][0]
    assert pd.Timestamp(step["local_time"]) == pd.Timestamp(step["time"])
    assert step["local_time"].endswith("-05:00")  # EST in November
    summary = night["summary"]
    sunset = pd.Timestamp(summary["sunset"]["local"])
    assert sunset.hour == 17 and str(sunset.tz) == "UTC-05:00"
    assert summary["sunset"]["utc"] < summary["astronomical_dusk"]["utc"] < \
        summary["astronomical_dawn"]["utc"] < summary["sunrise"]["utc"]
    assert night["darkness"] == {"kind": "night", "reason": None}
    best = night["best_windows"][0]
    assert pd.Timestamp(best["start_local"]) == pd.Timestamp(best["start"])
    assert 0 < best["mean_p_clear"] <= 1 and best["moon"] in ("down", "up", "partly up")
    verdict = night["tonight"]
    assert verdict["headline"].startswith("Go: " if verdict["go"] else "No-go: ")
    local_start = pd.Timestamp(best["start_local"]).strftime("%H:%M")
    assert local_start in verdict["headline"] and "% clear" in verdict["headline"]


def test_berlin_is_not_silently_greensboro(client):
    night = client.get("/v1/night", params={"lat": 52.52, "lon": 13.4,
                                            "date": "2026-11-27"}).json()
    assert night["place"]["time_zone"] == "Europe/Berlin"
    assert night["climatology"]["kind"] == "latitude_season"
    assert night["climatology"]["station_id"] is None
    assert "no station within 300 km" in night["p_clear_source"]
    assert night["timeline"][0]["local_time"].endswith("+01:00")


def test_max_station_distance_is_configurable(bundle_dir, tmp_path):
    # 1,150 km from Greensboro: Miami's record is used only when the server allows it
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"),
                      max_station_km=2000)
    with TestClient(create_app(service)) as client:
        night = client.get("/v1/night", params={"lat": 30.3, "lon": -81.7}).json()
    assert night["climatology"]["kind"] == "station"
    assert night["climatology"]["max_distance_km"] == 2000


def test_tonight_is_resolved_to_a_date(client):
    night = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                            "date": "tonight"}).json()
    expected = place.tonight(-79.95, place.now())
    assert night["date"] in (str(expected), str(expected - dt.timedelta(days=1)))
    assert client.get("/v1/night", params={"lat": 36.1, "lon": -79.95}).json()["date"] == \
        night["date"]  # tonight is the default
    bad = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95, "date": "tomorrow"})
    assert bad.status_code == 422 and "date" in bad.text


def _pin_clock(monkeypatch, start: str | None, started_seconds_ago: float | None = None):
    """Set STARRY_CLOCK_START (None: unset) and the anchor (None: not started yet); both
    are restored after the test, whatever the code under test set."""
    import time

    monkeypatch.setenv(place.CLOCK_ANCHOR_ENV, "0")  # recorded, so restored afterwards
    if started_seconds_ago is None:
        monkeypatch.delenv(place.CLOCK_ANCHOR_ENV)
    else:
        monkeypatch.setenv(place.CLOCK_ANCHOR_ENV, repr(time.time() - started_seconds_ago))
    if start is None:
        monkeypatch.delenv(place.CLOCK_ENV, raising=False)
    else:
        monkeypatch.setenv(place.CLOCK_ENV, start)


def test_the_clock_is_real_time_unless_pinned(monkeypatch):
    _pin_clock(monkeypatch, None)
    real = dt.datetime.now(dt.UTC)
    assert abs(place.now() - real) < dt.timedelta(seconds=2)
    place.start_clock()  # nothing to start
    assert place.CLOCK_ANCHOR_ENV not in __import__("os").environ
    # pinned: the instant given, plus the real time elapsed since the clock started
    _pin_clock(monkeypatch, "2026-12-06T17:40:00-05:00", started_seconds_ago=90)
    pinned = place.now()
    assert pinned.tzinfo is not None
    assert abs(pinned - dt.datetime(2026, 12, 6, 22, 41, 30, tzinfo=dt.UTC)) < \
        dt.timedelta(seconds=2)
    assert place.now() >= pinned  # it advances


def test_the_first_reading_starts_the_clock_and_later_ones_keep_it(monkeypatch):
    import os
    import time

    _pin_clock(monkeypatch, "2026-12-06T22:40:00Z")
    assert abs(place.now() - dt.datetime(2026, 12, 6, 22, 40, tzinfo=dt.UTC)) < \
        dt.timedelta(seconds=2)
    started = os.environ[place.CLOCK_ANCHOR_ENV]  # inherited by worker processes
    assert abs(float(started) - time.time()) < 2
    place.start_clock()  # a worker, or a second app: the same clock
    assert os.environ[place.CLOCK_ANCHOR_ENV] == started


@pytest.mark.parametrize("value", ["2026-12-06 22:40", "2026-12-06T22:40:00", "tonight"])
def test_a_clock_start_without_a_utc_offset_is_refused(monkeypatch, bundle_dir, tmp_path,
                                                       value):
    _pin_clock(monkeypatch, value)
    with pytest.raises(ValueError, match="STARRY_CLOCK_START"):
        place.now()
    with pytest.raises(ValueError, match="UTC offset"):
        create_app(Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite")))


@pytest.mark.parametrize("start, night", [
    ("2026-12-06T22:40:00Z", "2026-12-06"),  # 17:40 in Greensboro: tonight
    ("2026-12-07T08:00:00Z", "2026-12-06"),  # 03:00: the night still running
    ("2026-12-07T18:00:00Z", "2026-12-07"),  # 13:00: the coming night
])
def test_tonight_follows_the_servers_clock(monkeypatch, bundle_dir, tmp_path, start, night):
    _pin_clock(monkeypatch, start)
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    with TestClient(create_app(service)) as client:  # the app starts the clock
        answer = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                                 "date": "tonight"}).json()
    assert answer["date"] == night


@pytest.mark.parametrize("lat, lon, date, kind, words", [
    (78.2, 15.6, "2026-06-21", "midnight sun", "does not set"),
    (60.2, 24.9, "2026-06-21", "no dark sky", "white night"),
    (52.5, 13.4, "2026-06-21", "astronomical twilight only", "astronomical twilight all"),
    (78.2, 15.6, "2026-12-21", "polar night", "does not rise"),
])
def test_nights_without_darkness_say_why(client, lat, lon, date, kind, words):
    night = client.get("/v1/night", params={"lat": lat, "lon": lon, "date": date}).json()
    assert night["darkness"]["kind"] == kind
    assert words in night["darkness"]["reason"]
    if kind in ("midnight sun", "no dark sky"):
        assert night["best_windows"] == [] and not night["tonight"]["go"]
        assert "no dark sky" in night["tonight"]["headline"]
    if kind == "midnight sun":
        assert night["timeline"] == [] and night["summary"]["sunset"] is None
