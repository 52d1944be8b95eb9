"""Nowcast answers say which optional inputs they lacked and which input profile the hours
sent match: POST /v1/nowcast, a station's nowcast from the feed, and the night plan (the real
app, bundle and SQLite store in process)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import profiles
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import request_body

TOKEN = "feeder-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STARRY_FEED_TOKEN", TOKEN)
    monkeypatch.delenv("STARRY_FEED_TOKEN_FILE", raising=False)
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    with TestClient(create_app(service)) as c:
        yield c
    service.store.close()


def metar_like(body: dict) -> dict:
    """The request as an airport METAR feed would carry it (core.profiles.METAR_LIKE)."""
    for hour in body["observations"]:
        for name in profiles.METAR_LIKE.absent:
            hour.pop(name, None)
        for name in profiles.COVER_INPUTS:
            hour[name] = float(profiles.quantise_cover([hour[name]])[0])
        hour["visibility_km"] = min(hour["visibility_km"], profiles.METAR_VISIBILITY_CAP_KM)
        if hour["ceiling_m"] > profiles.METAR_CEILING_SEEN_TO_M:
            hour["ceiling_m"] = None
    return body


def test_a_full_request_lacks_nothing(client, observations):
    answer = client.post("/v1/nowcast", json=request_body(observations)).json()
    assert answer["missing_inputs"] == [] and answer["input_profile"] == "full"


def test_a_request_without_precipitable_water_says_so(client, observations):
    body = request_body(observations)
    for hour in body["observations"]:
        del hour["precipitable_water_cm"]
    answer = client.post("/v1/nowcast", json=body).json()
    assert answer["missing_inputs"] == ["precipitable_water_cm"]
    assert answer["input_profile"] == "no_precipitable_water"
    assert all(0 <= f["p_clear"] <= 1 for f in answer["forecasts"])


def test_a_metar_shaped_request_is_recognised(client, observations):
    # Greensboro in November, hours with broken and scattered cloud: categories show
    body = metar_like(request_body(observations, "greensboro_nc", start=7600, hours=12))
    answer = client.post("/v1/nowcast", json=body).json()
    assert "precipitable_water_cm" in answer["missing_inputs"]
    assert answer["input_profile"] == "metar_like", body["observations"][-1]


def test_cover_only_and_the_night_plan_carry_the_coverage(client, observations):
    body = request_body(observations)
    for hour in body["observations"]:
        for name in profiles.COVER_ONLY.absent:
            hour[name] = None
    plan = client.post("/v1/night", json={"station": body["station"], "date": "2001-11-27",
                                          "observations": body["observations"]}).json()
    assert plan["input_profile"] == "cover_only"
    assert plan["missing_inputs"] == list(profiles.COVER_ONLY.absent)
    climatology = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                                  "date": "2001-11-27"}).json()
    assert climatology["missing_inputs"] is None and climatology["input_profile"] is None


def test_a_station_nowcast_from_the_feed_carries_the_coverage(client, observations):
    register = client.put("/v1/stations/kgso", headers=AUTH,
                          json={"latitude": 36.1, "longitude": -79.95, "elevation_m": 273})
    assert register.status_code in (200, 201), register.text
    hours = request_body(observations, hours=10)["observations"]
    for hour in hours:
        hour["precipitable_water_cm"] = None
    sent = client.post("/v1/stations/kgso/observations", headers=AUTH,
                       json={"observations": hours})
    assert sent.status_code == 200, sent.text
    for _ in range(2):  # made, then the stored one: the same coverage
        answer = client.get("/v1/stations/kgso/nowcast").json()
        assert answer["missing_inputs"] == ["precipitable_water_cm"]
        assert answer["input_profile"] == "no_precipitable_water"
