"""Station files -> one canonical hourly DataFrame.

Parsing is left to :mod:`pvlib.iotools`; this module maps each format's columns, units and
missing-value codes onto the canonical columns below, and stamps every row in UTC.

TMY files splice months taken from different years. Every record is mapped onto one
``reference_year`` and keeps the month it came from in ``segment``: features and labels are
only ever built inside one segment, so no row mixes two source years.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

#: canonical column -> unit. Every reader returns exactly these columns (plus the index columns).
WEATHER_COLUMNS: dict[str, str] = {
    "total_cloud_tenths": "tenths of sky",
    "opaque_cloud_tenths": "tenths of sky",
    "temp_air_c": "degC",
    "temp_dew_c": "degC",
    "relative_humidity": "%",
    "pressure_hpa": "hPa",
    "wind_speed_ms": "m/s",
    "wind_direction_deg": "deg from north",
    "visibility_km": "km",
    "ceiling_m": "m above ground (unlimited = 20000)",
    "precipitable_water_cm": "cm",
}
ID_COLUMNS = ["station_id", "time", "segment", "latitude", "longitude", "elevation_m"]

#: a sky with no ceiling ("unlimited") is recorded as this height, so the feature stays ordered
UNLIMITED_CEILING_M = 20000.0
#: TMY2's "cirroform" ceiling code: only thin high cloud, placed just below unlimited
CIRROFORM_CEILING_M = 10000.0


@dataclass(frozen=True)
class BuiltinStation:
    station_id: str
    filename: str
    kind: str
    description: str


#: the three real stations that ship inside pvlib's ``data/`` folder
BUILTIN_STATIONS: dict[str, BuiltinStation] = {
    s.station_id: s
    for s in (
        BuiltinStation("greensboro_nc", "723170TYA.CSV", "tmy3", "Greensboro NC, USA (TMY3)"),
        BuiltinStation("sand_point_ak", "703165TY.csv", "tmy3", "Sand Point AK, USA (TMY3)"),
        BuiltinStation("miami_fl", "12839.tm2", "tmy2", "Miami FL, USA (TMY2)"),
    )
}


@dataclass
class StationData:
    """A station's canonical hourly frame, its metadata and what the reader repaired."""

    station_id: str
    source: Path
    kind: str
    frame: pd.DataFrame
    meta: dict
    repairs: list[dict] = field(default_factory=list)


class StationFileError(ValueError):
    """A station file cannot be read; the message names file, field and remedy."""


def pvlib_data_dir() -> Path:
    return Path(pvlib.__file__).parent / "data"


def resolve_station(entry: str, raw_dir: Path) -> tuple[str, Path, str]:
    """Map a ``data.stations`` entry to ``(station_id, path, kind)``.

    A built-in id names a pvlib station; anything else is a file under ``raw_dir``.
    """
    if entry in BUILTIN_STATIONS:
        b = BUILTIN_STATIONS[entry]
        return b.station_id, pvlib_data_dir() / b.filename, b.kind
    path = (raw_dir / entry) if not Path(entry).is_absolute() else Path(entry)
    if not path.is_file():
        raise StationFileError(
            f"station '{entry}' in params.yaml 'data.stations' is neither a built-in station "
            f"({', '.join(BUILTIN_STATIONS)}) nor a file: {path} does not exist. "
            "Put the file under data/raw/ (and `dvc add` it) or fix the name."
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
        return "tmy3"
    raise StationFileError(
        f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
        "use .epw (EnergyPlus), .tm2 (TMY2) or .csv (TMY3)"
    )


def read_station(entry: str, raw_dir: Path, reference_year: int) -> StationData:
    """Read one ``data.stations`` entry into a :class:`StationData`."""
    station_id, path, kind = resolve_station(entry, raw_dir)
    reader = {"tmy3": _read_tmy3, "tmy2": _read_tmy2, "epw": _read_epw}[kind]
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


def _assemble(
    times: pd.Series, segment: pd.Series, meta: dict, columns: dict[str, pd.Series]
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
    return frame


def _read_tmy3(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    raw, m = pvlib.iotools.read_tmy3(path, map_variables=False)
    raw = raw.reset_index(drop=True)
    meta = _meta(m["Name"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("USAF", "")))
    repairs: list[dict] = []
    date = pd.to_datetime(raw["Date (MM/DD/YYYY)"], format="%m/%d/%Y")
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
    return _assemble(times, date.dt.month, meta, columns), meta, repairs


def _read_tmy2(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    raw, m = pvlib.iotools.read_tmy2(path)
    raw = raw.reset_index(drop=True)
    meta = _meta(m["City"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("WBAN", "")))
    repairs: list[dict] = []
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
    return _assemble(times, raw["month"], meta, columns), meta, repairs


def _read_epw(path: Path, reference_year: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    raw, m = pvlib.iotools.read_epw(path)
    raw = raw.reset_index(drop=True)
    meta = _meta(m["city"], m["latitude"], m["longitude"], m["altitude"], m["TZ"],
                 source_id=str(m.get("WMO_code", "")))
    repairs: list[dict] = []
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
                              UNLIMITED_CEILING_M, "ceiling_m", [],
                              "unlimited ceiling 77777"),
        "precipitable_water_cm": col("precipitable_water", "precipitable_water_cm", [999.0])
        / 10.0,
    }
    return _assemble(times, raw["month"], meta, columns), meta, repairs


def hours_in_segment_order(frame: pd.DataFrame) -> np.ndarray:
    """Position of each row inside its (station, segment) block, in time order."""
    return frame.groupby(["station_id", "segment"], sort=False).cumcount().to_numpy()
