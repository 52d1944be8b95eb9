"""One validation policy: the ranges and repairs of training (quality.py) are the ones the
nowcast body, the feed and batch scoring apply — each path's handling is in the docs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import quality
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.app import create_app
from starry_guide.serve.routes.feed import StationRegistration
from starry_guide.serve.schemas import Observation, Station
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from starry_guide.tools import batch
from tests.serve.conftest import request_body


def schema_range(model, name: str) -> tuple[float, float]:
    field = model.model_json_schema()["properties"][name]
    if "anyOf" in field:
        field = next(f for f in field["anyOf"] if f.get("type") == "number")
    return field["minimum"], field["maximum"]


def test_the_api_and_the_feed_take_their_ranges_from_quality():
    for name, (lo, hi) in quality.PHYSICAL_RANGES.items():
        assert schema_range(Observation, name) == (lo, hi), name
    for model in (Station, StationRegistration):
        for name, (lo, hi) in quality.PLACE_RANGES.items():
            assert schema_range(model, name) == (lo, hi), (model, name)
    assert set(quality.PHYSICAL_RANGES) == set(WEATHER_COLUMNS)


def test_training_repairs_an_impossible_dew_point_and_so_does_every_serving_path(
        bundle_dir, tmp_path, observations):
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "s.sqlite"))
    body = request_body(observations, start=3000, hours=8)
    last = body["observations"][-1]
    assert last["temp_air_c"] is not None
    impossible = {**body, "observations": [*body["observations"][:-1],
                                           {**last, "temp_dew_c": last["temp_air_c"] + 5}]}
    missing = {**body, "observations": [*body["observations"][:-1],
                                        {**last, "temp_dew_c": None}]}
    assert quality.dew_point_too_high([last["temp_air_c"]], [last["temp_air_c"] + 5])[0]
    with TestClient(create_app(service)) as client:
        answers = [client.post("/v1/nowcast", json=b).json()["forecasts"]
                   for b in (impossible, missing, body)]
    p = [[f["p_clear"] for f in a] for a in answers]
    assert p[0] == p[1]  # the impossible dew point was treated as missing, as in training
    # the model's recorded inputs say so: no dew-point spread for the impossible hour
    import json

    import sqlalchemy as sa

    from starry_guide.serve.store import database as store

    with service.store.engine.connect() as db:
        recorded = [json.loads(row.features) for row in db.execute(
            sa.select(store.prediction_inputs.c.features).join(
                store.predictions, store.predictions.c.prediction_id
                == store.prediction_inputs.c.prediction_id).order_by(
                store.predictions.c.created_at))]
    assert recorded[0]["dew_point_spread_c"] is None
    assert recorded[1]["dew_point_spread_c"] is None
    assert recorded[2]["dew_point_spread_c"] == pytest.approx(
        last["temp_air_c"] - last["temp_dew_c"])
    # batch scoring: the same repair on the way into the feature core
    scored = []
    for b in (impossible, missing):
        frame = pd.DataFrame([{"station_id": "x", "latitude": b["station"]["latitude"],
                               "longitude": b["station"]["longitude"],
                               "elevation_m": b["station"]["elevation_m"], **o}
                              for o in b["observations"]])
        checked, problems = batch.check_rows(frame, "input")
        assert problems.rows == []
        scored.append(batch.score_local(checked, service.bundle, chunk_hours=100,
                                        progress=False)["p_clear"].to_numpy())
    np.testing.assert_array_equal(scored[0], scored[1])
    service.store.close()


@pytest.mark.parametrize("column, value", [("latitude", 91.0), ("longitude", -200.0),
                                           ("elevation_m", 12000.0)])
def test_batch_refuses_a_place_out_of_range_by_row(observations, column, value):
    part = observations[observations["station_id"] == "greensboro_nc"].iloc[:5]
    frame = part[["station_id", "time", "latitude", "longitude", "elevation_m",
                  *WEATHER_COLUMNS]].copy()
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    frame[column] = frame[column].astype(float)
    frame.loc[frame.index[2], column] = value
    _, problems = batch.check_rows(frame.reset_index(drop=True), "input.csv")
    assert problems.rows == [3]
    lo, hi = quality.PLACE_RANGES[column]
    assert f"row 3: field '{column}' = {value:g} is outside {lo}..{hi}" in problems.messages[0]
