"""The production loop end to end, on real parts: a real station (Greensboro, pvlib's TMY3)
replayed hour by hour with `starry replay` into a real uvicorn (`starry serve` with a real
bundle and a SQLite serving store), snapshotted with `starry store snapshot`, judged by the
monitor. Four stations share one server, each the same real weeks of Greensboro:

* ``clean`` — no fault: the monitor raises nothing;
* ``stuck`` — the cloud sensor freezes mid-way: a data-quality alert naming the station, the
  sensor and the chunk (and users' feedback disagrees), no retraining;
* ``fahrenheit`` — the air temperature arrives in deg F: a drift alert;
* ``shift`` — the night sky clouds over: realised performance degrades, retraining.

Bounded: 6 to 12 weeks per station, the four feeders at once, each as fast as the server
answers; the replay rates are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from starry_guide.monitor import reference_period, verdict
from tests.support.server import start_server

STARRY = [sys.executable, "-m", "starry_guide.cli"]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "monitor-test-feeder-token-0123456789"

SCENARIOS = {  # station id: (start, hours, faults); weeks start on Mondays
    "clean": ("2001-09-03", 10 * 168, []),
    "stuck": ("2001-06-04", 8 * 168, ["stuck-cloud-sensor@2001-07-11"]),
    "shift": ("2001-09-03", 12 * 168, ["shift-clear-rate@2001-10-01"]),
    "fahrenheit": ("2001-10-29", 6 * 168, ["temperature-in-fahrenheit@2001-11-19"]),
}


@pytest.fixture(scope="module")
def snapshot(bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop")
    store = f"sqlite:///{folder / 'store.sqlite'}"
    env = {**os.environ, "STARRY_FEED_TOKEN": TOKEN}
    server = start_server(bundle_dir, folder, store=store, env={"STARRY_FEED_TOKEN": TOKEN})
    url = server.url
    try:
        # the four feeders run at once, as four stations would
        began = time.perf_counter()
        feeders = {station: subprocess.Popen(
            [*STARRY, "replay", "greensboro_nc", "--url", url, "--station-id", station,
             "--start", start, "--hours", str(hours), "--feedback-rate", "0.3",
             "--feedback-error", "0.1", "--seed", "7",
             *[arg for fault in faults for arg in ("--fault", fault)]],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for station, (start, hours, faults) in SCENARIOS.items()}
        for station, feeder in feeders.items():
            out, err = feeder.communicate(timeout=1200)
            assert feeder.returncode == 0, out + err
            print(f"\n{station}: {out.strip().splitlines()[-1]}")
        total = sum(hours for _, hours, _ in SCENARIOS.values())
        print(f"all feeders: {total} hours in {time.perf_counter() - began:.1f} s")
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


def _alerts(summary, kind, station):
    return [a for a in summary["alerts"][kind] if a["station_id"] == station]


def test_every_replayed_hour_and_nowcast_reached_the_store(report):
    result, summary = report
    obs = result.production.observations
    counts = obs.groupby("station_id").size().to_dict()
    for station in ("clean", "stuck", "shift"):
        assert counts[station] == SCENARIOS[station][1]
    assert counts["fahrenheit"] > 0  # warm hours in deg F are out of range: the feed refuses
    nowcasts = result.production.predictions.groupby("station_id")["prediction_id"].nunique()
    for station in ("clean", "stuck", "shift"):  # a nowcast per stored hour once history allows
        hours = counts[station]
        assert hours - 12 <= nowcasts[station] <= hours, (station, nowcasts[station], hours)
    assert (result.labelled.groupby("station_id").size() > 3_000).all()
    assert summary["production"]["feedback"] > 500


def test_without_faults_nothing_is_raised(report):
    _, summary = report
    station = summary["stations"]["clean"]
    assert station["status"] == "ok" and not station["retrain_recommended"], station
    assert all(n == 0 for n in station["alerts"].values()), station


def test_a_stuck_cloud_sensor_is_a_data_quality_alert_not_a_retrain(report):
    _, summary = report
    stuck = [a for a in _alerts(summary, "data_quality", "stuck") if a["kind"] == "stuck"]
    assert stuck and {a["sensor"] for a in stuck} == {"opaque_cloud_tenths"}
    chunks = {a["chunk"] for a in stuck}
    assert "2001-07-09" in chunks and min(chunks) >= "2001-07-02"  # froze on 11 July
    feedback = [a for a in _alerts(summary, "data_quality", "stuck") if a["kind"] == "feedback"]
    assert feedback, "users see the real sky and disagree with the frozen sensor"
    station = summary["stations"]["stuck"]
    assert station["status"] == "data_quality" and not station["retrain_recommended"]
    assert any("opaque_cloud_tenths" in r and "stuck" in r for r in summary["reasons"])


def test_a_unit_change_is_a_drift_alert(report):
    _, summary = report
    drift = _alerts(summary, "drift", "fahrenheit")
    assert {a["feature"] for a in drift} & {"temp_air_c", "temp_change_3h",
                                            "dew_point_spread_c"}
    assert min(a["chunk"] for a in drift) >= "2001-11-19"
    assert not summary["stations"]["fahrenheit"]["retrain_recommended"]


def test_a_clear_rate_shift_degrades_performance_and_recommends_retraining(report):
    result, summary = report
    station = summary["stations"]["shift"]
    assert station["retrain_recommended"] and station["status"] == "degraded"
    assert summary["retrain_recommended"]
    perf = result.performance[result.performance["station_id"] == "shift"].set_index("chunk")
    clean = result.performance[result.performance["station_id"] == "clean"].set_index("chunk")
    after = perf.index >= "2001-10-01"
    assert (perf.loc[after, "brier"].mean()
            > clean.loc[clean.index >= "2001-10-01", "brier"].mean() + 0.03)
    assert pd.Series(perf.loc[after, "brier_excess"]).mean() > 0.03
    assert min(a["chunk"] for a in _alerts(summary, "performance", "shift")) >= "2001-10-01"
