"""Validation of station files: one crafted file per failure mode, made from real
observations; each asserts the verdict and that the message names the file and the field."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from starry_guide.core import quality
from starry_guide.ingest import stations
from tests.station_files import write_csv, write_epw


def check(path, settings):
    return stations.check_station(str(path), settings)


@pytest.fixture(scope="module")
def greensboro(station_data):
    data = station_data["greensboro_nc"]
    return data.frame, data.meta


# --- the bundled stations ---------------------------------------------------------------

def test_bundled_stations_are_usable(station_data, settings):
    for entry in station_data:
        frame, report = stations.check_station(entry, settings)
        assert report.verdict == "usable", report.reasons
        assert report.usable_night_hours > 2000
        assert 0 < report.clear_sky_rate < 1


def test_sand_point_pressure_is_stuck_and_dropped(settings):
    frame, report = stations.check_station("sand_point_ak", settings)
    assert frame["pressure_hpa"].isna().all()
    assert {d["column"]: d["reason"] for d in report.dropped_features} == {
        "pressure_hpa": "stuck at 1012 for every hour"}
    assert report.verdict == "usable"


def test_schema_accepts_assessed_frames(observations):
    for _, frame in observations.groupby("station_id"):
        quality.canonical_schema().validate(frame)


def test_schema_refuses_a_frame_out_of_time_order(observations):
    frame = observations[observations["station_id"] == "miami_fl"].iloc[::-1]
    with pytest.raises(Exception, match="time is not increasing"):
        quality.canonical_schema().validate(frame)


# --- EPW files --------------------------------------------------------------------------

def test_a_clean_epw_reads_like_the_original(tmp_path, greensboro, settings, station_data):
    frame, meta = greensboro
    path = write_epw(tmp_path / "greensboro.epw", frame, meta)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable", report.reasons
    original, _ = stations.check_station("greensboro_nc", settings)
    pd.testing.assert_series_equal(cleaned["opaque_cloud_tenths"],
                                   original["opaque_cloud_tenths"])
    assert (cleaned["time"] == original["time"]).all()


def test_latin1_epw_is_decoded_and_noted(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "duesseldorf.epw", frame, meta, city="Düsseldorf",
                     encoding="latin-1")
    cleaned, report = check(path, settings)
    assert report.verdict == "usable"
    assert any("Latin-1" in r["rule"] for r in report.repairs)


def test_visibility_in_metres_is_converted(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "metres.epw", frame, meta, visibility_factor=1000.0)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable"
    rule = next(r for r in report.repairs if r["column"] == "visibility_km")
    assert "metres" in rule["rule"]
    assert cleaned["visibility_km"].max() == pytest.approx(frame["visibility_km"].max())


def test_opaque_cover_all_zero_is_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "satellite.epw", frame, meta,
                     opaque=pd.Series(0.0, index=frame.index))
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "satellite.epw" in report.reasons[0]
    assert "'opaque_cloud_tenths' is 0 for every hour" in report.reasons[0]


def test_truncated_epw_is_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "truncated.epw", frame, meta, rows=5000)
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "truncated.epw" in report.reasons[0] and "5000 hourly rows" in report.reasons[0]


def test_unreadable_file_is_rejected_with_the_readers_message(tmp_path, settings):
    path = tmp_path / "garbage.epw"
    path.write_text("LOCATION,Nowhere\nnot an epw\n")
    cleaned, report = check(path, settings)
    assert cleaned is None and report.verdict == "rejected"
    assert "garbage.epw" in report.reasons[0] and "EPW" in report.reasons[0]


def test_flipped_longitude_is_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "flipped.epw", frame, {**meta, "longitude": 79.95})
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "'timezone'" in report.reasons[0] and "sign flipped" in report.reasons[0]


# --- plain CSV --------------------------------------------------------------------------

def test_csv_station_is_usable_with_absent_features_dropped(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_csv(tmp_path / "backyard.csv", frame, meta)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable", report.reasons
    assert report.kind == "csv"
    dropped = {d["column"] for d in report.dropped_features}
    assert dropped == {"wind_direction_deg", "ceiling_m", "precipitable_water_cm"}
    assert cleaned["segment"].iloc[0] == 200101  # real months: yyyymm


def test_csv_gaps_are_filled_with_missing_hours(tmp_path, greensboro, settings):
    frame, meta = greensboro
    holey = frame.drop(index=range(100, 130))
    path = write_csv(tmp_path / "gaps.csv", holey, meta)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable"
    assert len(cleaned) == len(frame)
    assert next(r for r in report.repairs if r["column"] == "time")["count"] == 30
    assert cleaned["opaque_cloud_tenths"].iloc[100:130].isna().all()


def test_csv_duplicated_hours_are_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    doubled = pd.concat([frame, frame.iloc[[50]]]).sort_values("time", kind="stable")
    path = write_csv(tmp_path / "doubled.csv", doubled, meta)
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "doubled.csv" in report.reasons[0] and "'time'" in report.reasons[0]
    assert "duplicated" in report.reasons[0]


def test_non_hourly_csv_is_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    half_hourly = frame.copy()
    half_hourly["time"] = half_hourly["time"].iloc[0] + pd.to_timedelta(
        [30 * i for i in range(len(frame))], unit="min")
    path = write_csv(tmp_path / "halfhour.csv", half_hourly, meta)
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "halfhour.csv" in report.reasons[0] and "not hourly" in report.reasons[0]


def test_csv_without_cloud_cover_is_rejected(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_csv(tmp_path / "nocloud.csv", frame, meta, drop=("opaque_cloud_tenths",))
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "nocloud.csv" in report.reasons[0]
    assert "'opaque_cloud_tenths'" in report.reasons[0] and "no values" in report.reasons[0]


def test_csv_without_offset_is_refused(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_csv(tmp_path / "naive.csv", frame.head(2000), meta, offset="")
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "naive.csv" in report.reasons[0] and "no UTC offset" in report.reasons[0]


def test_short_csv_has_too_few_night_hours(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_csv(tmp_path / "week.csv", frame.head(24 * 7), meta)
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert "min_usable_night_hours" in report.reasons[0]


def test_out_of_range_values_are_repaired_to_missing(tmp_path, greensboro, settings):
    frame, meta = greensboro
    bad = frame.copy()
    bad.loc[5, "relative_humidity"] = 140.0
    bad.loc[6, "opaque_cloud_tenths"] = 14.0
    bad.loc[7, "temp_dew_c"] = bad.loc[7, "temp_air_c"] + 5
    path = write_csv(tmp_path / "ranges.csv", bad, meta)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable"
    assert pd.isna(cleaned.loc[5, "relative_humidity"])
    assert pd.isna(cleaned.loc[6, "opaque_cloud_tenths"])
    assert pd.isna(cleaned.loc[7, "temp_dew_c"])
    rules = {r["column"]: r for r in report.repairs}
    assert rules["relative_humidity"]["example"] == 140.0
    assert rules["temp_dew_c"]["count"] == 1


def test_pressure_in_pa_is_converted(tmp_path, greensboro, settings):
    frame, meta = greensboro
    pa = frame.assign(pressure_hpa=frame["pressure_hpa"] * 100)
    cleaned, report = check(write_csv(tmp_path / "pa.csv", pa, meta), settings)
    assert report.verdict == "usable"
    assert cleaned["pressure_hpa"].median() == pytest.approx(frame["pressure_hpa"].median())


def test_require_usable_lists_every_rejection(tmp_path, greensboro, settings):
    frame, meta = greensboro
    _, bad = check(write_csv(tmp_path / "nocloud.csv", frame, meta,
                             drop=("opaque_cloud_tenths",)), settings)
    _, good = stations.check_station("miami_fl", settings)
    quality.require_usable([good])
    with pytest.raises(quality.StationRejected, match="nocloud.csv"):
        quality.require_usable([good, bad])


def test_report_table_has_a_row_per_station(station_data, settings):
    reports = [stations.check_station(e, settings)[1] for e in station_data]
    table = quality.report_table(reports)
    assert list(table.index) == list(station_data)
    assert "pressure_hpa" in table.loc["sand_point_ak", "dropped features"]


def test_a_rejected_report_serialises(settings, tmp_path):
    _, report = stations.check_station("atlantis.epw", settings)
    assert dataclasses.asdict(report)["verdict"] == "rejected"
    assert report.as_dict()["reasons"]


# --- leap years, constant cover, unit quirks of packaged files -----------------------------

def _leap_year_frame(frame):
    """8784 real hours (Greensboro's year plus its first day again) stamped on 2020, a leap
    year: the file has a 29 February, as a real-year (AMY) record does."""
    hours = pd.concat([frame, frame.head(24)], ignore_index=True)
    hours["time"] = pd.date_range("2020-01-01 06:00", periods=len(hours), freq="h", tz="UTC")
    return hours


def test_a_leap_year_epw_is_ingested(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "year2020.epw", _leap_year_frame(frame), meta)
    assert len(path.read_text().splitlines()) == 8 + 8784
    cleaned, report = check(path, settings)
    assert report.verdict == "usable", report.reasons
    assert len(cleaned) == 8760
    rule = next(r for r in report.repairs if r["column"] == "time")
    assert rule["count"] == 24 and "29 February" in rule["rule"]
    # segments stay contiguous hours: February simply ends on the 28th
    for _, part in cleaned.groupby("segment"):
        assert (part["time"].diff().dropna() == pd.Timedelta(hours=1)).all()


def test_a_leap_year_csv_keeps_its_real_days(tmp_path, greensboro, settings):
    frame, meta = greensboro
    path = write_csv(tmp_path / "year2020.csv", _leap_year_frame(frame), meta)
    cleaned, report = check(path, settings)
    assert report.verdict == "usable", report.reasons
    assert len(cleaned) == 8784


def test_opaque_cover_all_missing_code_is_rejected_for_that_reason(tmp_path, greensboro,
                                                                    settings):
    frame, meta = greensboro
    path = write_epw(tmp_path / "no_clouds.epw", frame, meta,
                     opaque=pd.Series(99.0, index=frame.index))
    _, report = check(path, settings)
    assert report.verdict == "rejected"
    assert len(report.reasons) == 1
    assert "no_clouds.epw" in report.reasons[0]
    assert "'opaque_cloud_tenths'" in report.reasons[0]
    assert "missing code 99" in report.reasons[0]


def test_precipitable_water_ten_times_too_large_is_converted(tmp_path, greensboro, settings):
    frame, meta = greensboro
    wet = frame.assign(precipitable_water_cm=frame["precipitable_water_cm"] * 10)
    cleaned, report = check(write_epw(tmp_path / "tenths.epw", wet, meta), settings)
    assert report.verdict == "usable"
    assert any("10x too large" in r["rule"] for r in report.repairs)
    original = frame["precipitable_water_cm"].to_numpy()
    assert abs(cleaned["precipitable_water_cm"].median() - pd.Series(original).median()) < 0.1
