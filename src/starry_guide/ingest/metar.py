"""METAR/SPECI reports -> the canonical hourly frame (``core.schema.WEATHER_COLUMNS``).

The **contract** from a report to the model's inputs and labels (docs/metar.md shows it as a
table; ``tests/test_metar.py`` holds it to real reports):

* **Cover.** A layer's category becomes tenths of sky at the midpoint of its okta range
  (:data:`COVER_TENTHS`): FEW (1-2 oktas) 1.875, SCT (3-4) 4.375, BKN (5-7) 7.5, OVC (8) 10,
  VV (sky obscured) 10. The total cover is the largest layer amount. In the USA and Canada
  layer amounts are cumulative (a layer's amount includes every layer below it), so the
  largest is the sky's total; under ICAO rules each layer is reported on its own, so the
  largest is a lower bound (the layers' overlap is unknown, so they are not added).
* **What a report cannot see is unknown (NaN), never clear.** ``CAVOK`` and ``NSC`` say
  nothing about cloud above 1,500 m: the cover is unknown. ``/////`` cloud groups (the sensor
  could not tell) make the cover unknown unless a known layer is already OVC or VV. A report
  with no cloud group at all (a station without a ceilometer) has unknown cover.
* **Automatic sky sensors.** ``CLR`` (USA) and ``NCD`` (ICAO) come from a ceilometer that
  sees up to 12,000 ft (:data:`AUTOMATIC_LIMIT_M` = 3,650 m); so does every layer of a
  report marked ``AUTO``. Such a report gives cover 0 (``CLR``/``NCD``) or its layers, and
  ``cloud_seen_to_m`` = 3,650 flags it: cloud above that height — cirrus, mostly thin — is
  invisible to it. The flagged values are used as they are, for inputs and for labels (a
  label from a flagged hour means "clear below 3,650 m"); the ceiling above the limit is
  unknown (NaN), not unlimited. ``SKC`` (an observer saw a clear sky) is 0 with no limit.
* **Opaque cover.** METAR has no opacity: a reported layer is taken as opaque, so
  ``opaque_cloud_tenths`` = ``total_cloud_tenths`` (the label "clear" = total cover
  <= 2 tenths = nothing or FEW).
* **Ceiling.** The lowest BKN, OVC or VV layer (ft -> m); none, with the whole sky seen:
  unlimited (20,000 m); none, with the sky seen only up to a limit: unknown.
* **Units.** Visibility (statute miles or metres; ``9999``/``CAVOK`` = 10 km, ``P6SM`` = 6 SM)
  in km, capped at :data:`VISIBILITY_CAP_KM` (10 SM, the US reporting cap); temperature and
  dew point in degC (``M`` = minus); wind in m/s from kt, MPS or KMH (``VRB``: direction
  unknown; calm: 0 m/s and 0 deg, as station files record it); pressure: the altimeter
  setting (QNH in hPa, or ``A`` in inHg) reduced to station pressure through the standard
  atmosphere at the station's elevation (what the station files' ``pressure_hpa`` holds);
  relative humidity from temperature and dew point (Magnus formula, over water);
  precipitable water: never in a METAR, always NaN.
* **Which report stands for an hour.** The hour H:00 UTC is represented by a report from
  H-30 min to H+29 min: a routine METAR if there is one (the nearest to H:00), a SPECI only
  when no routine report falls in that window. A ``COR`` replaces the report it corrects
  (same station and time); repeated copies of a report (bulletins repeat them) count once.
  US routine reports at hh:51-hh:56 thus stand for the next full hour, as their synoptic
  meaning is.

The parser is python-metar (package ``metar``, BSD): pure Python, no dependencies, keeps the
sky codes ``CLR``, ``NSC``, ``NCD`` and ``VV`` layers, takes the month and year a report's
day belongs to, and names the groups it could not read (``strict=False``), which become notes
(and make the fields they could carry unknown). ``avwx-engine`` drops ``NCD``/``NSC``,
gives a NIL report a flight category and pulls in an HTTP client and geodesy packages;
``metar-taf-parser-mivek`` loses ``VV`` and ``NCD``. python-metar's own quirks are worked
around here: it calls every report ``AUTO`` and reads ``SKC`` as ``CLR`` (so ``AUTO``,
``COR``, ``CAVOK`` and the clear-sky codes are read from the report's own groups), and it
guesses the year from today (so the caller's reference date is passed in).

Station coordinates come from station tables that pinned packages ship: ``airportsdata``
(28,000 aerodromes by ICAO id: latitude, longitude, elevation; MIT), then, for ids it lacks,
NOAA's ICAO location list in the ``metar`` package (``nsd_cccc.txt``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from starry_guide.core.schema import UNLIMITED_CEILING_M, WEATHER_COLUMNS

#: tenths of sky per cover category: the midpoint of its okta range x 10/8
COVER_TENTHS: dict[str, float] = {"FEW": 1.875, "SCT": 4.375, "BKN": 7.5, "OVC": 10.0,
                                  "VV": 10.0}
#: categories that make a ceiling
CEILING_COVERS = ("BKN", "OVC", "VV")
#: an automatic ceilometer sees cloud up to 12,000 ft
AUTOMATIC_LIMIT_M = 3650.0
#: CAVOK / NSC: no (significant) cloud below 5,000 ft; nothing said above
CAVOK_LIMIT_M = 1500.0
#: 10 statute miles: the largest visibility US stations report (ICAO's 9999 is 10 km)
VISIBILITY_CAP_KM = 16.09
FEET_M = 0.3048
KNOT_MS = 1852.0 / 3600.0
#: a report's own window around the hour it stands for
HOUR_WINDOW = pd.Timedelta(minutes=30)

#: the extra columns of the observation CSV next to the canonical ones
EXTRA_COLUMNS = ["cloud_seen_to_m", "report_type", "report_time", "report"]


class MetarError(ValueError):
    """A METAR input cannot be converted; the message says what to fix."""


# --------------------------------------------------------------------------- splitting

#: WMO abbreviated heading: TTAAii CCCC YYGGgg [BBB]
WMO_HEADER = re.compile(r"^[A-Z]{4}\d{2}\s+[A-Z]{4}\s+\d{6}(\s+[A-Z]{3})?$")
#: a report begins: [METAR|SPECI] [COR] CCCC (ddhhmmZ | NIL)
REPORT_START = re.compile(
    r"^(?:(METAR|SPECI)\s+)?(?:(COR)\s+)?([A-Z][A-Z0-9]{3})\s+(\d{6}Z|NIL\b)")
#: lines that carry no report: sequence numbers, start/end of message, AFOS product ids
NOISE_LINE = re.compile(r"^(\d{3,5}|NNNN|ZCZC.*|TX_OPMET|\$)$")
#: an AFOS product id (``MTRCCR``) under a heading; inside a report such a group (``BKN250``)
#: continues it
AFOS_LINE = re.compile(r"^[A-Z]{3}[A-Z0-9]{3}$")
TYPE_LINE = re.compile(r"^(METAR|SPECI)(\s+\d{6}Z?)?$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class RawReport:
    """One report's text as found, with where it came from."""

    text: str
    kind: str          # METAR or SPECI
    source: str        # file:line
    bulletin: str = ""


