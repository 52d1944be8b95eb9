import dataclasses

import pandas as pd
import pytest

from starry_guide import quality


def test_sand_point_pressure_is_stuck_and_dropped(station_data):
    frame, report = quality.assess(station_data["sand_point_ak"])
    assert frame["pressure_hpa"].isna().all()
    dropped = {d["column"]: d["reason"] for d in report.dropped_features}
    assert dropped == {"pressure_hpa": "stuck at 1012 for every hour"}
    assert report.verdict == "usable"


def test_clean_stations_keep_every_feature(station_data):
    for name in ("greensboro_nc", "miami_fl"):
        frame, report = quality.assess(station_data[name])
        assert report.dropped_features == []
        assert frame["pressure_hpa"].notna().all()


def _with_frame(data, frame):
    return dataclasses.replace(data, frame=frame, repairs=[])


def test_out_of_range_values_are_repaired_to_missing(station_data):
    data = station_data["greensboro_nc"]
    frame = data.frame.copy()
    frame.loc[5, "relative_humidity"] = 140.0
    cleaned, report = quality.assess(_with_frame(data, frame))
    assert pd.isna(cleaned.loc[5, "relative_humidity"])
    repair = next(r for r in report.repairs if r["column"] == "relative_humidity")
    assert repair["count"] == 1 and repair["example"] == 140.0


def test_no_cloud_cover_rejects_the_station_naming_file_and_field(station_data):
    data = station_data["miami_fl"]
    frame = data.frame.copy()
    frame["opaque_cloud_tenths"] = float("nan")
    with pytest.raises(quality.StationRejected, match=r"12839\.tm2.*opaque_cloud_tenths"):
        quality.assess(_with_frame(data, frame))


def test_constant_cloud_cover_rejects_the_station(station_data):
    data = station_data["miami_fl"]
    frame = data.frame.copy()
    frame["opaque_cloud_tenths"] = 0.0
    with pytest.raises(quality.StationRejected, match="for every hour"):
        quality.assess(_with_frame(data, frame))


def test_duplicated_hours_are_refused(station_data):
    data = station_data["greensboro_nc"]
    frame = pd.concat([data.frame, data.frame.iloc[[10]]], ignore_index=True)
    with pytest.raises(quality.StationRejected, match="duplicated hours"):
        quality.assess(_with_frame(data, frame))


def test_schema_accepts_assessed_frames(station_data):
    for data in station_data.values():
        quality.canonical_schema().validate(quality.assess(data)[0])


def test_schema_refuses_a_frame_out_of_time_order(station_data):
    frame = quality.assess(station_data["miami_fl"])[0].iloc[::-1]
    with pytest.raises(Exception, match="time is not increasing"):
        quality.canonical_schema().validate(frame)


def test_report_table_has_a_row_per_station(station_data):
    reports = [quality.assess(d)[1] for d in station_data.values()]
    table = quality.report_table(reports)
    assert list(table.index) == list(station_data)
    assert "pressure_hpa" in table.loc["sand_point_ak", "dropped features"]
