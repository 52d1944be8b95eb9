"""Monitoring tests: the real stations, a real bundle (from tests/serve) and a reference built
from them the way the monitor stage builds it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core import astro, features
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.monitor import reference_period, statistics
from tests.serve.conftest import bundle_dir, rows  # noqa: F401  (session fixtures)


@pytest.fixture(scope="session")
def bundle(bundle_dir):  # noqa: F811
    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def reference(observations, rows, bundle, settings):  # noqa: F811
    return reference_period.reference_from_processed(observations, rows, bundle, settings)


def simulate_production(sent: pd.DataFrame, bundle, world: pd.DataFrame | None = None,
                        feedback_rate: float = 0.0, feedback_error: float = 0.0,
                        seed: int = 0) -> reference_period.Production:
    """What the serving store would hold after a feeder sent ``sent`` hour by hour: the
    observations, a nowcast per hour from the history so far (the bundle, the shared feature
    core), each labelled by the observed cover at its target hour, and users' feedback on the
    sky of ``world``. Computed offline, for tests of the pure monitor."""
    sent = sent.sort_values("time").reset_index(drop=True)
    station = str(sent["station_id"].iloc[0])
    run_start = np.zeros(len(sent), dtype=bool)
    run_start[0] = True  # the service keeps one continuous history per station
    seconds = astro.epoch_seconds(sent["time"])
    hourly = features.hourly_feature_arrays(
        {name: sent[name].to_numpy(dtype=float) for name in features.INPUT_COLUMNS},
        seconds, run_start, bundle.feature_settings)
    hourly["longitude"] = sent["longitude"].to_numpy(dtype=float)
    matrix, target_seconds = features.model_arrays(hourly, seconds, bundle.horizons,
                                                   bundle.feature_settings)
    n_h = len(bundle.horizons)
    predictions = pd.DataFrame(matrix.astype(float), columns=bundle.features)
    predictions.insert(0, "prediction_id", np.repeat([f"p{i}" for i in range(len(sent))], n_h))
    predictions.insert(1, "station_id", station)
    predictions.insert(2, "time", pd.DatetimeIndex(sent["time"]).repeat(n_h))
    predictions["target_time"] = pd.to_datetime(target_seconds, unit="s", utc=True)
    predictions["p_clear"] = bundle.predict_matrix(matrix)
    cover = sent.set_index("time")["opaque_cloud_tenths"]
    predictions["label_opaque_cloud_tenths"] = cover.reindex(predictions["target_time"]).to_numpy()
    first = sent.iloc[0]
    stations = pd.DataFrame([{"station_id": station, "latitude": float(first["latitude"]),
                              "longitude": float(first["longitude"]),
                              "elevation_m": float(first["elevation_m"])}])
    feedback = pd.DataFrame(columns=["prediction_id", "observed", "observed_at"])
    if feedback_rate:
        rng = np.random.default_rng(seed)
        world = sent if world is None else world.sort_values("time").reset_index(drop=True)
        records = []
        for i in np.flatnonzero((world["sun_elevation_deg"] < -12).to_numpy()):
            if i < 12 or rng.random() >= feedback_rate:
                continue
            h = int(rng.integers(1, 13))
            truth = statistics.cover_category(np.array([world["opaque_cloud_tenths"].iloc[i]]),
                                           2.0)[0]
            if truth is None:
                continue
            if rng.random() < feedback_error:
                truth = str(rng.choice([c for c in statistics.FEEDBACK_CATEGORIES if c != truth]))
            records.append({"prediction_id": f"p{i - h}", "observed": truth,
                            "observed_at": world["time"].iloc[i]})
        feedback = pd.DataFrame.from_records(records)
    observations = sent[["station_id", "time", *WEATHER_COLUMNS]]
    return reference_period.Production(stations, observations, predictions, feedback)