@dataclass
class Rejection:
    source: str
    text: str
    reason: str


def split_reports(text: str, source: str = "<text>") -> tuple[list[RawReport], list[Rejection]]:
    """Cut raw METAR text or WMO bulletins into single reports.

    Handles WMO headings (``SAUS70 KWBC 011200 RRA``), sequence numbers, AFOS ids, a
    ``METAR``/``SPECI`` line that types the reports below it, reports broken across lines
    (a line that does not start a report continues the previous one), ``=`` terminators
    (several reports on one line), and text with one report per line and no terminator (the
    Aviation Weather Center's raw format). Lines that are neither: rejections.
    """
    reports: list[RawReport] = []
    junk: list[Rejection] = []
    kind = "METAR"
    bulletin = ""
    current: RawReport | None = None

    def close() -> None:
        nonlocal current
        if current is not None:
            current.text = " ".join(current.text.split())
            if current.text:
                reports.append(current)
        current = None

    for number, raw_line in enumerate(text.replace("\r", "\n").split("\n"), start=1):
        line = CONTROL.sub(" ", raw_line).strip()
        where = f"{source}:{number}"
        pieces = line.split("=")
        for i, piece in enumerate(pieces):
            piece = piece.strip()
            terminated = i < len(pieces) - 1
            if not piece:
                if terminated:
                    close()
                continue
            if WMO_HEADER.match(piece):
                close()
                bulletin = " ".join(piece.split())
                kind = "SPECI" if piece.startswith("SP") else "METAR"
            elif TYPE_LINE.match(piece):
                close()
                kind = piece.split()[0]
            elif NOISE_LINE.match(piece) or (current is None and AFOS_LINE.match(piece)):
                close()
            elif (start := REPORT_START.match(piece)) is not None:
                close()
                current = RawReport(piece, start.group(1) or kind, where, bulletin)
            elif current is not None:
                current.text += " " + piece
            else:
                junk.append(Rejection(where, piece[:80], "not part of a report (no station "
                                                       "id and time before it)"))
            if terminated:
                close()
    close()
    return reports, junk


