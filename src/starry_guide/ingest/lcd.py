"""NOAA Local Climatological Data (LCD) files -> the canonical hourly frame, through the
METAR contract of :mod:`starry_guide.ingest.metar`.

An LCD file holds every report of one station: the routine (``FM-15``) and special
(``FM-16``) METARs, synoptic (``FM-12``) and daily/monthly summary rows. Its
``HourlySkyConditions`` column is the METAR sky decoded into layers — ``FEW:02 250``
(category : oktas, base in hundreds of feet), ``CLR:00``, ``VV:09 2`` — and its ``REM`` column
keeps each METAR's raw text (``MET...METAR KATL 010552Z ...``). ``DATE`` is local *standard*
time; the UTC offset is read from the raw METARs' own ``ddhhmmZ`` groups.

The cover categories go through the same contract (``metar.sky_from_groups``: the category,
not the okta digits, decides the tenths), and the hour rule is the same (``metar.to_hourly``).
Units: degF -> degC, inHg station pressure ->
hPa, statute miles -> km (capped as METAR visibility is), mph -> m/s; relative humidity as
the file gives it. NOAA publishes LCD in two unit systems (the older exports in US units,
the newer in metric: degC, hPa, km, m/s); a file's system is told by its station pressure
(about 20-31 in inHg, 600-1080 in hPa); layer bases are then in hundreds of metres, not
of feet.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pandas as pd

from starry_guide.ingest import metar

SKY_LAYER = re.compile(r"(FEW|SCT|BKN|OVC|VV|CLR|SKC|X):(\d{2})\s*(\d+(?:\.\d+)?)?")
REM_METAR = re.compile(r"(METAR|SPECI)\s+(?:COR\s+)?([A-Z][A-Z0-9]{3})\s+(\d{2})(\d{2})(\d{2})Z")
REPORT_KINDS = {"FM-15": "METAR", "FM-16": "SPECI"}
INHG_HPA = 33.8639
MPH_MS = 0.44704


class LcdError(ValueError):
    """The file is not a usable LCD file; the message says what to fix."""


def _number(text) -> float:
    """An LCD cell: ``51``, ``51s`` (suspect, kept), ``T`` (trace), ``*``/blank -> NaN."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return math.nan
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", str(text))
    return float(match.group(1)) if match else math.nan


def sky_layers(text, height_unit_m: float = 100 * metar.FEET_M
               ) -> tuple[list[tuple[str, float | None]], set[str], bool]:
    """``HourlySkyConditions`` -> (layers as ``(cover, base m)``, clear-sky codes, whether a
    layer was unreadable). ``height_unit_m``: hundreds of feet (US units) or of metres
    (metric exports)."""
    if not isinstance(text, str) or not text.strip():
        return [], set(), False
    layers, codes, unreadable = [], set(), False
    for cover, _, hundreds in SKY_LAYER.findall(text):
        if cover in ("CLR", "SKC"):
            codes.add(cover)
        elif cover == "X":
            unreadable = True
        else:
            base = float(hundreds) * height_unit_m if hundreds else None
            layers.append((cover, base))
    return layers, codes, unreadable


def _utc_offset(frame: pd.DataFrame, path: Path) -> dt.timedelta:
    """Local standard time - UTC, the most common difference between ``DATE`` and the raw
    METARs' own times."""
    differences = []
    for date, remark in zip(frame["DATE"], frame["REM"], strict=True):
        found = REM_METAR.search(str(remark))
        if not found:
            continue
        local = pd.Timestamp(date)
        day, hour, minute = (int(g) for g in found.groups()[2:])
        # the report's UTC time in the local date's month (across a month's end the
        # difference is about a month and is skipped)
        candidate = pd.Timestamp(local.year, local.month, 1) + pd.Timedelta(
            days=day - 1, hours=hour, minutes=minute)
        diff = (local.floor("min") - candidate).total_seconds() / 3600
        if abs(diff) < 24:
            differences.append(round(diff))
    if not differences:
        raise LcdError(f"{path}: no raw METAR in the REM column to tell local time from UTC; "
                       "use an LCD export that keeps the REM column")
    return dt.timedelta(hours=max(set(differences), key=differences.count))


