"""Station files -> one canonical hourly DataFrame.

Parsing is left to :mod:`pvlib.iotools`; this module maps each format's columns, units and
missing-value codes onto the canonical columns below, and stamps every row in UTC.

TMY files splice months taken from different years. Every record is mapped onto one
``reference_year`` and keeps the month it came from in ``segment``: features and labels are
only ever built inside one segment, so no row mixes two source years.
"""

from __future__ import annotations

import calendar
import io
from pathlib import Path

import pandas as pd
import pvlib

from starry_guide.config import Settings
from starry_guide.core.quality import QualityReport, assess
from starry_guide.core.schema import (
    BUILTIN_STATIONS,
    CIRROFORM_CEILING_M,
    LABEL_ORIGIN,
    TMY_OBSERVED_FLAG,
    UNLIMITED_CEILING_M,
    WEATHER_COLUMNS,
    BuiltinStation,
    StationData,
)


class StationFileError(ValueError):
    """A station file cannot be read; the message names file, field and remedy."""


def pvlib_data_dir() -> Path:
    return Path(pvlib.__file__).parent / "data"


def builtin_path(station: BuiltinStation, raw_dir: Path) -> Path:
    """Where a built-in station's file is read from: the ``stations`` stage's copy under
    ``raw_dir/packaged/ORIGIN/``. Before that stage ran, pvlib's own three files are read
    where pvlib installed them; the others need the stage."""
    path = raw_dir / "packaged" / station.origin / station.filename
    if path.is_file():
        return path
    if station.origin == "pvlib":
        return pvlib_data_dir() / station.filename
    raise StationFileError(
        f"station '{station.station_id}' ships in the {station.origin} package and has not "
        f"been fetched yet (looked for {path}); run `dvc repro stations` (or `dvc pull`)"
    )


def resolve_station(entry: str, raw_dir: Path) -> tuple[str, Path, str]:
    """Map a ``data.stations`` entry to ``(station_id, path, kind)``.

    A built-in id names a station of :data:`BUILTIN_STATIONS`; anything else is a file under
    ``raw_dir``.
    """
    if entry in BUILTIN_STATIONS:
        b = BUILTIN_STATIONS[entry]
        return b.station_id, builtin_path(b, raw_dir), b.kind
    path = (raw_dir / entry) if not Path(entry).is_absolute() else Path(entry)
    if not path.is_file():
        raise StationFileError(
            f"station '{entry}' is neither a built-in station ({', '.join(BUILTIN_STATIONS)}) "
            f"nor an existing file (looked for {path}). Put station files under data/raw/ "
            "(track them with `dvc add`) and list them in params.yaml 'data.stations'."
        )
    kind = _kind_from_suffix(path)
    station_id = path.stem.lower().replace(" ", "_")
    return station_id, path, kind


def _kind_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".epw":
        return "epw"
    if suffix == ".tm2":
        return "tmy2"
    if suffix == ".csv":
        # a TMY3 file opens with a metadata line, then its "Date (MM/DD/YYYY)" header;
        # a plain CSV (the documented schema) opens with its own header
        head = path.read_bytes()[:4096].decode("latin-1").splitlines()
        if len(head) > 1 and head[1].startswith("Date (MM/DD/YYYY)"):
            return "tmy3"
        return "csv"
    raise StationFileError(
        f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
        "use .epw (EnergyPlus), .tm2 (TMY2), or .csv (TMY3 or the plain CSV schema)"
    )


def _decode(path: Path, repairs: list[dict]) -> str:
    """The file's text: UTF-8 if it is, else Latin-1 (EPW files with e.g. German station
    names often are), recorded as a repair."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        repairs.append({"rule": f"not UTF-8 (byte {raw[exc.start]:#04x} at offset "
                                f"{exc.start}): read as Latin-1", "column": "(file)",
                        "count": 1})
        return raw.decode("latin-1")


def read_station(entry: str, raw_dir: Path, reference_year: int) -> StationData:
    """Read one ``data.stations`` entry into a :class:`StationData`."""
    station_id, path, kind = resolve_station(entry, raw_dir)
    reader = {"tmy3": _read_tmy3, "tmy2": _read_tmy2, "epw": _read_epw, "csv": _read_csv}[kind]
    try:
        frame, meta, repairs = reader(path, reference_year)
    except StationFileError:
        raise
    except Exception as exc:  # pvlib raises many kinds on malformed files
        raise StationFileError(
            f"{path}: pvlib could not parse it as {kind.upper()} ({type(exc).__name__}: {exc}). "
            "Check that the file is complete and of that format."
        ) from exc
    frame.insert(0, "station_id", station_id)
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    return StationData(station_id, path, kind, frame, meta, repairs)


def _local_to_utc(
    month: pd.Series, day: pd.Series, hour: pd.Series, tz_hours: float, year: int
) -> pd.Series:
    """Hour-ending local standard time (hour 1..24) on ``year`` -> UTC timestamps."""
    dates = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month.astype(int), "day": day.astype(int)})
    )
    local = dates + pd.to_timedelta(hour.astype(int), unit="h")
    utc = local - pd.Timedelta(hours=float(tz_hours))
    return pd.Series(utc.to_numpy(), index=month.index).dt.tz_localize("UTC")


def _leap_day(month: pd.Series, day: pd.Series, reference_year: int,
              repairs: list[dict]) -> pd.Series:
    """Rows to keep: all, except 29 February when the reference year has none.

    A leap-year file (8784 rows, e.g. a real year 2020) keeps every other day; 29 February
    ends its month's segment, so the segments stay contiguous."""
    leap = (month.astype(int) == 2) & (day.astype(int) == 29)
    if leap.any() and not calendar.isleap(reference_year):
        repairs.append({"rule": f"29 February dropped ({int(leap.sum())} h): every record is "
                                f"mapped onto the reference year {reference_year}, which has "
                                "no 29 February", "column": "time", "count": int(leap.sum())})
        return ~leap
    return pd.Series(True, index=month.index)