# --------------------------------------------------------------------------- one report

#: cloud groups the sensor could not read (amount unknown)
UNKNOWN_SKY = re.compile(r"^(/{6}|/{3}\d{3}|/{3})(CB|TCU|/{3})?$")
CLOUD_LIKE = re.compile(r"^(FEW|SCT|BKN|OVC|VV|SKC|CLR|NSC|NCD|/{3})")
TIME_GROUP = re.compile(r"^(\d{2})(\d{2})(\d{2})Z$")


@dataclass(frozen=True)
class Sky:
    """What a report says about the sky, in the contract's terms."""

    total_tenths: float
    ceiling_m: float
    seen_to_m: float   # NaN: the whole sky


def _layer_tenths(cover: str) -> float:
    return COVER_TENTHS[cover]


def sky_from_groups(layers: list[tuple[str, float | None]], codes: set[str], *,
                    automatic: bool, cavok: bool, unreadable: bool) -> Sky:
    """The contract for cloud: layers ``(cover, base in m or None)`` and clear-sky codes.

    Pure; see the module docstring for the rules.
    """
    tenths = [_layer_tenths(c) for c, _ in layers if c in COVER_TENTHS]
    clear_auto = bool(codes & {"CLR", "NCD"})
    limit = AUTOMATIC_LIMIT_M if (automatic or clear_auto) else math.nan
    if cavok or "NSC" in codes:
        limit = CAVOK_LIMIT_M if not tenths else limit
    bases = [b for c, b in layers if c in CEILING_COVERS and b is not None]
    ceiling_layers = [c for c, _ in layers if c in CEILING_COVERS]
    if tenths and max(tenths) >= 10.0:
        total = 10.0  # overcast or obscured: nothing above changes it
    elif unreadable:
        total = math.nan
    elif tenths:
        total = max(tenths)
    elif clear_auto or "SKC" in codes:
        total = 0.0
    else:  # CAVOK, NSC, or no cloud group at all
        total = math.nan
    if bases:
        ceiling = min(bases)
    elif ceiling_layers:  # a ceiling layer whose height is unreadable
        ceiling = math.nan
    elif not math.isnan(total) and math.isnan(limit):
        ceiling = UNLIMITED_CEILING_M
    else:
        ceiling = math.nan
    return Sky(total, ceiling, limit)


def report_date(day: int, hour: int, minute: int, until: dt.datetime) -> dt.datetime | None:
    """The latest UTC time on or before ``until`` (+ 1 hour for clocks a little ahead) with
    this day of month (a report carries only its day); None when the day does not exist in
    the months tried."""
    limit = until + dt.timedelta(hours=1)
    year, month = limit.year, limit.month
    for _ in range(3):
        try:
            candidate = dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
        except ValueError:
            candidate = None
        if candidate is not None and candidate <= limit:
            return candidate
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return None


def station_pressure_hpa(qnh_hpa: float, elevation_m: float) -> float:
    """Station pressure from the altimeter setting (QNH) through the standard atmosphere
    (the relation altimeters are set by)."""
    return qnh_hpa * (1.0 - 2.25577e-5 * elevation_m) ** 5.25588


