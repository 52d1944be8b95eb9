"""A registered station's adaptation map (learned by the select stage from its own production
nights, carried in the bundle's model card) is applied to that station's nowcasts — and only
to them: in process over the real app, a real bundle and a SQLite store."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts import bundle as transfer
from starry_guide.artifacts import onnx_export
from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import adaptation, features
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import request_body
from tests.serve.test_feed import AUTH, TOKEN, hours

MAP = {"kgso": {"a": -1.5, "b": 0.8, "nights": 30, "rows": 4000}}


@pytest.fixture()
def adapted_bundle(tmp_path, rows, observations, settings):
    from starry_guide.core import models

    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    model = models.build_candidate("calibrated_persistence", {"prior_strength": 1.0},
                                   settings.seed, 2).fit(train[columns], train["clear"])
    destination = tmp_path / "bundle"
    onnx_export.write_bundle(
        model, columns, destination,
        card={"model_name": "test", "version": "9", "candidate": "calibrated_persistence",
              "station_calibration": MAP},
        feature_spec=transfer.feature_spec(settings),
        climate=onnx_export.climatology(observations, -12, 2),
        X_check=rows[rows["split"] == "held_out"])
    return destination


@pytest.fixture()
def client(adapted_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("STARRY_FEED_TOKEN", TOKEN)
    monkeypatch.delenv("STARRY_FEED_TOKEN_FILE", raising=False)
    service = Service(load_bundle(adapted_bundle), Store(f"sqlite:///{tmp_path / 's.sqlite'}"))
    with TestClient(create_app(service)) as c:
        yield c
    service.store.close()


def station_p(client, station_id: str, observations, start: int = 3000) -> np.ndarray:
    body = {"latitude": 36.1, "longitude": -79.95, "elevation_m": 273, "name": station_id}
    assert client.put(f"/v1/stations/{station_id}", headers=AUTH, json=body).status_code in (
        200, 201)
    posted = client.post(f"/v1/stations/{station_id}/observations", headers=AUTH,
                         json={"observations": hours(observations, start=start, n=10)})
    assert posted.status_code == 200, posted.text
    nowcast = client.get(f"/v1/stations/{station_id}/nowcast").json()
    return np.array([f["p_clear"] for f in nowcast["forecasts"]])


def test_only_the_mapped_station_is_recalibrated(client, observations):
    mapped = station_p(client, "kgso", observations)
    plain = station_p(client, "elsewhere", observations)
    expected = adaptation.apply_recalibration(plain, MAP["kgso"]["a"], MAP["kgso"]["b"])
    np.testing.assert_allclose(mapped, expected, atol=2e-6)
    assert (mapped < plain).all()  # a = -1.5: this station's sky is cloudier
    # an ad-hoc place (no station) gets the model itself, like an unmapped station
    adhoc = client.post("/v1/nowcast", json=request_body(observations, start=3000, hours=10))
    assert adhoc.status_code == 200
    np.testing.assert_allclose([f["p_clear"] for f in adhoc.json()["forecasts"]], plain,
                               atol=1e-6)


def test_bundle_adapt_leaves_unmapped_rows_alone(adapted_bundle):
    loaded = load_bundle(adapted_bundle)
    p = np.array([[0.2, 0.5], [0.2, 0.5]])
    out = loaded.adapt(p, ["kgso", None])
    np.testing.assert_allclose(out[1], p[1])
    np.testing.assert_allclose(out[0], adaptation.apply_recalibration(p[0], -1.5, 0.8))


def test_service_batch_and_monitor_serve_the_same_p_clear(client, adapted_bundle,
                                                          observations):
    """One inference chain: a mapped station's hours give the same P(clear) through the API's
    feed (the service), batch scoring and the monitor's reference — the station map
    included (and the map really changes the numbers)."""
    from starry_guide.monitor import reference_period
    from starry_guide.tools import batch

    loaded = load_bundle(adapted_bundle)
    greensboro = observations[observations["station_id"] == "greensboro_nc"]
    greensboro = greensboro.sort_values("time").reset_index(drop=True)
    segment = greensboro[greensboro["segment"] == greensboro["segment"].iloc[3000]]
    hours_of_station = segment.assign(station_id="kgso").reset_index(drop=True)
    last = hours_of_station["time"].iloc[-1]

    served = station_p(client, "kgso", hours_of_station.assign(station_id="greensboro_nc"),
                       start=len(hours_of_station) - 10)
    scored = batch.score_station(hours_of_station, loaded, loaded.feature_settings,
                                 loaded.horizons)
    batch_p = scored.loc[scored["time"] == last, "p_clear"].to_numpy()
    _, monitored = reference_period.served_p_clear(hours_of_station, loaded)
    monitor_p = monitored.loc[monitored["time"] == last, "p_clear"].to_numpy()

    np.testing.assert_allclose(batch_p, monitor_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(served, batch_p, atol=1e-6)  # the API rounds to 6 digits
    unmapped = batch.score_station(hours_of_station.assign(station_id="elsewhere"), loaded,
                                   loaded.feature_settings, loaded.horizons)
    assert (batch_p < unmapped.loc[unmapped["time"] == last, "p_clear"].to_numpy()).all()
