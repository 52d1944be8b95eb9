"""A real bundle, exported from a model trained on the real stations (once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from starry_guide import features, models, splits
from starry_guide.serve import bundle as transfer

CANDIDATE_PARAMS = {"hist_gradient_boosting": {"max_iter": 60, "max_depth": 3}}


@pytest.fixture(scope="session")
def rows(observations, settings) -> pd.DataFrame:
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    return rows


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, rows, observations, settings):
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    model = models.build_candidate("hist_gradient_boosting",
                                   CANDIDATE_PARAMS["hist_gradient_boosting"], settings.seed, 2)
    model.fit(train[columns], train["clear"])
    destination = tmp_path_factory.mktemp("bundle") / "bundle"
    transfer.write_bundle(
        model, columns, destination,
        card={"model_name": "test", "version": "7", "candidate": "hist_gradient_boosting"},
        feature_spec=transfer.feature_spec(settings),
        climate=transfer.climatology(observations, -12, 2),
        X_check=rows[rows["split"] == "test"])
    return destination


def request_body(observations: pd.DataFrame, station: str = "greensboro_nc", start: int = 3000,
                 hours: int = 10) -> dict:
    """A /v1/nowcast body from real consecutive hours of a bundled station."""
    from starry_guide.stations import WEATHER_COLUMNS

    part = observations[observations["station_id"] == station].iloc[start:start + hours]
    first = part.iloc[0]
    return {
        "station": {"latitude": float(first["latitude"]), "longitude": float(first["longitude"]),
                    "elevation_m": float(first["elevation_m"])},
        "observations": [
            {"time": row["time"].isoformat(),
             **{c: (None if pd.isna(row[c]) else float(row[c])) for c in WEATHER_COLUMNS}}
            for _, row in part.iterrows()],
    }
