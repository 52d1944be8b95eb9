"""The METAR contract (docs/metar.md) on real reports only: WMO bulletins from about twenty
countries (MetPy's archive), Atlanta's and Lincoln's METARs and SPECIs (NOAA LCD), and
python-metar's own test reports. See tests/data/metar/README.md for where each came from."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from starry_guide.core.schema import UNLIMITED_CEILING_M, WEATHER_COLUMNS
from starry_guide.ingest import metar

DATA = Path(__file__).parent / "data" / "metar"
ROOT = Path(__file__).resolve().parents[1]
BULLETINS = DATA / "metpy_metar_20190701_1200_excerpt.txt"
BULLETIN_TIME = dt.datetime(2019, 7, 1, 12, tzinfo=dt.UTC)
STARRY = [sys.executable, "-m", "starry_guide.cli"]


@pytest.fixture(scope="module")
def bulletins() -> metar.Conversion:
    return metar.convert_text([(BULLETINS.name, BULLETINS.read_text())], BULLETIN_TIME)


@pytest.fixture(scope="module")
def by_station(bulletins) -> pd.DataFrame:
    return bulletins.frame.set_index("station_id")


def test_bulletins_from_many_countries_become_one_row_per_station_and_hour(bulletins):
    frame = bulletins.frame
    assert not frame.duplicated(["station_id", "time"]).any()
    assert (frame["time"] == pd.Timestamp("2019-07-01T12:00Z")).all()
    # stations of ~20 countries (the ICAO id's first letter is the region, two the country)
    assert frame["station_id"].str[:2].nunique() >= 15
    assert {"SBFZ", "LLBG", "LMML", "OJAM", "MROC", "KATW", "PAKU"} <= set(frame["station_id"])
    assert list(frame.columns[:5]) == ["station_id", "time", "latitude", "longitude",
                                       "elevation_m"]
    assert set(WEATHER_COLUMNS) <= set(frame.columns)
    assert frame["precipitable_water_cm"].isna().all()  # no METAR carries it


def test_every_report_is_either_converted_or_rejected_with_a_reason(bulletins):
    parsed_ids = set(bulletins.frame["station_id"])
    assert bulletins.reports == 155
    reasons = bulletins.summary()
    assert reasons == {"station unknown": 27, "NIL": 2}, reasons
    nil = [r for r in bulletins.rejected if r.reason.startswith("NIL")]
    assert {r.text for r in nil} == {"METAR HLLT NIL", "METAR HLLB NIL"}
    unknown = {r.text.split()[1] if r.text.startswith("METAR") else r.text.split()[0]
               for r in bulletins.rejected if r.reason.startswith("station unknown")}
    assert unknown.isdisjoint(parsed_ids) and "K0CO" in unknown


def test_reports_broken_across_lines_are_joined(by_station):
    # "PAKU ... BKN160 09/09" / "     A3002=": the altimeter on the next line still counts
    assert by_station.loc["PAKU", "pressure_hpa"] == pytest.approx(
        metar.station_pressure_hpa(30.02 * 33.8639, by_station.loc["PAKU", "elevation_m"]),
        abs=0.05)
    # "SBMO ... BKN080 24/22" / " Q1017="
    assert by_station.loc["SBMO", "pressure_hpa"] == pytest.approx(
        metar.station_pressure_hpa(1017, by_station.loc["SBMO", "elevation_m"]), abs=0.05)
    assert "RMK AO2 70103 T01800180" in by_station.loc["KRCX", "report"]


@pytest.mark.parametrize("station, total, ceiling, seen_to", [
    ("SBBV", 10.0, 7 * 100 * metar.FEET_M, math.nan),       # BKN007 BKN011 OVC100
    ("SBAR", 7.5, 70 * 100 * metar.FEET_M, math.nan),        # SCT015 BKN070
    ("SBFZ", 4.375, UNLIMITED_CEILING_M, math.nan),          # SCT020 SCT070, observer
    ("LMML", 1.875, UNLIMITED_CEILING_M, math.nan),          # FEW016
    ("KADS", 0.0, UNLIMITED_CEILING_M, math.nan),            # SKC: an observer saw it clear
    ("KASG", 0.0, math.nan, metar.AUTOMATIC_LIMIT_M),        # CLR: nothing below 12,000 ft
    ("KRCX", 10.0, 110 * 100 * metar.FEET_M, metar.AUTOMATIC_LIMIT_M),  # AUTO OVC110
    ("KRPD", 7.5, 120 * 100 * metar.FEET_M, metar.AUTOMATIC_LIMIT_M),   # AUTO SCT050 BKN120
    ("OSDI", math.nan, math.nan, metar.CAVOK_LIMIT_M),       # CAVOK: unknown, never 0
    ("MROC", math.nan, math.nan, metar.CAVOK_LIMIT_M),       # CAVOK
    ("EFOU", math.nan, math.nan, metar.CAVOK_LIMIT_M),       # AUTO CAVOK
    ("KSNT", math.nan, math.nan, metar.AUTOMATIC_LIMIT_M),   # no cloud group at all
])
def test_the_cloud_contract_on_real_reports(by_station, station, total, ceiling, seen_to):
    row = by_station.loc[station]
    for column, expected in (("total_cloud_tenths", total), ("opaque_cloud_tenths", total),
                             ("ceiling_m", ceiling), ("cloud_seen_to_m", seen_to)):
        if math.isnan(expected):
            assert math.isnan(row[column]), (station, column, row[column], row["report"])
        else:
            assert row[column] == pytest.approx(expected), (station, column, row["report"])


def test_cavok_never_becomes_a_clear_sky(by_station):
    cavok = by_station[by_station["report"].str.contains(" CAVOK ")]
    assert len(cavok) >= 8
    assert cavok["total_cloud_tenths"].isna().all()
    assert cavok["opaque_cloud_tenths"].isna().all()
    assert (cavok["visibility_km"] == 10.0).all()  # CAVOK: visibility 10 km or more


def test_units(by_station):
    assert by_station.loc["OSKL", "temp_dew_c"] == -4.0                     # 36/M04
    assert by_station.loc["KATW", "visibility_km"] == pytest.approx(16.09)  # 10SM
    assert by_station.loc["KCGF", "visibility_km"] == pytest.approx(16.09)  # 20SM: capped
    assert by_station.loc["KTIX", "visibility_km"] == pytest.approx(7 * 1.609344)
    assert by_station.loc["OJAM", "visibility_km"] == pytest.approx(5.0)    # 5000 m
    assert by_station.loc["LLBG", "visibility_km"] == pytest.approx(10.0)   # 9999
    assert by_station.loc["SBNT", "wind_speed_ms"] == pytest.approx(14 * 1852 / 3600)
    assert by_station.loc["SBNT", "wind_direction_deg"] == 110
    assert math.isnan(by_station.loc["OAMS", "wind_direction_deg"])        # VRB02KT
    assert by_station.loc["KBAK", "wind_speed_ms"] == 0 and \
        by_station.loc["KBAK", "wind_direction_deg"] == 0                  # calm
    assert math.isnan(by_station.loc["SVMG", "wind_speed_ms"])             # /////KT
    # QNH 1026 hPa at Guatemala City (1,500 m): station pressure near 860 hPa
    assert 850 < by_station.loc["MGGT", "pressure_hpa"] < 865
    assert by_station.loc["MGGT", "relative_humidity"] == pytest.approx(
        metar.relative_humidity(17.0, 16.0))
    assert 93 < by_station.loc["MGGT", "relative_humidity"] < 95


def test_python_metar_s_own_test_reports_never_crash_the_conversion():
    text = (DATA / "python_metar_test_reports.txt").read_text()
    converted = metar.convert_text([("python-metar", text)], dt.datetime(2026, 11, 30,
                                                                         tzinfo=dt.UTC))
    lines = [line for line in text.splitlines() if line.strip()]
    assert converted.reports == len(lines)
    kept = len(metar.to_hourly(metar.parse_all(
        metar.split_reports(text)[0], dt.datetime(2026, 11, 30, tzinfo=dt.UTC))[0]))
    assert kept == len(converted.frame)
    # cut-short reports with nothing usable are rejected, with the reason
    nothing = [r for r in converted.rejected if r.reason == "nothing readable in the report"]
    assert {r.text for r in nothing} >= {"KEWR 101651Z", "METAR EFHK 151350Z WS RWY22L"}
    # a report whose sky groups are "/////////" has unknown cover, not clear
    fsia = converted.frame.set_index("station_id").loc["FSIA"]
    assert math.isnan(fsia["total_cloud_tenths"]) and fsia["temp_air_c"] == 27.0
    # a group the parser cannot read makes its field unknown and is reported
    notes = {r.text.split()[1]: r.reason for r in converted.notes}
    assert "201/16" in notes["EDDM"]
    assert math.isnan(converted.frame.set_index("station_id").loc["EDDM", "temp_air_c"])


@pytest.fixture(scope="module")
def atlanta() -> tuple[str, metar.Conversion]:
    text = (DATA / "katl_2020-01-01_10_lcd_rem.txt").read_text()
    return text, metar.convert_text([("katl", text)], dt.datetime(2020, 1, 11, tzinfo=dt.UTC))


def test_the_routine_report_stands_for_its_hour_and_a_speci_only_when_none(atlanta):
    text, converted = atlanta
    frame = converted.frame.set_index("time")
    assert converted.rejected == []
    specials = [line for line in text.splitlines() if line.startswith("SPECI")]
    assert len(specials) == 57
    # 2 Jan: a SPECI at 13:14 and the routine report at 12:52 -> 13:00 is the routine one
    assert "SPECI KATL 021314Z" in text
    assert frame.loc[pd.Timestamp("2020-01-02T13:00Z"), "report"].startswith(
        "METAR KATL 021252Z")
    # every routine report at :52 stands for the next full hour, one row per hour
    routine = [line for line in text.splitlines() if line.startswith("METAR")]
    assert (frame["report_type"] == "METAR").sum() == len(routine)
    hours_with_only_speci = frame[frame["report_type"] == "SPECI"]
    for when, row in hours_with_only_speci.iterrows():
        assert abs(row["report_time"] - when) <= pd.Timedelta(minutes=30)
        assert not (frame.loc[[when], "report_type"] == "METAR").any()


def test_vertical_visibility_is_an_overcast_sky_with_its_ceiling(atlanta):
    _, converted = atlanta
    vv = converted.frame[converted.frame["report"].str.contains(r" VV\d{3} ")]
    assert len(vv) >= 5
    assert (vv["total_cloud_tenths"] == 10.0).all()
    heights = vv["report"].str.extract(r" VV(\d{3}) ")[0].astype(float) * 100 * metar.FEET_M
    assert (vv["ceiling_m"].to_numpy() == pytest.approx(heights.to_numpy()))


def test_a_correction_replaces_the_report_it_corrects():
    # python-metar's own test reports hold KPIT 091955Z twice, both COR: one row
    raw = metar.split_reports((DATA / "python_metar_test_reports.txt").read_text())[0]
    parsed, _, _ = metar.parse_all(raw, dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    kpit = [p for p in parsed if p.station_id == "KPIT"]
    assert len(kpit) == 2 and all(p.corrected for p in kpit)
    hourly = metar.to_hourly(parsed)
    assert (hourly["station_id"] == "KPIT").sum() == 1


def test_a_report_s_day_belongs_to_the_latest_month_it_can(atlanta):
    until = dt.datetime(2019, 7, 2, 6, tzinfo=dt.UTC)
    assert metar.report_date(30, 23, 52, until) == dt.datetime(2019, 6, 30, 23, 52,
                                                               tzinfo=dt.UTC)
    assert metar.report_date(1, 11, 55, until) == dt.datetime(2019, 7, 1, 11, 55, tzinfo=dt.UTC)
    assert metar.report_date(31, 0, 0, dt.datetime(2019, 3, 2, tzinfo=dt.UTC)) == \
        dt.datetime(2019, 1, 31, tzinfo=dt.UTC)  # no 31 February


def test_convert_cli_writes_the_csv_that_starry_score_reads(tmp_path):
    out = tmp_path / "obs.csv"
    result = subprocess.run(
        [*STARRY, "metar", "convert", str(BULLETINS), str(DATA / "katl_2020-01-01_10_lcd_rem.txt"),
         "--until", "2020-01-11", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NIL: HLLT sent no report" in result.stderr
    assert "station unknown" in result.stderr and "Traceback" not in result.stderr
    frame = pd.read_csv(out)
    assert {"station_id", "time", "latitude", "longitude", "elevation_m",
            *WEATHER_COLUMNS, "cloud_seen_to_m"} <= set(frame.columns)
    katl = frame[frame["station_id"] == "KATL"]
    assert len(katl) == 240 and katl["latitude"].iloc[0] == pytest.approx(33.64, abs=0.01)
    # --until 2020-01-11 puts the 1 July bulletins in... December 2019 (day 1 <= 11 Jan):
    # the reference date decides the month, as documented
    assert (frame.loc[frame["station_id"] == "SBFZ", "time"] == "2020-01-01T12:00:00Z").all()
    scores = tmp_path / "scores.csv"
    scored = subprocess.run([*STARRY, "score", str(out), str(scores), "--on-bad-rows", "skip"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    assert "KATL" in set(pd.read_csv(scores)["station_id"])


@pytest.mark.parametrize("content, message", [
    ("", "no usable report"),
    ("SAUS70 KWBC 011200\nMETAR\nHLLT NIL=\n", "no usable report"),
    ("\x00\x01\x02 binary junk \xff", "no usable report"),
])
def test_convert_cli_says_when_nothing_is_usable_and_keeps_the_old_output(tmp_path, content,
                                                                          message):
    source = tmp_path / "in.txt"
    source.write_text(content, errors="replace")
    out = tmp_path / "obs.csv"
    out.write_text("previous\n")
    result = subprocess.run([*STARRY, "metar", "convert", str(source), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == "previous\n"


def test_convert_cli_names_a_missing_file_and_a_bad_date(tmp_path):
    missing = subprocess.run([*STARRY, "metar", "convert", str(tmp_path / "nope.txt"), "--out",
                              str(tmp_path / "o.csv")], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1 and "nope.txt: no such file" in missing.stderr
    bad = subprocess.run([*STARRY, "metar", "convert", str(BULLETINS), "--until", "July",
                          "--out", str(tmp_path / "o.csv")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "--until 'July' is not a date" in bad.stderr


def test_an_afos_id_under_a_heading_is_not_a_report_and_a_layer_group_line_continues_one():
    # a real answer of NOAA's text service, quoted in a public client's source: heading,
    # AFOS id, the report broken before its remarks' temperature group, no "=" terminator
    text = ("000\nSAUS70 KWBC 312200 RRQ\nMTRCCR\n"
            "METAR KCCR 312153Z 32003KT 10SM CLR 17/04 A3014 RMK AO2 SLP193\nT01720039\n")
    reports, junk = metar.split_reports(text)
    assert junk == [] and len(reports) == 1
    assert reports[0].text == ("METAR KCCR 312153Z 32003KT 10SM CLR 17/04 A3014 RMK AO2 SLP193 "
                               "T01720039")
    assert reports[0].bulletin == "SAUS70 KWBC 312200 RRQ"
    # the same report with its sky group alone on a line (as bulletins break long reports)
    broken = "METAR KCCR 312153Z 32003KT 10SM\nFEW250\n17/04 A3014 RMK AO2 SLP193="
    reports, _ = metar.split_reports(broken)
    assert len(reports) == 1 and "10SM FEW250 17/04" in reports[0].text
