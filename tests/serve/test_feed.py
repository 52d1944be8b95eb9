"""The observation feed and station endpoints, in process over the real app, bundle and a
store on SQLite and on a real PostgreSQL: registration, idempotent ingestion, corrections,
station nowcasts, the labels join, snapshot and purge."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve import snapshot
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store import database as serving
from starry_guide.serve.store.database import Store

TOKEN = "feeder-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(bundle_dir, store_url, monkeypatch):
    monkeypatch.setenv("STARRY_FEED_TOKEN", TOKEN)
    monkeypatch.delenv("STARRY_FEED_TOKEN_FILE", raising=False)
    service = Service(load_bundle(bundle_dir), Store(store_url))
    with TestClient(create_app(service)) as c:
        c.service = service
        yield c
    service.store.close()


def hours(observations: pd.DataFrame, start: int = 3000, n: int = 10,
          station: str = "greensboro_nc") -> list[dict]:
    part = observations[observations["station_id"] == station].iloc[start:start + n]
    return [{"time": row["time"].isoformat(),
             **{c: (None if pd.isna(row[c]) else float(row[c])) for c in WEATHER_COLUMNS}}
            for _, row in part.iterrows()]


def register(client, station_id: str = "kgso") -> None:
    response = client.put(f"/v1/stations/{station_id}", headers=AUTH,
                          json={"latitude": 36.1, "longitude": -79.95, "elevation_m": 273,
                                "name": "Greensboro"})
    assert response.status_code in (200, 201), response.text


def test_stations_are_registered_updated_and_listed(client):
    first = client.put("/v1/stations/kgso", headers=AUTH,
                       json={"latitude": 36.1, "longitude": -79.95})
    assert first.status_code == 201 and first.json()["elevation_m"] == 0
    again = client.put("/v1/stations/kgso", headers=AUTH,
                       json={"latitude": 36.1, "longitude": -79.95, "name": "Greensboro"})
    assert again.status_code == 200 and again.json()["name"] == "Greensboro"
    listed = client.get("/v1/stations").json()
    assert [s["station_id"] for s in listed] == ["kgso"]
    assert client.put("/v1/stations/bad id!", headers=AUTH,
                      json={"latitude": 0, "longitude": 0}).status_code in (404, 422)
    assert client.put("/v1/stations/kgso", headers=AUTH,
                      json={"latitude": 91, "longitude": 0}).status_code == 422


def test_without_a_configured_token_the_feed_says_how_to_configure_it(bundle_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.delenv("STARRY_FEED_TOKEN", raising=False)
    monkeypatch.delenv("STARRY_FEED_TOKEN_FILE", raising=False)
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "s.sqlite"))
    with TestClient(create_app(service)) as c:
        response = c.put("/v1/stations/kgso", headers=AUTH,
                         json={"latitude": 36.1, "longitude": -79.95})
    assert response.status_code == 403
    assert "STARRY_FEED_TOKEN" in response.json()["detail"]
    assert service.store.count("stations") == 0


def test_ingestion_is_idempotent_and_keeps_corrections(client, observations):
    register(client)
    batch = hours(observations)
    first = client.post("/v1/stations/kgso/observations", headers=AUTH,
                        json={"observations": batch})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["new"], body["unchanged"], body["corrected"]) == (10, 0, 0)
    assert body["nowcast_updated"] and len(body["nowcast"]["forecasts"]) == 12
    assert body["nowcast"]["issued_for"] == pd.Timestamp(batch[-1]["time"]).tz_convert(
        "UTC").isoformat().replace("+00:00", "Z")
    # the same hours again: nothing new, no new prediction
    again = client.post("/v1/stations/kgso/observations", headers=AUTH,
                        json={"observations": batch}).json()
    assert (again["new"], again["unchanged"], again["corrected"]) == (0, 10, 0)
    assert not again["nowcast_updated"]
    assert again["nowcast"]["prediction_id"] == body["nowcast"]["prediction_id"]
    assert client.service.store.count("observations") == 10
    assert client.service.store.count("predictions") == 1
    # one hour corrected, inside the latest nowcast's inputs: kept, and the nowcast renewed
    changed = [dict(h) for h in batch[-3:]]
    previous = changed[0]["opaque_cloud_tenths"]
    changed[0]["opaque_cloud_tenths"] = 10.0 if previous != 10.0 else 0.0
    fixed = client.post("/v1/stations/kgso/observations", headers=AUTH,
                        json={"observations": changed}).json()
    assert (fixed["new"], fixed["unchanged"], fixed["corrected"]) == (0, 2, 1)
    assert fixed["nowcast_updated"]
    with client.service.store.engine.connect() as db:
        correction = db.execute(sa.select(serving.observation_corrections)).one()
        stored = db.execute(sa.select(serving.observations).where(
            serving.observations.c.time == correction.time)).one()
    assert correction.opaque_cloud_tenths == previous and correction.revision == 0
    assert stored.opaque_cloud_tenths == changed[0]["opaque_cloud_tenths"]
    assert stored.revision == 1
    assert client.service.store.count("predictions") == 2


def test_bad_feed_requests_are_refused_with_reasons(client, observations):
    batch = hours(observations, n=3)
    unknown = client.post("/v1/stations/nowhere/observations", headers=AUTH,
                          json={"observations": batch})
    assert unknown.status_code == 404 and "PUT /v1/stations/nowhere" in unknown.json()["detail"]
    register(client)
    twice = client.post("/v1/stations/kgso/observations", headers=AUTH,
                        json={"observations": [batch[0], batch[0]]})
    assert twice.status_code == 422 and "repeats" in twice.text
    off = dict(batch[0], time="2001-05-05T10:30:00+00:00")
    assert client.post("/v1/stations/kgso/observations", headers=AUTH,
                       json={"observations": [off]}).status_code == 422
    out_of_range = dict(batch[0], temp_air_c=99)
    assert client.post("/v1/stations/kgso/observations", headers=AUTH,
                       json={"observations": [out_of_range]}).status_code == 422
    assert client.service.store.count("observations") == 0
    # three hours stored: too few for a nowcast, and the reply says why
    short = client.post("/v1/stations/kgso/observations", headers=AUTH,
                        json={"observations": batch}).json()
    assert short["nowcast"] is None and "consecutive hours" in short["nowcast_note"]
    assert client.get("/v1/stations/kgso/nowcast").status_code == 409
    assert client.get("/v1/stations/nowhere/nowcast").status_code == 404


def test_hour_by_hour_feed_labels_earlier_predictions(client, observations, settings,
                                                      tmp_path):
    register(client)
    batch = hours(observations, start=4000, n=24)
    for hour in batch:  # as a feeder does: each new hour as it comes
        assert client.post("/v1/stations/kgso/observations", headers=AUTH,
                           json={"observations": [hour]}).status_code == 200
    history = settings.features.history_h
    assert client.service.store.count("predictions") == len(batch) - history
    truth = {pd.Timestamp(h["time"]).tz_convert("UTC"): h["opaque_cloud_tenths"]
             for h in batch}
    query = Store.labelled_horizons(settings.label.clear_max_opaque_tenths)
    with client.service.store.engine.connect() as db:
        rows = db.execute(query).mappings().all()
    assert len(rows) == (len(batch) - history) * 12
    labelled = [r for r in rows if r["observed_opaque_cloud_tenths"] is not None]
    # every target hour that has arrived is labelled with that hour's cover, and only those
    arrived = [r for r in rows if pd.Timestamp(r["target_time"]) in truth]
    assert len(labelled) == len(arrived) > 0
    for r in arrived:
        cover = truth[pd.Timestamp(r["target_time"])]
        assert r["observed_opaque_cloud_tenths"] == cover
        assert r["clear"] == int(cover <= settings.label.clear_max_opaque_tenths)
    # the station's nowcast is the stored one for its latest hour; the night uses it
    latest = client.get("/v1/stations/kgso/nowcast").json()
    assert pd.Timestamp(latest["issued_for"]) == pd.Timestamp(batch[-1]["time"])
    assert client.service.store.count("predictions") == len(batch) - history
    date = pd.Timestamp(batch[-1]["time"]).date().isoformat()
    night = client.get("/v1/stations/kgso/night", params={"date": date})
    assert night.status_code == 200, night.text

    # the snapshot carries the same join, and identical data gives identical files
    first, second = tmp_path / "a", tmp_path / "b"
    manifest = snapshot.write_snapshot(client.service.store, first, 2.0)
    snapshot.write_snapshot(client.service.store, second, 2.0)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    assert manifest["files"]["predictions.parquet"]["rows"] == len(rows)
    assert manifest["files"]["observations.parquet"]["rows"] == len(batch)
    assert str(tmp_path) not in (first / "manifest.json").read_text()
    table = pq.read_table(first / "predictions.parquet").to_pandas()
    assert list(table.columns) == snapshot.SCHEMAS["predictions"].names
    assert table["clear"].notna().sum() == len(labelled)
    features = pq.read_table(first / "prediction_features.parquet").to_pandas()
    assert len(features) == len(batch) - history and "opaque_cloud_tenths" in features
    assert json.loads((first / "manifest.json").read_text())["schema_revision"] == \
        serving.HEAD_REVISION


def test_purge_deletes_what_arrived_before_the_cutoff(client, observations):
    register(client)
    client.post("/v1/stations/kgso/observations", headers=AUTH,
                json={"observations": hours(observations)})
    prediction_id = client.get("/v1/stations/kgso/nowcast").json()["prediction_id"]
    client.post("/v1/feedback", json={"prediction_id": prediction_id, "observed": "partly"})
    store = client.service.store
    assert store.purge(dt.timedelta(days=1)) == dict.fromkeys(
        ["feedback", "prediction_inputs", "prediction_horizons", "predictions", "observations",
         "observation_corrections"], 0)
    deleted = store.purge(dt.timedelta(0))
    assert deleted["predictions"] == 1 and deleted["observations"] == 10
    assert deleted["feedback"] == 1 and deleted["prediction_horizons"] == 12
    assert store.count("stations") == 1  # registrations stay
