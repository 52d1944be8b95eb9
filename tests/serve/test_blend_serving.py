"""The persistence blend end to end: fitted in scikit-learn on the training path's rows,
exported as a bundle, served by the API from a request's raw observations — the same
P(clear) within the ONNX parity tolerance."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts import bundle
from starry_guide.artifacts import onnx_export as transfer
from starry_guide.core import features, models
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import request_body


@pytest.fixture(scope="module")
def blend(rows, settings):
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    params = {**settings.train.params_for("persistence_blend"), "boosting_iter": 40}
    return models.build_candidate("persistence_blend", params, settings.seed, 2).fit(
        train[columns], train["clear"])


@pytest.fixture(scope="module")
def blend_bundle(blend, rows, observations, settings, tmp_path_factory):
    destination = tmp_path_factory.mktemp("blend") / "bundle"
    card = transfer.write_bundle(
        blend, features.feature_columns(settings.features), destination,
        card={"model_name": "test", "version": "3", "candidate": "persistence_blend"},
        feature_spec=bundle.feature_spec(settings),
        climate=transfer.climatology(observations, -12, 2),
        X_check=rows[rows["split"] == "held_out"])
    assert card["onnx_parity_max_abs"] <= transfer.PARITY_TOLERANCE
    return destination


@pytest.mark.parametrize("station, start", [("miami_fl", 2000), ("sand_point_ak", 5000),
                                            ("greensboro_nc", 8000)])
def test_served_blend_equals_the_trained_blend(blend, blend_bundle, rows, observations,
                                                settings, tmp_path, station, start):
    service = Service(bundle.load_bundle(blend_bundle), Store(tmp_path / "store.sqlite"))
    body = request_body(observations, station, start=start, hours=30)
    with TestClient(create_app(service)) as client:
        response = client.post("/v1/nowcast", json=body)
    assert response.status_code == 200, response.text
    served = {f["horizon_h"]: f["p_clear"] for f in response.json()["forecasts"]}
    last = pd.Timestamp(body["observations"][-1]["time"])
    trained = rows[(rows["station_id"] == station) & (rows["time"] == last)]
    assert len(trained) > 0  # night targets exist for this hour
    expected = blend.predict_proba(trained[features.feature_columns(settings.features)])[:, 1]
    for h, p in zip(trained["horizon_h"], expected, strict=True):
        assert served[int(h)] == pytest.approx(p, abs=transfer.PARITY_TOLERANCE)
