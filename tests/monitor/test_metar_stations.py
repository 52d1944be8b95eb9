"""Two real METAR stations through the production loop, end to end: NOAA's LCD files of
Atlanta Hartsfield (KATL, 2020-01-01 .. 02-22) and Lincoln NE (KLNK, 2023-01-01 .. 02-26),
fetched by the `stations` stage from the pinned `noaa-weather-hourly` wheel, posted with
`starry metar feed` into a real `starry serve` (each hour a nowcast), snapshotted with
`starry store snapshot`, and judged by the monitor with METAR labels (the observed cover of
each target hour, mapped by the contract of docs/metar.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from starry_guide.ingest import lcd
from starry_guide.monitor import reference_period, verdict
from tests.support.server import start_server

ROOT = Path(__file__).resolve().parents[2]
STARRY = [sys.executable, "-m", "starry_guide.cli"]
TOKEN = "metar-stations-feeder-token-0123456789"
@pytest.fixture(scope="module")
def snapshot(lcd_files, bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("metar-loop")
    store = f"sqlite:///{folder / 'store.sqlite'}"
    server = start_server(bundle_dir, folder, store=store, env={"STARRY_FEED_TOKEN": TOKEN})
    try:
        feeders = [subprocess.Popen(
            [*STARRY, "metar", "feed", "--source", str(path), "--url", server.url],
            cwd=ROOT, env={**os.environ, "STARRY_FEED_TOKEN": TOKEN}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) for path in lcd_files.values()]
        for feeder in feeders:
            out, err = feeder.communicate(timeout=1200)
            assert feeder.returncode == 0, out + err
            print(out.strip())
    finally:
        server.stop(timeout=30)
    out = folder / "production"
    result = subprocess.run([*STARRY, "store", "snapshot", "--store", store, "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def report(snapshot, reference, settings, bundle):
    production = reference_period.load_production(snapshot)
    result = verdict.run(production, reference, settings.label,
                         reference_period.served_threshold(bundle.card), settings.monitor)
    return result, result.summary()


def test_every_metar_hour_reached_the_store_with_its_nowcast(report, lcd_files):
    result, _ = report
    observations = result.production.observations
    for station, path in lcd_files.items():
        expected = lcd.read_lcd(path).frame
        stored = observations[observations["station_id"] == station]
        assert len(stored) == len(expected), station
        # the contract's values, as converted: what a report cannot see is missing
        assert stored["precipitable_water_cm"].isna().all()
        assert np.allclose(stored.sort_values("time")["opaque_cloud_tenths"].to_numpy(),
                           expected["opaque_cloud_tenths"].to_numpy(), equal_nan=True)
    nowcasts = result.production.predictions.groupby("station_id")["prediction_id"].nunique()
    assert nowcasts["KATL"] > 1000 and nowcasts["KLNK"] > 1000


def test_the_monitor_reports_realised_performance_with_metar_labels(report):
    result, summary = report
    labelled = result.labelled.groupby("station_id").size()
    assert labelled["KATL"] > 3000 and labelled["KLNK"] > 3000
    for station in ("KATL", "KLNK"):
        assert station in summary["stations"], summary["stations"].keys()
        judged = result.performance[result.performance["station_id"] == station]
        assert len(judged) >= 6  # weekly chunks of January and February
        assert judged["brier"].between(0, 1).all()
        assert np.isfinite(judged["brier_excess"]).any()