def _sentinel(
    values: pd.Series, codes: list[float], column: str, repairs: list[dict], rule: str
) -> pd.Series:
    mask = values.isin(codes)
    if mask.any():
        repairs.append({"rule": rule, "column": column, "count": int(mask.sum())})
    return values.mask(mask)


def _replace(
    values: pd.Series, code: float, new: float, column: str, repairs: list[dict], rule: str
) -> pd.Series:
    mask = values == code
    if mask.any():
        repairs.append({"rule": rule, "column": column, "count": int(mask.sum())})
    return values.mask(mask, new)


def _meta(name: str, lat: float, lon: float, elev: float, tz: float, **extra) -> dict:
    return {
        "name": str(name).strip().strip('"'),
        "latitude": float(lat),
        "longitude": float(lon),
        "elevation_m": float(elev),
        "tz_offset_h": float(tz),
        **extra,
    }


def _label_origin(source_flags: pd.Series) -> pd.Series:
    """TMY2/TMY3 source flags of the opaque sky cover -> ``observed`` / ``filled``."""
    flags = source_flags.astype(str).str.strip().str.upper()
    return pd.Series(["observed" if f == TMY_OBSERVED_FLAG else "filled" for f in flags],
                     index=source_flags.index)


def _source_years(month: pd.Series, year: pd.Series) -> dict[str, int]:
    """The year each calendar month of a typical year was taken from (``{"1": 1988, ...}``)."""
    first = pd.DataFrame({"month": month.astype(int).to_numpy(),
                          "year": year.astype(int).to_numpy()}).groupby("month")["year"].first()
    return {str(m): int(y) for m, y in first.items()}


def _assemble(
    times: pd.Series, segment: pd.Series, meta: dict, columns: dict[str, pd.Series],
    label_origin: pd.Series | None = None,
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "time": times.to_numpy(),
            "segment": segment.astype("int64").to_numpy(),
            "latitude": meta["latitude"],
            "longitude": meta["longitude"],
            "elevation_m": meta["elevation_m"],
        }
    )
    for name in WEATHER_COLUMNS:
        frame[name] = pd.to_numeric(columns[name], errors="coerce").astype("float64").to_numpy()
    frame[LABEL_ORIGIN] = "unknown" if label_origin is None else label_origin.to_numpy()
    return frame