def relative_humidity(temp_c: float, dew_c: float) -> float:
    """Relative humidity (%) from temperature and dew point (Magnus, over water)."""
    if math.isnan(temp_c) or math.isnan(dew_c):
        return math.nan
    def vapour(t: float) -> float:
        return math.exp(17.625 * t / (243.04 + t))
    return float(min(100.0, 100.0 * vapour(dew_c) / vapour(temp_c)))


@dataclass
class Parsed:
    """One report decoded into the contract's fields."""

    station_id: str
    time: dt.datetime
    kind: str
    corrected: bool
    values: dict[str, float]
    seen_to_m: float
    text: str
    source: str
    notes: list[str] = field(default_factory=list)


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def parse_report(raw: RawReport, until: dt.datetime, elevation_m: float | None
                 ) -> Parsed | Rejection:
    """Decode one report with python-metar and map it through the contract.

    ``until``: the latest date the report can be from (its month and year). ``elevation_m``:
    the station's, for station pressure (None: pressure unknown).
    """
    from metar import Metar

    text = raw.text
    tokens = text.split()
    if tokens and tokens[0] in ("METAR", "SPECI"):
        tokens = tokens[1:]
    corrected = bool(tokens) and tokens[0] == "COR"
    if corrected:
        tokens = tokens[1:]
    if len(tokens) < 2:
        return Rejection(raw.source, text[:80], "too short: no station id and time")
    station_id = tokens[0]
    if tokens[1] == "NIL":
        return Rejection(raw.source, text[:80], f"NIL: {station_id} sent no report")
    time_match = TIME_GROUP.match(tokens[1])
    if time_match is None:
        return Rejection(raw.source, text[:80], f"no ddhhmmZ time group ({tokens[1]!r})")
    day, hour, minute = (int(g) for g in time_match.groups())
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59):
        return Rejection(raw.source, text[:80], f"time group {tokens[1]} is not a valid "
                                               "day/hour/minute")
    when = report_date(day, hour, minute, until)
    if when is None:
        return Rejection(raw.source, text[:80], f"day {day} does not exist in the months "
                                               f"up to {until.date()}")
    body = tokens[:tokens.index("RMK")] if "RMK" in tokens else tokens
    body = body[:next((i for i, t in enumerate(body) if t in ("NOSIG", "TEMPO", "BECMG")),
                      len(body))]
    corrected = corrected or "COR" in body[2:4]
    automatic = "AUTO" in body
    cavok = "CAVOK" in body
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decoded = Metar.Metar(" ".join(body), month=when.month, year=when.year,
                                  strict=False)
        except Exception as exc:  # noqa: BLE001 - the parser's own failures become reasons
            return Rejection(raw.source, text[:80], f"the parser failed: {exc}".splitlines()[0])
    unparsed = []
    for warning in caught:
        found = re.search(r"Unparsed groups in body '([^']*)'", str(warning.message))
        if found:
            unparsed += found.group(1).split()
    notes = [f"unreadable groups: {' '.join(unparsed)}"] if unparsed else []
    sky_unreadable = any(UNKNOWN_SKY.match(t) for t in body[2:]) or any(
        CLOUD_LIKE.match(t) for t in unparsed)
    layers = []
    # the clear-sky codes come from the report's own groups: python-metar reads SKC as CLR
    codes = {t for t in body[2:] if t in ("SKC", "CLR", "NSC", "NCD")}
    for cover, height, _ in decoded.sky:
        if cover in COVER_TENTHS:
            base = None if height is None else float(height.value("FT")) * FEET_M
            layers.append((cover, base))
    sky = sky_from_groups(layers, codes, automatic=automatic, cavok=cavok,
                          unreadable=sky_unreadable)
    if decoded.temp is None and decoded.vis is None and decoded.wind_speed is None \
            and not layers and not codes and not cavok and math.isnan(sky.total_tenths) \
            and decoded.press is None:
        return Rejection(raw.source, text[:80], "nothing readable in the report" +
                         (f" ({notes[0]})" if notes else ""))
    temp = _nan(decoded.temp.value("C")) if decoded.temp is not None else math.nan
    dew = _nan(decoded.dewpt.value("C")) if decoded.dewpt is not None else math.nan
    if decoded.vis is not None:
        visibility = min(float(decoded.vis.value("KM")), VISIBILITY_CAP_KM)
    elif cavok:
        visibility = 10.0
    else:
        visibility = math.nan
    speed = _nan(decoded.wind_speed.value("MPS")) if decoded.wind_speed is not None \
        else math.nan
    direction = (float(decoded.wind_dir.value()) if decoded.wind_dir is not None
                 else (0.0 if speed == 0.0 else math.nan))
    pressure = math.nan
    if decoded.press is not None and elevation_m is not None:
        pressure = station_pressure_hpa(float(decoded.press.value("HPA")), elevation_m)
    values = {
        "total_cloud_tenths": sky.total_tenths,
        "opaque_cloud_tenths": sky.total_tenths,
        "temp_air_c": temp,
        "temp_dew_c": dew,
        "relative_humidity": relative_humidity(temp, dew),
        "pressure_hpa": pressure,
        "wind_speed_ms": speed,
        "wind_direction_deg": direction,
        "visibility_km": visibility,
        "ceiling_m": sky.ceiling_m,
        "precipitable_water_cm": math.nan,
    }
    return Parsed(station_id, when, raw.kind if raw.kind in ("METAR", "SPECI") else "METAR",
                  corrected, values, sky.seen_to_m, text, raw.source, notes)


