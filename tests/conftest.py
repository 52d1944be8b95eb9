"""Shared fixtures: the project's settings and the real bundled stations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from starry_guide import config
from starry_guide.core import quality
from starry_guide.ingest import packaged, stations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def settings() -> config.Settings:
    return config.load_settings(ROOT)


@pytest.fixture(scope="session")
def station_data(settings) -> dict[str, stations.StationData]:
    return {
        entry: stations.read_station(entry, settings.paths.raw_dir, settings.data.reference_year)
        for entry, b in stations.BUILTIN_STATIONS.items() if b.origin == "pvlib"
    }


@pytest.fixture(scope="session")
def observations(station_data, settings) -> pd.DataFrame:
    """pvlib's three real stations, assessed and with sun/moon geometry (read once)."""
    frames = [assess(s, settings)[0] for s in station_data.values()]
    return pd.concat(frames, ignore_index=True)


def assess(station, settings):
    return quality.assess(station, settings.label, settings.data.min_usable_night_hours)


@pytest.fixture()
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh, real MLflow SQLite store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this test session (never skipped: see tests/support)."""
    from tests.support.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, for one test module. Not longer: the
    sync API keeps an asyncio loop running in this thread while it is open, and later
    modules' ``asyncio.run`` would refuse to start under it."""
    from tests.support.browser import chromium

    with chromium() as b:
        yield b


#: the two NOAA LCD files the `stations` stage takes from the noaa-weather-hourly wheel
LCD_FILES = {"KATL": "3876540.csv", "KLNK": "LCD_USW00014939_2020.csv"}


@pytest.fixture(scope="session")
def lcd_files(settings) -> dict[str, Path]:
    """The stage's copies of the two LCD files, fetched (hash-checked) when this clone has not
    run the stations stage, and verified against the manifest."""
    folder = settings.paths.packaged_dir / "noaa-weather-hourly"
    if not all((folder / name).is_file() for name in LCD_FILES.values()):
        packaged.build_pinned(settings)
    packaged.verify(settings.paths.packaged_dir)
    return {station: folder / name for station, name in LCD_FILES.items()}

