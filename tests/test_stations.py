import numpy as np
import pandas as pd
import pytest

from starry_guide.core import schema
from starry_guide.ingest import stations


def test_each_builtin_station_is_one_hourly_utc_year(station_data):
    for data in station_data.values():
        frame = data.frame
        assert len(frame) == 8760
        assert str(frame["time"].dt.tz) == "UTC"
        assert (frame["time"].diff().dropna() == pd.Timedelta(hours=1)).all()
        assert list(frame.columns) == [*schema.ID_COLUMNS, *schema.WEATHER_COLUMNS,
                                       schema.LABEL_ORIGIN]
        assert sorted(frame["segment"].unique()) == list(range(1, 13))


def test_local_standard_time_becomes_utc(station_data):
    # Greensboro is UTC-5: its first record (hour ending 01:00 local, 1 Jan) is 06:00 UTC
    first = station_data["greensboro_nc"].frame["time"].iloc[0]
    assert first == pd.Timestamp("2001-01-01 06:00", tz="UTC")
    # Sand Point is UTC-9
    assert station_data["sand_point_ak"].frame["time"].iloc[0] == \
        pd.Timestamp("2001-01-01 10:00", tz="UTC")


def test_tmy2_tenths_are_converted(station_data):
    miami = station_data["miami_fl"].frame
    # Miami: air temperature in degC (TMY2 stores tenths), winds in m/s, visibility in km
    assert 20 < miami["temp_air_c"].mean() < 28
    assert miami["wind_speed_ms"].max() < 30
    assert miami["visibility_km"].max() < 200
    assert 1 < miami["precipitable_water_cm"].mean() < 6


def test_sentinels_become_missing_and_are_counted(station_data):
    sand_point = station_data["sand_point_ak"]
    assert sand_point.frame["visibility_km"].isna().sum() > 0
    assert (sand_point.frame["visibility_km"].dropna() >= 0).all()
    counted = {r["column"]: r["count"] for r in sand_point.repairs if "missing" in r["rule"]}
    assert counted["visibility_km"] == sand_point.frame["visibility_km"].isna().sum()


def test_unlimited_ceiling_is_a_high_value_not_missing(station_data):
    ceiling = station_data["greensboro_nc"].frame["ceiling_m"]
    assert (ceiling == stations.UNLIMITED_CEILING_M).sum() > 1000
    assert ceiling.max() <= 30000


def test_segments_follow_the_source_month(station_data):
    frame = station_data["greensboro_nc"].frame
    local = frame["time"] + pd.Timedelta(hours=-5) - pd.Timedelta(hours=1)  # hour-ending
    assert (local.dt.month == frame["segment"]).all()


def test_unknown_station_names_params_and_remedy(tmp_path):
    with pytest.raises(stations.StationFileError, match=r"atlantis.*dvc add.*data\.stations"):
        stations.read_station("atlantis", tmp_path, 2001)


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.tm2"
    bad.write_text("not a TMY2 file\n")
    with pytest.raises(stations.StationFileError, match="broken.tm2"):
        stations.read_station("broken.tm2", tmp_path, 2001)


def test_unknown_suffix_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(stations.StationFileError, match=r"\.epw.*\.tm2.*\.csv"):
        stations.read_station("x.txt", tmp_path, 2001)


def test_values_are_floats(station_data):
    for data in station_data.values():
        for column in schema.WEATHER_COLUMNS:
            assert data.frame[column].dtype == np.float64