# --------------------------------------------------------------------------- stations


@dataclass(frozen=True)
class StationPlace:
    station_id: str
    name: str
    latitude: float
    longitude: float
    elevation_m: float | None


def _degrees(text: str) -> float | None:
    """``33-37-47N`` / ``09-25S`` -> signed decimal degrees."""
    match = re.match(r"^(\d+)-(\d+)(?:-(\d+))?([NSEW])$", text.strip())
    if match is None:
        return None
    degrees, minutes, seconds, hemisphere = match.groups()
    value = int(degrees) + int(minutes) / 60 + int(seconds or 0) / 3600
    return -value if hemisphere in "SW" else value


def _airportsdata() -> dict[str, StationPlace]:
    """ICAO id -> place from ``airportsdata`` (elevation in feet)."""
    import csv
    import io

    text = resources.files("airportsdata").joinpath("airports.csv").read_text(encoding="utf-8")
    table = {}
    for row in csv.DictReader(io.StringIO(text)):
        try:
            latitude, longitude = float(row["lat"]), float(row["lon"])
        except (TypeError, ValueError):
            continue
        try:
            elevation = float(row["elevation"]) * FEET_M
        except (TypeError, ValueError):
            elevation = None
        name = ", ".join(p for p in (row["name"], row["city"], row["country"]) if p)
        table[row["icao"]] = StationPlace(row["icao"], name, latitude, longitude, elevation)
    return table


def _nsd_cccc() -> dict[str, StationPlace]:
    """ICAO id -> place from the ``metar`` package's ``nsd_cccc.txt`` (NOAA's list)."""
    text = resources.files("metar").joinpath("nsd_cccc.txt").read_text(encoding="latin-1")
    table = {}
    for line in text.splitlines():
        fields = line.split(";")
        if len(fields) < 12:
            continue
        latitude, longitude = _degrees(fields[7]), _degrees(fields[8])
        if latitude is None or longitude is None:
            continue
        try:
            elevation = float(fields[11])
        except ValueError:
            elevation = None
        name = ", ".join(p for p in (fields[3], fields[4], fields[5]) if p)
        table[fields[0]] = StationPlace(fields[0], name, latitude, longitude, elevation)
    return table


@lru_cache(maxsize=1)
def station_table() -> dict[str, StationPlace]:
    """ICAO id -> place: the pinned ``airportsdata`` table (28,000 aerodromes, MIT), then
    for ids it lacks NOAA's station list shipped in the pinned ``metar`` package."""
    return {**_nsd_cccc(), **_airportsdata()}


# --------------------------------------------------------------------------- to hours