def read_lcd(path: Path) -> metar.Conversion:
    """One LCD file -> the hourly frame (one row per UTC hour with a METAR or SPECI)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, low_memory=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LcdError(f"{path}: cannot read it as CSV ({exc})") from None
    needed = ["DATE", "REPORT_TYPE", "HourlySkyConditions", "REM"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise LcdError(f"{path}: not an LCD file with sky conditions: columns "
                       f"{', '.join(missing)} are missing")
    frame["REPORT_TYPE"] = frame["REPORT_TYPE"].str.strip()
    reports = frame[frame["REPORT_TYPE"].isin(list(REPORT_KINDS))].copy()
    offset = _utc_offset(reports, path)
    pressures = pd.Series([_number(v) for v in reports.get("HourlyStationPressure", [])])
    metric = bool(pressures.median() > 100) if pressures.notna().any() else False
    to_c = (lambda v: v) if metric else (lambda v: (v - 32.0) / 1.8)
    to_hpa, to_km, to_ms = (1.0, 1.0, 1.0) if metric else (INHG_HPA, 1.609344, MPH_MS)
    height_unit = 100.0 if metric else 100 * metar.FEET_M  # layer bases: hundreds of m or ft
    places = metar.station_table()
    parsed, rejected = [], []
    for index, row in reports.iterrows():
        source = f"{path.name}:{index + 2}"
        found = REM_METAR.search(str(row["REM"]))
        if found is None:
            rejected.append(metar.Rejection(source, str(row["HourlySkyConditions"])[:80],
                                            "no raw METAR in REM: station id unknown"))
            continue
        station_id = found.group(2)
        place = places.get(station_id)
        if place is None:
            rejected.append(metar.Rejection(source, station_id, f"station unknown: "
                                            f"{station_id} is in neither station table"))
            continue
        raw_text = str(row["REM"])[found.start():]
        tokens = raw_text.split()
        body = tokens[:tokens.index("RMK")] if "RMK" in tokens else tokens
        layers, codes, unreadable = sky_layers(row["HourlySkyConditions"], height_unit)
        sky = metar.sky_from_groups(layers, codes, automatic="AUTO" in body,
                                    cavok="CAVOK" in body, unreadable=unreadable)
        when = (pd.Timestamp(row["DATE"]) - pd.Timedelta(offset)).tz_localize("UTC")
        temp, dew = _number(row.get("HourlyDryBulbTemperature")), \
            _number(row.get("HourlyDewPointTemperature"))
        wind = _number(row.get("HourlyWindSpeed"))
        direction = _number(row.get("HourlyWindDirection"))
        visibility = _number(row.get("HourlyVisibility"))
        values = {
            "total_cloud_tenths": sky.total_tenths,
            "opaque_cloud_tenths": sky.total_tenths,
            "temp_air_c": to_c(temp),
            "temp_dew_c": to_c(dew),
            "relative_humidity": _number(row.get("HourlyRelativeHumidity")),
            "pressure_hpa": _number(row.get("HourlyStationPressure")) * to_hpa,
            "wind_speed_ms": wind * to_ms,
            "wind_direction_deg": 0.0 if wind == 0.0 and math.isnan(direction) else direction,
            "visibility_km": min(visibility * to_km, metar.VISIBILITY_CAP_KM),
            "ceiling_m": sky.ceiling_m,
            "precipitable_water_cm": math.nan,
        }
        if not layers and not codes and not unreadable:
            values["total_cloud_tenths"] = values["opaque_cloud_tenths"] = math.nan
        parsed.append(metar.Parsed(station_id, when.to_pydatetime(),
                                   REPORT_KINDS[row["REPORT_TYPE"]], False, values,
                                   sky.seen_to_m, " ".join(raw_text.split()), source))
    return metar.Conversion(metar.to_hourly(parsed, places), rejected, len(reports))
