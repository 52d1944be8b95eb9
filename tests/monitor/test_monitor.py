"""The monitor's pure functions, and the whole monitor on real station traffic computed
offline (a real bundle's predictions on a real station year, with and without faults)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from starry_guide.core import quality
from starry_guide.monitor import checks, reference_period, statistics, verdict
from starry_guide.tools import replay
from tests.monitor.conftest import simulate_production


@pytest.fixture(scope="module")
def greensboro(observations):
    return observations[observations["station_id"] == "greensboro_nc"].reset_index(drop=True)


def run(production, reference, settings):
    return verdict.run(production, reference, settings.label, 0.4, settings.monitor)


# ------------------------------------------------------------------- small pure functions

def test_chunks_are_calendar_weeks_from_monday():
    times = pd.Series(pd.to_datetime(["2001-07-01T23:00Z", "2001-07-02T00:00Z",
                                      "2001-07-08T23:59Z", "2001-07-09T00:00Z"]))
    assert statistics.chunk_start(times).tolist() == ["2001-06-25", "2001-07-02", "2001-07-02",
                                                   "2001-07-09"]
    assert statistics.chunk_start(times, days=1).tolist() == ["2001-07-01", "2001-07-02",
                                                           "2001-07-08", "2001-07-09"]



def test_chunk_start_is_each_rows_own_chunk_start_formatted():
    # chunk_start formats each chunk once and maps it to the rows: the same labels, index and
    # missing values as formatting every row, for hourly rows over years and any chunk length
    rng = np.random.default_rng(3)
    seconds = rng.integers(-5 * 365 * 86400, 40 * 365 * 86400, 5000)
    times = pd.Series(pd.to_datetime(seconds, unit="s", utc=True), index=rng.permutation(5000))
    times.iloc[[3, 70]] = pd.NaT
    for days in (1, 3, 7, 30):
        expected = [None if pd.isna(t) else
                    (statistics._EPOCH_MONDAY + pd.Timedelta(days=days) *
                     ((t - statistics._EPOCH_MONDAY) // pd.Timedelta(days=days))
                     ).strftime("%Y-%m-%d") for t in times]
        got = statistics.chunk_start(times, days)
        assert got.index.equals(times.index)
        assert [None if pd.isna(v) else v for v in got] == expected


def test_sustained_needs_consecutive_flags():
    flags = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert statistics.sustained(flags, 1).tolist() == flags.tolist()
    assert statistics.sustained(flags, 2).tolist() == [0, 0, 0, 1, 0, 0, 1, 1]
    assert statistics.sustained(flags, 3).tolist() == [0, 0, 0, 0, 0, 0, 0, 1]


def test_longest_runs_ignore_missing_values():
    starts, lengths, values = quality.value_runs(
        np.array([1, 1, 1, np.nan, np.nan, 2, 2, 1]))
    assert starts.tolist() == [0, 5, 7] and lengths.tolist() == [3, 2, 1]
    assert values.tolist() == [1, 2, 1]


def test_histogram_counts_missing_values_in_their_own_bin():
    edges = statistics.decile_edges(np.arange(100.0))
    counts = statistics.histogram(np.array([0.0, 50.0, np.nan, 99.0]), edges)
    assert counts.sum() == 4 and counts[-1] == 1
    assert statistics.js_distance(counts, counts) == 0.0
    all_missing = statistics.histogram(np.full(4, np.nan), edges)
    assert statistics.js_distance(all_missing, counts) > 0.5


def test_threshold_comes_from_the_reference_chunks_variation():
    """The same production shift alerts against a steady reference and not against one
    whose chunks vary as much by themselves."""
    settings = dataclasses.replace(
        _settings(), drift_consecutive_chunks=1, min_chunk_hours=10)
    rng = np.random.default_rng(0)
    hours = pd.date_range("2001-01-01", periods=24 * 7 * 20, freq="h", tz="UTC")

    def hourly(scale_by_week):
        week = (np.arange(len(hours)) // 168)
        values = rng.normal(0, 1, len(hours)) * scale_by_week[week]
        return pd.DataFrame({"station_id": "s", "time": hours, "x": values})

    steady = hourly(np.ones(20))
    wild = hourly(np.exp(rng.normal(0, 0.8, 20)))
    production = pd.DataFrame({"station_id": "s", "time": hours[:168 * 3],
                               "x": rng.normal(0, 1.6, 168 * 3)})
    results = {}
    for name, ref_frame in (("steady", steady), ("wild", wild)):
        p = ref_frame[["station_id", "time"]].assign(p_clear=0.5)
        held = ref_frame[["station_id", "time"]].assign(clear=0, p_clear=0.1)
        reference = reference_period.build_reference(ref_frame, p, held, ref_frame.assign(
            **{"opaque_cloud_tenths": 1.0})[["station_id", "time", "opaque_cloud_tenths"]],
            settings)
        results[name] = reference.drift_thresholds["x"]
        table = checks.feature_drift(production, reference, settings)
        results[name + "_alerts"] = int(table["alert"].sum())
    assert results["wild"] > 2 * results["steady"]
    assert results["steady_alerts"] == 3 and results["wild_alerts"] == 0


def _settings():
    from starry_guide.config import load_settings

    return load_settings().monitor


# ------------------------------------------------------------------- verdict logic

def _perf(station, alert_chunks, all_chunks):
    return pd.DataFrame({"station_id": station, "chunk": all_chunks, "rows": 500,
                         "window_excess": [0.09 if c in alert_chunks else 0.0
                                           for c in all_chunks],
                         "threshold": 0.05, "above": [c in alert_chunks for c in all_chunks],
                         "alert": [c in alert_chunks for c in all_chunks]})


CHUNKS = ["2001-07-02", "2001-07-09", "2001-07-16"]
NO_DRIFT = pd.DataFrame(columns=["station_id", "chunk", "feature", "distance", "threshold",
                                 "above", "alert"])
NO_QUALITY = pd.DataFrame(columns=["station_id", "sensor", "chunk", "kind", "value",
                                   "threshold", "detail"])


def test_verdict_quiet_when_nothing_is_raised():
    v = verdict.station_verdict("s", _perf("s", [], CHUNKS), NO_DRIFT, NO_DRIFT, NO_QUALITY)
    assert (v.retrain_recommended, v.status, v.reasons) == (False, "ok", [])


def test_verdict_retrains_on_sustained_performance_loss():
    v = verdict.station_verdict("s", _perf("s", CHUNKS[1:], CHUNKS), NO_DRIFT, NO_DRIFT,
                                NO_QUALITY)
    assert v.retrain_recommended and v.status == "degraded"
    assert "2001-07-09" in v.reasons[0] and "retrain" in v.reasons[0]
    other = verdict.station_verdict("t", _perf("s", CHUNKS[1:], CHUNKS), NO_DRIFT, NO_DRIFT,
                                    NO_QUALITY)
    assert not other.retrain_recommended  # alerts belong to their station


def test_a_broken_cloud_sensor_explains_the_performance_loss():
    quality = pd.DataFrame([{"station_id": "s", "sensor": "opaque_cloud_tenths",
                             "chunk": "2001-07-16", "kind": "stuck", "value": 200.0,
                             "threshold": 120.0, "detail": "stuck at 10 for 200 h"}])
    v = verdict.station_verdict("s", _perf("s", CHUNKS[1:], CHUNKS), NO_DRIFT, NO_DRIFT,
                                quality)
    assert not v.retrain_recommended and v.status == "data_quality"
    assert "opaque_cloud_tenths" in v.reasons[0] and "2001-07-16" in v.reasons[0]
    # a broken pressure sensor does not explain it
    quality["sensor"] = "pressure_hpa"
    v = verdict.station_verdict("s", _perf("s", CHUNKS[1:], CHUNKS), NO_DRIFT, NO_DRIFT,
                                quality)
    assert v.retrain_recommended


def test_drift_alone_is_an_early_warning_and_a_broken_sensor_explains_it():
    drift = pd.DataFrame([{"station_id": "s", "chunk": c, "feature": "temp_change_3h",
                           "distance": 0.5, "threshold": 0.3, "above": True, "alert": True}
                          for c in CHUNKS])
    v = verdict.station_verdict("s", _perf("s", [], CHUNKS), drift, NO_DRIFT, NO_QUALITY)
    assert not v.retrain_recommended and v.status == "drift"
    assert "temp_change_3h" in v.reasons[0]
    quality = pd.DataFrame([{"station_id": "s", "sensor": "temp_air_c", "chunk": CHUNKS[0],
                             "kind": "missing", "value": 0.9, "threshold": 0.2,
                             "detail": "90% of hours missing"}])
    v = verdict.station_verdict("s", _perf("s", [], CHUNKS), drift, NO_DRIFT, quality)
    assert v.status == "data_quality" and len(v.reasons) == 1


# ------------------------------------------------------------------- real station traffic

def test_empty_snapshot_says_no_traffic(tmp_path, reference, settings):
    production = reference_period.load_production(tmp_path)
    assert production.empty
    summary = run(production, reference, settings).summary()
    assert summary["status"] == statistics.NO_TRAFFIC and not summary["retrain_recommended"]


def test_a_clean_year_raises_nothing(greensboro, bundle, reference, settings):
    result = run(simulate_production(greensboro, bundle, feedback_rate=0.2,
                                     feedback_error=0.1), reference, settings)
    summary = result.summary()
    assert summary["alerts"] == {"data_quality": [], "drift": [], "prediction_drift": [],
                                 "performance": []}, summary["reasons"]
    assert summary["status"] == "ok" and not summary["retrain_recommended"]
    assert summary["production"]["labelled_predictions"] > 30_000
    agreement = result.feedback
    assert agreement["feedback"].sum() > 300
    assert (agreement["agree_sensor"] * agreement["feedback"]).sum() / \
        agreement["feedback"].sum() == pytest.approx(0.9, abs=0.04)


def _faulty(greensboro, name, date, seed=3):
    fault = replay.FAULTS[name], pd.Timestamp(date, tz="UTC")
    return replay.apply_faults(greensboro, [fault], seed)


def test_stuck_cloud_sensor_raises_a_data_quality_alert(greensboro, bundle, reference,
                                                        settings):
    sent, world = _faulty(greensboro, "stuck-cloud-sensor", "2001-07-04")
    summary = run(simulate_production(sent, bundle, world, feedback_rate=0.2), reference,
                  settings).summary()
    stuck = [a for a in summary["alerts"]["data_quality"] if a["kind"] == "stuck"]
    assert {(a["station_id"], a["sensor"]) for a in stuck} == {
        ("greensboro_nc", "opaque_cloud_tenths")}
    assert stuck[0]["chunk"] == "2001-07-02"  # the week it froze in (Monday 2 July)
    # the run began when the sky last changed before the sensor froze
    since = pd.Timestamp(stuck[0]["detail"].rsplit("since ", 1)[1])
    assert pd.Timestamp("2001-07-01", tz="UTC") <= since <= pd.Timestamp("2001-07-04", tz="UTC")
    station = summary["stations"]["greensboro_nc"]
    assert station["status"] == "data_quality" and not station["retrain_recommended"]
    feedback = [a for a in summary["alerts"]["data_quality"] if a["kind"] == "feedback"]
    assert feedback, "users see the real sky and disagree with the frozen sensor"


@pytest.mark.parametrize("fault, feature", [("temperature-in-fahrenheit", "temp_air_c"),
                                            ("visibility-in-metres", "visibility_km")])
def test_a_unit_change_raises_a_drift_alert(greensboro, bundle, reference, settings, fault,
                                            feature):
    sent, _ = _faulty(greensboro, fault, "2001-10-01")
    # the one validation policy turns out-of-range values into missing ones, as the feed does
    sent[feature] = sent[feature].mask(sent[feature] > (60 if "temp" in feature else 200))
    summary = run(simulate_production(sent, bundle), reference, settings).summary()
    drifted = {a["feature"] for a in summary["alerts"]["drift"]}
    assert feature in drifted or any(feature.split("_")[0] in f for f in drifted)
    assert min(a["chunk"] for a in summary["alerts"]["drift"]) >= "2001-10-01"
    assert not summary["retrain_recommended"]


def test_a_clear_rate_shift_degrades_performance_and_recommends_retraining(
        greensboro, bundle, reference, settings):
    sent, world = _faulty(greensboro, "shift-clear-rate", "2001-07-02")
    result = run(simulate_production(sent, bundle, world), reference, settings)
    summary = result.summary()
    assert summary["retrain_recommended"]
    assert summary["stations"]["greensboro_nc"]["status"] == "degraded"
    perf = result.performance.set_index("chunk")
    before, after = perf.loc[:"2001-07-01", "brier"].mean(), perf.loc["2001-07-02":, "brier"]
    assert after.mean() > before + 0.02
    assert min(a["chunk"] for a in summary["alerts"]["performance"]) >= "2001-07-02"
    assert not summary["alerts"]["data_quality"]