@dataclass
class Conversion:
    """The hourly frame and what was left out, with reasons."""

    frame: pd.DataFrame
    rejected: list[Rejection]
    reports: int
    notes: list[Rejection] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Rejection reasons (their first words) -> count."""
        counts: dict[str, int] = {}
        for r in self.rejected:
            key = r.reason.split(":")[0] if ":" in r.reason else r.reason
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def parse_all(raws: Iterable[RawReport], until: dt.datetime,
              places: dict[str, StationPlace] | None = None
              ) -> tuple[list[Parsed], list[Rejection], list[Rejection]]:
    """Decode every report; reports of stations missing from the table are rejected."""
    places = station_table() if places is None else places
    parsed, rejected, notes = [], [], []
    for raw in raws:
        head = REPORT_START.match(raw.text)
        station_id = head.group(3) if head else ""
        place = places.get(station_id)
        if head is not None and head.group(4) != "NIL" and place is None:
            rejected.append(Rejection(raw.source, raw.text[:80],
                                      f"station unknown: {station_id} is in neither station "
                                      "table (airportsdata, metar's nsd_cccc.txt)"))
            continue
        result = parse_report(raw, until, None if place is None else place.elevation_m)
        if isinstance(result, Rejection):
            rejected.append(result)
        else:
            parsed.append(result)
            notes += [Rejection(result.source, result.text[:80], n) for n in result.notes]
    return parsed, rejected, notes


def to_hourly(parsed: list[Parsed], places: dict[str, StationPlace] | None = None
              ) -> pd.DataFrame:
    """One row per station and UTC hour: the report that stands for it (module docstring).

    Columns: station_id, time, latitude, longitude, elevation_m, the canonical weather
    columns, and :data:`EXTRA_COLUMNS`.
    """
    places = station_table() if places is None else places
    columns = ["station_id", "time", "latitude", "longitude", "elevation_m",
               *WEATHER_COLUMNS, *EXTRA_COLUMNS]
    if not parsed:
        return pd.DataFrame(columns=columns)
    # a COR replaces the report it corrects; identical copies count once
    latest: dict[tuple[str, dt.datetime, str], Parsed] = {}
    for p in parsed:
        key = (p.station_id, p.time, p.kind)
        if key not in latest or p.corrected or not latest[key].corrected:
            latest[key] = p
    rows = []
    for p in latest.values():
        hour = pd.Timestamp(p.time).round("h") if p.time.minute != 30 else \
            pd.Timestamp(p.time).ceil("h")
        rows.append({"station_id": p.station_id, "hour": hour,
                     "routine": p.kind == "METAR",
                     "distance": abs((pd.Timestamp(p.time) - hour).total_seconds()),
                     "report_time": pd.Timestamp(p.time), "report_type": p.kind,
                     "report": p.text, "cloud_seen_to_m": p.seen_to_m, **p.values})
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["station_id", "hour", "routine", "distance", "report_time"],
                              ascending=[True, True, False, True, False])
    frame = frame.drop_duplicates(["station_id", "hour"], keep="first")
    frame = frame.rename(columns={"hour": "time"}).reset_index(drop=True)
    frame["latitude"] = [places[s].latitude for s in frame["station_id"]]
    frame["longitude"] = [places[s].longitude for s in frame["station_id"]]
    frame["elevation_m"] = [np.nan if places[s].elevation_m is None else places[s].elevation_m
                            for s in frame["station_id"]]
    return frame[columns]


def convert_text(texts: Iterable[tuple[str, str]], until: dt.datetime) -> Conversion:
    """``(source name, text)`` pairs of METAR text or WMO bulletins -> the hourly frame."""
    raws: list[RawReport] = []
    junk: list[Rejection] = []
    for source, text in texts:
        found, rest = split_reports(text, source)
        raws += found
        junk += rest
    parsed, rejected, notes = parse_all(raws, until)
    return Conversion(to_hourly(parsed), junk + rejected, len(raws), notes)


def write_observations(frame: pd.DataFrame, path) -> None:
    """The observation CSV (``starry score`` reads it): ISO times, NaN as empty cells."""
    out = frame.copy()
    for column in ("time", "report_time"):
        out[column] = pd.to_datetime(out[column], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False, float_format="%.6g")
