"""The API in process (FastAPI's TestClient over the real app, bundle and SQLite store)."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import request_body


@pytest.fixture()
def client(bundle_dir, tmp_path):
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    with TestClient(create_app(service)) as c:
        c.service = service
        yield c


def test_nowcast_returns_every_horizon_and_logs_it(client, observations, settings):
    body = request_body(observations)
    response = client.post("/v1/nowcast", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [f["horizon_h"] for f in result["forecasts"]] == list(settings.label.horizons)
    assert all(0 <= f["p_clear"] <= 1 for f in result["forecasts"])
    assert result["model_version"] == "7"
    last = pd.Timestamp(body["observations"][-1]["time"])
    assert pd.Timestamp(result["issued_for"]) == last
    assert pd.Timestamp(result["forecasts"][0]["target_time"]) == last + pd.Timedelta(hours=1)
    assert client.service.store.count("prediction_horizons") == len(settings.label.horizons)


def test_nowcast_matches_the_training_features(client, observations, rows, bundle_dir):
    # the API builds features with the same function as training: same rows, same P(clear)
    body = request_body(observations, "miami_fl", start=2000, hours=30)
    served = client.post("/v1/nowcast", json=body).json()["forecasts"]
    last = pd.Timestamp(body["observations"][-1]["time"])
    trained = rows[(rows["station_id"] == "miami_fl") & (rows["time"] == last)]
    expected = load_bundle(bundle_dir).predict(trained)
    by_h = {f["horizon_h"]: f["p_clear"] for f in served}
    for h, p in zip(trained["horizon_h"], expected, strict=True):
        assert by_h[int(h)] == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize("change, field, message", [
    (lambda b: b.update(extra=1), "extra", "Extra inputs are not permitted"),
    (lambda b: b["station"].update(latitude=95), "latitude", "less than or equal to 90"),
    (lambda b: b["observations"][3].update(relative_humidity=140), "relative_humidity",
     "less than or equal to 100"),
    (lambda b: b.update(observations=b["observations"][:3]), "observations", "7 consecutive"),
    (lambda b: b["observations"].pop(4), "time", "does not follow"),
    (lambda b: b["observations"][0].update(time="2001-05-06T10:00:00"), "time", "timezone"),
    (lambda b: [o.update(time=f"2070-01-01T{i:02d}:00:00+00:00")
                for i, o in enumerate(b["observations"])], "time", "bundled ephemeris"),
])
def test_bad_requests_get_field_level_422(client, observations, change, field, message):
    body = request_body(observations)
    change(body)
    response = client.post("/v1/nowcast", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(field in map(str, d["loc"]) and message in d["msg"] for d in detail), detail
    assert client.service.store.count("predictions") == 0


def test_oversized_body_is_refused(client):
    response = client.post("/v1/nowcast", content=b"x" * 300_000,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_feedback_is_logged_for_a_known_prediction(client, observations):
    prediction_id = client.post("/v1/nowcast", json=request_body(observations)).json()[
        "prediction_id"]
    ok = client.post("/v1/feedback", json={"prediction_id": prediction_id, "observed": "clear"})
    assert ok.status_code == 200 and ok.json()["prediction_id"] == prediction_id
    assert client.service.store.count("feedback") == 1
    unknown = client.post("/v1/feedback", json={"prediction_id": "nope", "observed": "clear"})
    assert unknown.status_code == 404
    invalid = client.post("/v1/feedback", json={"prediction_id": prediction_id,
                                                "observed": "foggy"})
    assert invalid.status_code == 422
    again = client.post("/v1/feedback", json={"prediction_id": prediction_id,
                                              "observed": "partly"})
    assert again.status_code == 409 and "already has feedback" in again.json()["detail"]
    assert client.service.store.count("feedback") == 1


def test_every_prediction_records_its_inputs(client, observations):
    import json

    import sqlalchemy as sa

    from starry_guide.serve.store import database as store

    body = request_body(observations)
    prediction_id = client.post("/v1/nowcast", json=body).json()["prediction_id"]
    with client.service.store.engine.connect() as db:
        inputs = json.loads(db.execute(sa.select(store.prediction_inputs.c.features)).scalar())
        head = db.execute(sa.select(store.predictions)).one()
    assert head.prediction_id == prediction_id and head.kind == "nowcast"
    assert head.latitude == round(body["station"]["latitude"], 2)
    assert inputs["opaque_cloud_tenths"] == body["observations"][-1]["opaque_cloud_tenths"]
    assert "dew_point_spread_c" in inputs
    if "longitude" in inputs:  # a place among the inputs is no more precise than 0.01°
        assert inputs["longitude"] == round(body["station"]["longitude"], 2)


def test_night_timeline_from_climatology(client):
    response = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                               "date": "2026-01-15"})
    assert response.status_code == 200, response.text
    night = response.json()
    steps = night["timeline"]
    assert len(steps) > 40  # a January night is long
    assert all(s["sun_altitude_deg"] < 0 for s in steps)
    assert {s["twilight"] for s in steps} >= {"civil twilight", "night"}
    assert night["p_clear_source"] == "climatology of station greensboro_nc, 0 km away"
    for window in night["best_windows"]:
        assert window["start"] < window["end"] and window["mean_score"] > 0


def test_night_with_observations_uses_the_nowcast(client, observations):
    body = request_body(observations, start=8000, hours=10)
    payload = {"station": body["station"], "observations": body["observations"],
               "date": "2001-11-30"}  # the hours end 2001-11-30T23:00Z: they reach that night
    night = client.post("/v1/night", json=payload).json()
    assert night["p_clear_source"].startswith("nowcast for the next 12 h")
    assert night["prediction_id"]
    # the next night begins after the nowcast's 12 hours: climatology only, and said so
    later = client.post("/v1/night", json={**payload, "date": "2001-12-01"}).json()
    assert later["p_clear_source"].startswith("climatology of")


def test_night_date_outside_the_ephemeris_is_422(client):
    response = client.get("/v1/night", params={"lat": 36.1, "lon": -79.95,
                                               "date": "2080-01-01"})
    assert response.status_code == 422
    assert "ephemeris" in response.text


def test_health_and_metrics(client, observations):
    assert client.get("/healthz").json()["model_version"] == "7"
    client.post("/v1/nowcast", json=request_body(observations))
    text = client.get("/metrics").text
    assert 'starry_predictions_total{horizon_h="12"} 1.0' in text
    assert 'starry_model_info{candidate="hist_gradient_boosting",version="7"} 1.0' in text
    assert "starry_request_seconds_bucket" in text


def test_service_refuses_a_bundle_whose_features_this_code_does_not_build(bundle_dir,
                                                                        tmp_path):
    # a valid bundle exported by another version of the feature function
    import dataclasses

    from starry_guide.artifacts.bundle import BundleError

    loaded = load_bundle(bundle_dir)
    older = dataclasses.replace(loaded, features=[*loaded.features[:-1], "moon_phase"])
    with pytest.raises(BundleError, match="features differ"):
        Service(older, Store(tmp_path / "store.sqlite"))


def test_a_failed_log_write_fails_the_request(client, observations):
    # a table of the store is gone: the nowcast must fail, not answer unrecorded
    with client.service.store.engine.begin() as db:
        db.exec_driver_sql("DROP TABLE prediction_horizons")
    with pytest.raises(Exception, match="no such table"):
        client.post("/v1/nowcast", json=request_body(observations))
    metrics = client.get("/metrics").text
    assert 'starry_predictions_total{horizon_h="1"} 0.0' in metrics


def test_concurrent_nowcasts_are_batched_and_equal_one_by_one(bundle_dir, tmp_path,
                                                              observations):
    import asyncio

    import httpx

    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    batch_sizes = []
    forecast_many = service.forecast_many

    def observed(requests, **options):
        batch_sizes.append(len(requests))
        return forecast_many(requests, **options)

    service.forecast_many = observed
    bodies = [request_body(observations, station=station, start=start)
              for station in ("greensboro_nc", "miami_fl") for start in (500, 3000, 7000)]

    async def post_all(concurrently: bool) -> list[dict]:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if concurrently:
                responses = await asyncio.gather(
                    *(client.post("/v1/nowcast", json=b) for b in bodies))
            else:
                responses = [await client.post("/v1/nowcast", json=b) for b in bodies]
        assert all(r.status_code == 200 for r in responses)
        return [r.json() for r in responses]

    one_by_one = asyncio.run(post_all(concurrently=False))
    assert set(batch_sizes) == {1}
    together = asyncio.run(post_all(concurrently=True))
    assert max(batch_sizes) > 1  # several requests did share one feature pass
    for alone, batched in zip(one_by_one, together, strict=True):
        assert alone["issued_for"] == batched["issued_for"]
        assert [f["p_clear"] for f in alone["forecasts"]] == \
            [f["p_clear"] for f in batched["forecasts"]]
    assert service.store.count("prediction_horizons") == 2 * len(bodies) * 12
