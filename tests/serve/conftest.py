"""A real bundle, exported from a model trained on the real stations (once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from starry_guide.artifacts import bundle as transfer
from starry_guide.artifacts import onnx_export
from starry_guide.core import features, models, splits

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
    onnx_export.write_bundle(
        model, columns, destination,
        card={"model_name": "test", "version": "7", "candidate": "hist_gradient_boosting"},
        feature_spec=transfer.feature_spec(settings),
        climate=onnx_export.climatology(observations, -12, 2),
        X_check=rows[rows["split"] == "held_out"])
    return destination


def request_body(observations: pd.DataFrame, station: str = "greensboro_nc", start: int = 3000,
                 hours: int = 10) -> dict:
    """A /v1/nowcast body from real consecutive hours of a bundled station."""
    from starry_guide.core.schema import WEATHER_COLUMNS

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


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the session's PostgreSQL server; its SQLAlchemy URL."""
    import uuid

    import sqlalchemy as sa

    name = f"store_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty store's URL: a SQLite file, or a fresh database on the real PostgreSQL
    server of the session (the same tests run on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_url"))