def _read_tmy3(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    repairs: list[dict] = []
    raw, m = pvlib.iotools.read_tmy3(io.StringIO(_decode(path, repairs)), map_variables=False)
    raw = raw.reset_index(drop=True)
    meta = _meta(m["Name"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("USAF", "")))
    date = pd.to_datetime(raw["Date (MM/DD/YYYY)"], format="%m/%d/%Y")
    keep = _leap_day(date.dt.month, date.dt.day, reference_year, repairs)
    raw, date = raw[keep].reset_index(drop=True), date[keep].reset_index(drop=True)
    hour = raw["Time (HH:MM)"].str.slice(0, 2).astype(int)
    times = _local_to_utc(date.dt.month, date.dt.day, hour, meta["tz_offset_h"], reference_year)

    def col(name: str, label: str) -> pd.Series:
        return _sentinel(raw[name].astype(float), [-9900.0, -99.0], label, repairs,
                         "missing code -9900 -> missing")

    ceiling = col("CeilHgt (m)", "ceiling_m")
    ceiling = _replace(ceiling, 77777.0, UNLIMITED_CEILING_M, "ceiling_m", repairs,
                       f"unlimited ceiling 77777 -> {UNLIMITED_CEILING_M:.0f} m")
    columns = {
        "total_cloud_tenths": col("TotCld (tenths)", "total_cloud_tenths"),
        "opaque_cloud_tenths": col("OpqCld (tenths)", "opaque_cloud_tenths"),
        "temp_air_c": col("Dry-bulb (C)", "temp_air_c"),
        "temp_dew_c": col("Dew-point (C)", "temp_dew_c"),
        "relative_humidity": col("RHum (%)", "relative_humidity"),
        "pressure_hpa": col("Pressure (mbar)", "pressure_hpa"),
        "wind_speed_ms": col("Wspd (m/s)", "wind_speed_ms"),
        "wind_direction_deg": col("Wdir (degrees)", "wind_direction_deg"),
        "visibility_km": col("Hvis (m)", "visibility_km") / 1000.0,
        "ceiling_m": ceiling,
        "precipitable_water_cm": col("Pwat (cm)", "precipitable_water_cm"),
    }
    meta["source_years"] = _source_years(date.dt.month, date.dt.year)
    return (_assemble(times, date.dt.month, meta, columns, _label_origin(raw["OpqCld source"])),
            meta, repairs)


def _read_tmy2(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    raw, m = pvlib.iotools.read_tmy2(path)
    raw = raw.reset_index(drop=True)
    meta = _meta(m["City"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("WBAN", "")))
    repairs: list[dict] = []
    raw = raw[_leap_day(raw["month"], raw["day"], reference_year, repairs)].reset_index(
        drop=True)
    times = _local_to_utc(raw["month"], raw["day"], raw["hour"], meta["tz_offset_h"],
                          reference_year)

    def col(name: str, label: str, codes: list[float]) -> pd.Series:
        return _sentinel(raw[name].astype(float), codes, label, repairs,
                         f"missing code {'/'.join(str(int(c)) for c in codes)} -> missing")

    # TMY2 stores temperatures, wind and visibility in tenths of their unit; pvlib leaves them so.
    visibility = col("Hvis", "visibility_km", [9999.0])
    visibility = _replace(visibility, 7777.0, 1609.0, "visibility_km", repairs,
                          "unlimited visibility 7777 -> 160.9 km") / 10.0
    ceiling = col("CeilHgt", "ceiling_m", [99999.0])
    ceiling = _replace(ceiling, 77777.0, UNLIMITED_CEILING_M, "ceiling_m", repairs,
                       f"unlimited ceiling 77777 -> {UNLIMITED_CEILING_M:.0f} m")
    ceiling = _replace(ceiling, 88888.0, CIRROFORM_CEILING_M, "ceiling_m", repairs,
                       f"cirroform ceiling 88888 -> {CIRROFORM_CEILING_M:.0f} m")
    columns = {
        "total_cloud_tenths": col("TotCld", "total_cloud_tenths", [99.0]),
        "opaque_cloud_tenths": col("OpqCld", "opaque_cloud_tenths", [99.0]),
        "temp_air_c": col("DryBulb", "temp_air_c", [9999.0]) / 10.0,
        "temp_dew_c": col("DewPoint", "temp_dew_c", [9999.0]) / 10.0,
        "relative_humidity": col("RHum", "relative_humidity", [999.0]),
        "pressure_hpa": col("Pressure", "pressure_hpa", [9999.0]),
        "wind_speed_ms": col("Wspd", "wind_speed_ms", [9999.0]) / 10.0,
        "wind_direction_deg": col("Wdir", "wind_direction_deg", [999.0]),
        "visibility_km": visibility,
        "ceiling_m": ceiling,
        "precipitable_water_cm": col("Pwat", "precipitable_water_cm", [999.0]) / 10.0,
    }
    # TMY2 stores the two-digit year (1961-1990 for the NSRDB the files come from)
    meta["source_years"] = _source_years(raw["month"], 1900 + raw["year"].astype(int) % 100)
    return (_assemble(times, raw["month"], meta, columns, _label_origin(raw["OpqCldSource"])),
            meta, repairs)


def _read_epw(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    repairs: list[dict] = []
    # pvlib opens EPW files as UTF-8 and crashes on Latin-1 ones: decode here, hand it text
    raw, m = pvlib.iotools.read_epw(io.StringIO(_decode(path, repairs)))
    raw = raw.reset_index(drop=True)
    meta = _meta(m["city"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("WMO_code", "")))
    raw = raw[_leap_day(raw["month"], raw["day"], reference_year, repairs)].reset_index(
        drop=True)
    times = _local_to_utc(raw["month"], raw["day"], raw["hour"], meta["tz_offset_h"],
                          reference_year)

    def col(name: str, label: str, codes: list[float]) -> pd.Series:
        return _sentinel(raw[name].astype(float), codes, label, repairs,
                         f"missing code {'/'.join(str(int(c)) for c in codes)} -> missing")

    columns = {
        "total_cloud_tenths": col("total_sky_cover", "total_cloud_tenths", [99.0]),
        "opaque_cloud_tenths": col("opaque_sky_cover", "opaque_cloud_tenths", [99.0]),
        "temp_air_c": col("temp_air", "temp_air_c", [99.9]),
        "temp_dew_c": col("temp_dew", "temp_dew_c", [99.9]),
        "relative_humidity": col("relative_humidity", "relative_humidity", [999.0]),
        "pressure_hpa": col("atmospheric_pressure", "pressure_hpa", [999999.0]) / 100.0,
        "wind_speed_ms": col("wind_speed", "wind_speed_ms", [999.0]),
        "wind_direction_deg": col("wind_direction", "wind_direction_deg", [999.0]),
        "visibility_km": col("visibility", "visibility_km", [9999.0]),
        "ceiling_m": _replace(col("ceiling_height", "ceiling_m", [99999.0]), 77777.0,
                              UNLIMITED_CEILING_M, "ceiling_m", repairs,
                              f"unlimited ceiling 77777 -> {UNLIMITED_CEILING_M:.0f} m"),
        "precipitable_water_cm": col("precipitable_water", "precipitable_water_cm", [999.0])
        / 10.0,
    }
    # EPW keeps each month's source year; its per-field flags for sky cover are "?" (no
    # source recorded) in the TMY3-derived files, so the label's origin stays unknown
    meta["source_years"] = _source_years(raw["month"], raw["year"])
    return _assemble(times, raw["month"], meta, columns), meta, repairs


#: the plain CSV schema: required columns (besides the optional canonical weather columns)
CSV_REQUIRED = ["timestamp", "latitude", "longitude", "elevation_m"]


def _read_csv(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    """The documented plain CSV schema (see docs/add-your-station.md): one row per hour,
    ``timestamp`` in ISO 8601 with its UTC offset, ``latitude``, ``longitude``,
    ``elevation_m``, then any of :data:`WEATHER_COLUMNS` (empty cell = missing)."""
    del reference_year  # real timestamps keep their own year
    repairs: list[dict] = []
    raw = pd.read_csv(io.StringIO(_decode(path, repairs)), dtype={"timestamp": str})
    missing = [c for c in CSV_REQUIRED if c not in raw.columns]
    if missing:
        raise StationFileError(
            f"{path}: required column(s) {', '.join(missing)} missing (found: "
            f"{', '.join(map(str, raw.columns))}); see the CSV schema in 'Add your own station'"
        )
    if raw.empty:
        raise StationFileError(f"{path}: no data rows below the header")
    unknown = [c for c in raw.columns if c not in CSV_REQUIRED and c not in WEATHER_COLUMNS]
    if unknown:
        repairs.append({"rule": "column(s) not in the schema ignored: " + ", ".join(unknown),
                        "column": "(file)", "count": len(unknown)})
    parsed = pd.to_datetime(raw["timestamp"], errors="coerce", format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        row = int(bad.idxmax())
        raise StationFileError(
            f"{path}: field 'timestamp' on line {row + 2} = {raw['timestamp'].iloc[row]!r} is "
            "not an ISO 8601 time; write e.g. 2024-03-01T21:00:00-05:00"
        )
    if getattr(parsed.dt, "tz", None) is None:
        raise StationFileError(
            f"{path}: field 'timestamp' = {raw['timestamp'].iloc[0]!r} has no UTC offset, so "
            "the hour of the night is unknown; write it with its offset, e.g. "
            "2024-03-01T21:00:00-05:00 (or Z for UTC)"
        )
    offset_h = parsed.iloc[0].utcoffset().total_seconds() / 3600.0
    times = parsed.dt.tz_convert("UTC")
    first = raw.iloc[0]
    meta = _meta(path.stem, first["latitude"], first["longitude"], first["elevation_m"],
                 offset_h, source_id=path.stem)
    columns = {name: (raw[name] if name in raw.columns else pd.Series(float("nan"),
                                                                       index=raw.index))
               for name in WEATHER_COLUMNS}
    local = times + pd.Timedelta(hours=offset_h)
    segment = local.dt.year * 100 + local.dt.month  # yyyymm: real, contiguous months
    return _assemble(times, segment, meta, columns), meta, repairs


def check_station(entry: str, settings: Settings) -> tuple[pd.DataFrame | None, QualityReport]:
    """Read and assess one ``data.stations`` entry (or a file path); never raises for bad
    input: an unreadable file comes back as a rejected report with the reader's message."""
    try:
        station = read_station(entry, settings.paths.raw_dir, settings.data.reference_year)
    except StationFileError as exc:
        report = QualityReport(Path(entry).stem, entry, Path(entry).suffix.lstrip(".") or "?",
                               0)
        report.reject(str(exc))
        return None, report
    return assess(station, settings.label, settings.data.min_usable_night_hours,
                  settings.data.stuck_label_max_hours)
