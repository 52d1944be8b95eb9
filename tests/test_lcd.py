"""NOAA LCD files (the `stations` stage's noaa-weather-hourly wheel) through the METAR
contract: the same cover, ceiling and hours as the raw METARs the files keep, in both of
NOAA's unit systems, in UTC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from starry_guide.ingest import lcd, metar, packaged
from tests.conftest import LCD_FILES


@pytest.fixture(scope="module")
def lcd_files(lcd_files, settings) -> dict[str, Path]:
    """The shared LCD files, and the manifest entry the stations stage wrote for them."""
    manifest = packaged.verify(settings.paths.packaged_dir)
    entry = manifest["sources"]["noaa-weather-hourly"]
    assert entry["version"] == settings.metar_stations.version
    assert entry["wheel_sha256"] == settings.metar_stations.sha256
    assert sorted(entry["files"]) == sorted(LCD_FILES.values())
    return lcd_files


@pytest.fixture(scope="module")
def converted(lcd_files) -> dict[str, metar.Conversion]:
    return {station: lcd.read_lcd(path) for station, path in lcd_files.items()}


@pytest.mark.parametrize("station, first, last, hours", [
    ("KATL", "2020-01-01T06:00Z", "2020-02-22T22:00Z", 1265),
    ("KLNK", "2023-01-01T07:00Z", "2023-02-26T20:00Z", 1358),
])
def test_lcd_hours_are_utc_one_per_hour(converted, station, first, last, hours):
    frame = converted[station].frame
    assert converted[station].rejected == []
    assert (frame["station_id"] == station).all() and len(frame) == hours
    assert frame["time"].iloc[0] == pd.Timestamp(first)  # 00:52 local standard time = 05:52Z
    assert frame["time"].iloc[-1] == pd.Timestamp(last)
    assert not frame["time"].duplicated().any()
    assert frame["precipitable_water_cm"].isna().all()


@pytest.mark.parametrize("station", ["KATL", "KLNK"])
def test_the_lcd_sky_and_the_raw_metar_give_the_same_hours(converted, station):
    frame = converted[station].frame
    # the raw METARs the file keeps, through the METAR path, month by month
    for month in sorted(set(frame["time"].dt.month)):
        part = frame[frame["time"].dt.month == month]
        until = (part["time"].max() + pd.Timedelta(hours=1)).to_pydatetime()
        raw = metar.convert_text([("rem", "\n".join(part["report"]))], until).frame
        both = part.merge(raw, on=["station_id", "time"], suffixes=("", "_metar"))
        assert len(both) >= len(part) - 2
        for column, tolerance in (("total_cloud_tenths", 1e-9), ("ceiling_m", 31.0),
                                  ("cloud_seen_to_m", 0.0), ("temp_air_c", 0.6),
                                  ("visibility_km", 0.05), ("wind_speed_ms", 0.3),
                                  ("pressure_hpa", 3.0)):
            a, b = both[column].to_numpy(float), both[f"{column}_metar"].to_numpy(float)
            same = np.isclose(a, b, atol=tolerance, rtol=0) | (np.isnan(a) & np.isnan(b))
            assert same.mean() > 0.99, (station, month, column, both.loc[~same, "report"]
                                        .head(3).tolist())


def test_an_automatic_clear_sky_is_flagged_and_never_gets_an_unlimited_ceiling(converted):
    lincoln = converted["KLNK"].frame
    clear = lincoln[lincoln["report"].str.contains(" CLR ")]
    assert len(clear) > 500
    assert (clear["total_cloud_tenths"] == 0).all()
    assert (clear["cloud_seen_to_m"] == metar.AUTOMATIC_LIMIT_M).all()
    assert clear["ceiling_m"].isna().all()
    # Atlanta's observers report cloud up to 25,000 ft: the whole sky, an unlimited ceiling
    atlanta = converted["KATL"].frame
    high = atlanta[atlanta["report"].str.contains(r" (?:FEW|SCT)250 ") &
                   ~atlanta["report"].str.contains(r" (?:BKN|OVC)\d{3}")]
    assert len(high) > 20 and (high["ceiling_m"] == 20000.0).all()
    assert high["cloud_seen_to_m"].isna().all()


def test_a_file_without_raw_metars_is_refused_with_the_remedy(lcd_files, tmp_path):
    frame = pd.read_csv(lcd_files["KATL"], dtype=str, low_memory=False).drop(columns=["REM"])
    stripped = tmp_path / "no_rem.csv"
    frame.head(50).to_csv(stripped, index=False)
    with pytest.raises(lcd.LcdError, match="columns REM are missing"):
        lcd.read_lcd(stripped)
