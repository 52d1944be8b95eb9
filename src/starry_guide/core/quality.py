"""Data quality: pandera schemas, repairs, and a per-station verdict.

Every problem found in a station file gets one of three policies, recorded in the report:

* **repair** — a format's missing-value code becomes missing, a unit is converted (visibility
  in metres, pressure in Pa), a value outside its physical range or a dew point above the air
  temperature becomes missing, absent hours of a CSV are inserted as missing, a Latin-1 file
  is decoded as such;
* **drop the feature for that station** — a column that is absent or stuck at one value for
  the whole file (pvlib's own Sand Point TMY3 reports 1012 hPa for all 8760 hours); the
  models cope with missing features;
* **reject the station** — no usable opaque sky cover (the label), too few usable night hours,
  or a structure that cannot be trusted (a truncated year, duplicated or non-hourly
  timestamps, a time zone that does not fit the longitude).

Rejections name the file, the field, an example value and the remedy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from starry_guide.config import LabelSettings
from starry_guide.core import astro
from starry_guide.core.schema import (
    ID_COLUMNS,
    LABEL_ORIGIN,
    LABEL_ORIGINS,
    WEATHER_COLUMNS,
    StationData,
)

#: physical range per canonical column; values outside are repaired to missing
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "total_cloud_tenths": (0, 10),
    "opaque_cloud_tenths": (0, 10),
    "temp_air_c": (-90, 60),
    "temp_dew_c": (-100, 40),
    "relative_humidity": (0, 100),
    "pressure_hpa": (500, 1100),
    "wind_speed_ms": (0, 80),
    "wind_direction_deg": (0, 360),
    "visibility_km": (0, 200),
    "ceiling_m": (0, 30000),
    "precipitable_water_cm": (0, 15),
}
GEOMETRY_COLUMNS = ["sun_elevation_deg", "moon_elevation_deg", "moon_illumination"]
#: range of a station's (or a request's) place; the API, the feed and batch check the same
PLACE_RANGES: dict[str, tuple[float, float]] = {
    "latitude": (-90, 90),
    "longitude": (-180, 180),
    "elevation_m": (-500, 9000),
}

#: the label comes from this column; without it a station is rejected
LABEL_SOURCE = "opaque_cloud_tenths"
#: a dew point may exceed the air temperature by this much (rounding, sensor lag) before
#: it is treated as an error
DEW_POINT_TOLERANCE_C = 1.0
#: local standard time may differ from longitude / 15 by this many hours (China spans five
#: solar zones on one clock); more suggests a longitude with the wrong sign
TIMEZONE_TOLERANCE_H = 3.5
#: a station's median precipitable water above this is a unit error (the wettest climates
#: have a median near 5 cm)
PRECIPITABLE_WATER_MAX_MEDIAN_CM = 10.0
#: a flipped latitude sign is judged from the file's own seasons: the monthly mean air
#: temperature must not run against the header latitude's monthly sunshine (correlation at
#: most this), over at least this many months, with a seasonal swing of at least this much,
#: and only away from the tropics (see _check_hemisphere)
HEMISPHERE_MAX_CORRELATION = -0.5
HEMISPHERE_MIN_MONTHS = 9
HEMISPHERE_MIN_SWING_C = 4.0
HEMISPHERE_MIN_LATITUDE = 15.0
#: records with real, contiguous timestamps (absent hours are inserted as missing); the
#: others are typical-year files
REAL_RECORD_KINDS = ("csv", "production")
#: a typical-year file (TMY2/TMY3/EPW) has one row per hour of a year
YEAR_ROWS = (8760, 8784)


class StationRejected(ValueError):
    """A station cannot be used; the message names the file, the field and the remedy."""


def canonical_schema() -> pa.DataFrameSchema:
    """The pandera schema every station frame satisfies after :func:`assess`."""
    columns: dict[str, pa.Column] = {
        "station_id": pa.Column(str, nullable=False),
        "time": pa.Column(pd.DatetimeTZDtype("us", "UTC"), nullable=False, unique=True,
                          coerce=True),
        # month 1..12 for typical-year files, yyyymm for real (CSV) records
        "segment": pa.Column("int64", pa.Check.ge(1)),
        **{name: pa.Column(float, pa.Check.in_range(lo, hi))
           for name, (lo, hi) in PLACE_RANGES.items()},
    }
    for name, (lo, hi) in PHYSICAL_RANGES.items():
        columns[name] = pa.Column(float, pa.Check.in_range(lo, hi), nullable=True)
    columns["sun_elevation_deg"] = pa.Column(float, pa.Check.in_range(-90, 90))
    columns["moon_elevation_deg"] = pa.Column(float, pa.Check.in_range(-90, 90))
    columns["moon_illumination"] = pa.Column(float, pa.Check.in_range(0, 1))
    columns[LABEL_ORIGIN] = pa.Column(str, pa.Check.isin(LABEL_ORIGINS))
    return pa.DataFrameSchema(
        columns,
        checks=[pa.Check(lambda df: df["time"].is_monotonic_increasing,
                         error="time is not increasing")],
        strict=True,
        ordered=False,
    )


@dataclass
class QualityReport:
    station_id: str
    source: str
    kind: str
    rows: int
    repairs: list[dict] = field(default_factory=list)
    dropped_features: list[dict] = field(default_factory=list)
    missing_share: dict[str, float] = field(default_factory=dict)
    usable_night_hours: int = 0
    clear_sky_rate: float | None = None
    #: usable night label hours by origin (``observed`` / ``filled`` / ``unknown``)
    label_origin_hours: dict[str, int] = field(default_factory=dict)
    #: calendar month -> the year a typical-year file took it from (empty for real records)
    source_years: dict[str, int] = field(default_factory=dict)
    verdict: str = "usable"
    reasons: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.verdict == "usable"

    def reject(self, reason: str) -> None:
        self.verdict = "rejected"
        self.reasons.append(reason)

    def as_dict(self) -> dict:
        return {
            "station_id": self.station_id,
            "source": self.source,
            "kind": self.kind,
            "rows": self.rows,
            "repairs": self.repairs,
            "dropped_features": self.dropped_features,
            "missing_share": self.missing_share,
            "usable_night_hours": self.usable_night_hours,
            "clear_sky_rate": self.clear_sky_rate,
            "label_origin_hours": self.label_origin_hours,
            "source_years": self.source_years,
            "verdict": self.verdict,
            "reasons": self.reasons,
        }


def _check_structure(frame: pd.DataFrame, station: StationData,
                     report: QualityReport) -> pd.DataFrame:
    """Duplicates, spacing and length; inserts a CSV's absent hours as missing rows."""
    src = station.source
    duplicated = frame["time"].duplicated(keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:2]
        report.reject(
            f"{src}: field 'time' has {int(frame['time'].duplicated().sum())} duplicated "
            f"hour(s), e.g. {frame['time'].iloc[rows[0]].isoformat()} on data rows "
            f"{rows[0] + 1} and {rows[1] + 1}; keep one record per hour"
        )
        return frame
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    step = frame["time"].diff().dropna()
    off_hour = frame["time"].dt.minute.ne(0) | frame["time"].dt.second.ne(0)
    if off_hour.any() or (step < pd.Timedelta(hours=1)).any():
        where = int(np.flatnonzero(off_hour.to_numpy() | np.r_[False, (step <
                                                             pd.Timedelta(hours=1))])[0])
        typical = step.median()
        report.reject(
            f"{src}: field 'time' is not hourly (e.g. {frame['time'].iloc[where].isoformat()} "
            f"on data row {where + 1}; typical step {typical}); resample to one value per "
            "hour, stamped on the hour"
        )
        return frame
    if station.kind in REAL_RECORD_KINDS:
        grid = pd.date_range(frame["time"].iloc[0], frame["time"].iloc[-1], freq="h")
        absent = len(grid) - len(frame)
        if absent:
            filled = frame.set_index("time").reindex(grid)
            filled.index.name = "time"
            filled = filled.reset_index()
            for column in ("station_id", "latitude", "longitude", "elevation_m"):
                filled[column] = frame[column].iloc[0]
            filled[LABEL_ORIGIN] = filled[LABEL_ORIGIN].fillna("unknown")
            local = filled["time"] + pd.Timedelta(hours=station.meta["tz_offset_h"])
            filled["segment"] = (local.dt.year * 100 + local.dt.month).astype("int64")
            report.repairs.append({"rule": "hours absent from the file inserted as missing",
                                   "column": "time", "count": int(absent)})
            frame = filled[frame.columns]
    elif len(frame) not in YEAR_ROWS:
        report.reject(
            f"{src}: {len(frame)} hourly rows, but a {station.kind.upper()} year has 8760 "
            f"(8784 in a leap year); the file looks truncated — the last row is "
            f"{frame['time'].iloc[-1].isoformat()}. Download it again"
        )
    return frame


def _check_metadata(station: StationData, report: QualityReport) -> None:
    meta, src = station.meta, station.source
    lat, lon, tz = meta["latitude"], meta["longitude"], meta["tz_offset_h"]
    if not -90 <= lat <= 90:
        report.reject(f"{src}: field 'latitude' = {lat} is outside -90..90; fix the header")
    if not -180 <= lon <= 180:
        report.reject(f"{src}: field 'longitude' = {lon} is outside -180..180; fix the header")
    solar = lon / 15.0
    gap = abs(((tz - solar) + 12) % 24 - 12)
    if -180 <= lon <= 180 and gap > TIMEZONE_TOLERANCE_H:
        report.reject(
            f"{src}: field 'timezone' = {tz:+g} h does not fit longitude {lon:g} (solar time "
            f"{solar:+.1f} h; {gap:.1f} h apart). Is the longitude's sign flipped (east is "
            "positive)? Fix the header"
        )


def _check_hemisphere(frame: pd.DataFrame, station: StationData,
                      report: QualityReport) -> None:
    """Reject a latitude whose sign the file's own temperatures contradict.

    Away from the tropics the air is warmest in the months of most sunshine. The sunshine
    of each month is computed for the header's latitude (mean of sin(sun elevation) over the
    hours the sun is up); if the monthly mean temperatures run against it (correlation
    <= :data:`HEMISPHERE_MAX_CORRELATION`) the header puts the station in the wrong
    hemisphere. Not judged — nothing can be told — for files with fewer than
    :data:`HEMISPHERE_MIN_MONTHS` months of temperatures, a seasonal swing under
    :data:`HEMISPHERE_MIN_SWING_C`, or a header latitude within
    :data:`HEMISPHERE_MIN_LATITUDE` of the equator; a wrong latitude in the right hemisphere
    is never caught.
    """
    lat = float(station.meta["latitude"])
    if abs(lat) < HEMISPHERE_MIN_LATITUDE:
        return
    sunshine = np.clip(np.sin(np.radians(frame["sun_elevation_deg"].to_numpy())), 0, None)
    months = pd.DataFrame({"month": frame["time"].dt.month.to_numpy(), "sun": sunshine,
                           "temp": frame["temp_air_c"].to_numpy()})
    counted = months.groupby("month").agg(sun=("sun", "mean"), temp=("temp", "mean"),
                                          n=("temp", "count"))
    counted = counted[counted["n"] >= 48]
    if len(counted) < HEMISPHERE_MIN_MONTHS:
        return
    swing = float(counted["temp"].max() - counted["temp"].min())
    if swing < HEMISPHERE_MIN_SWING_C:
        return
    correlation = float(np.corrcoef(counted["sun"], counted["temp"])[0, 1])
    if correlation <= HEMISPHERE_MAX_CORRELATION:
        warmest = int(counted["temp"].idxmax())
        report.reject(
            f"{station.source}: field 'latitude' = {lat:g} puts the station in the "
            f"{'northern' if lat > 0 else 'southern'} hemisphere, but its temperatures peak "
            f"in month {warmest} and run against that hemisphere's seasons (correlation of "
            f"monthly mean temperature with monthly sunshine {correlation:+.2f}). Is the "
            f"latitude's sign flipped (north is positive)? Fix the header"
        )


def _repair_units(frame: pd.DataFrame, report: QualityReport) -> None:
    """Judge units from value ranges; convert with a recorded note."""
    visibility = frame["visibility_km"].dropna()
    if len(visibility) and visibility.median() > 300:
        report.repairs.append({
            "rule": f"visibility looks like metres (median {visibility.median():g}): "
                    "converted to km", "column": "visibility_km", "count": int(len(visibility)),
        })
        frame["visibility_km"] = frame["visibility_km"] / 1000.0
    pressure = frame["pressure_hpa"].dropna()
    if len(pressure) and pressure.median() > 2000:
        report.repairs.append({
            "rule": f"pressure looks like Pa (median {pressure.median():g}): converted to hPa",
            "column": "pressure_hpa", "count": int(len(pressure)),
        })
        frame["pressure_hpa"] = frame["pressure_hpa"] / 100.0
    water = frame["precipitable_water_cm"].dropna()
    if len(water) and water.median() > PRECIPITABLE_WATER_MAX_MEDIAN_CM:
        # EPW files converted from TMY3 (e.g. those shipped with EnergyPlus) store tenths of
        # a millimetre in the millimetre field: Tampa's median would read 33 cm
        report.repairs.append({
            "rule": f"precipitable water 10x too large (median {water.median():g} cm): "
                    "divided by 10", "column": "precipitable_water_cm",
            "count": int(len(water)),
        })
        frame["precipitable_water_cm"] = frame["precipitable_water_cm"] / 10.0


def _repair_values(frame: pd.DataFrame, report: QualityReport) -> None:
    for name, (lo, hi) in PHYSICAL_RANGES.items():
        bad = frame[name].notna() & ~frame[name].between(lo, hi)
        if bad.any():
            report.repairs.append({
                "rule": f"outside physical range {lo}..{hi} -> missing",
                "column": name,
                "count": int(bad.sum()),
                "example": float(frame.loc[bad, name].iloc[0]),
            })
            frame[name] = frame[name].mask(bad)
    too_wet = pd.Series(dew_point_too_high(frame["temp_air_c"], frame["temp_dew_c"]),
                        index=frame.index)
    if too_wet.any():
        report.repairs.append({
            "rule": f"dew point above air temperature + {DEW_POINT_TOLERANCE_C:g} C -> missing",
            "column": "temp_dew_c", "count": int(too_wet.sum()),
            "example": float(frame.loc[too_wet, "temp_dew_c"].iloc[0]),
        })
        frame["temp_dew_c"] = frame["temp_dew_c"].mask(too_wet)


def value_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of one repeated, non-missing value in consecutive positions: each run's start
    index, length and value (a missing value ends a run and is no run itself). The one
    run finder: stuck sensors in station files and in the serving store alike."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.array([], int), np.array([], int), np.array([])
    same = np.r_[False, values[1:] == values[:-1]]  # NaN != NaN: missing breaks a run
    starts = np.flatnonzero(~same)
    lengths = np.diff(np.r_[starts, len(values)])
    keep = ~np.isnan(values[starts])
    return starts[keep], lengths[keep], values[starts][keep]


def stuck_runs(values: np.ndarray, max_hours: int) -> np.ndarray:
    """Mask of the hours inside a run of one repeated (non-missing) value longer than
    ``max_hours``: a frozen sensor, not weather (a missing hour ends a run)."""
    mask = np.zeros(len(values), dtype=bool)
    starts, lengths, _ = value_runs(values)
    for start, length in zip(starts, lengths, strict=True):
        if length > max_hours:
            mask[start:start + length] = True
    return mask


def _repair_stuck_label(frame: pd.DataFrame, report: QualityReport, max_hours: int) -> None:
    """A label sensor frozen on one value for longer than ``max_hours`` (a stuck cloud
    sensor) reports nothing true: those hours' cloud cover becomes missing, so they are
    never learned from or scored. Runs only within a record that is otherwise varied (a
    file constant throughout is rejected by :func:`_check_label`)."""
    cover = frame[LABEL_SOURCE].to_numpy(dtype=float)
    stuck = stuck_runs(cover, max_hours)
    if stuck.any() and not stuck[~np.isnan(cover)].all():
        first = int(np.flatnonzero(stuck)[0])
        report.repairs.append({
            "rule": f"one value repeated longer than {max_hours} h (a stuck sensor; params.yaml "
                    "'data.stuck_label_max_hours') -> missing",
            "column": LABEL_SOURCE, "count": int(stuck.sum()),
            "example": float(cover[first]),
            "since": frame["time"].iloc[first].isoformat(),
        })
        for column in (LABEL_SOURCE, "total_cloud_tenths"):
            frame[column] = frame[column].mask(stuck)


def dew_point_too_high(temp_air_c, temp_dew_c) -> np.ndarray:
    """Where the dew point exceeds the air temperature by more than
    :data:`DEW_POINT_TOLERANCE_C` (physically impossible beyond sensor lag): training
    repairs such a dew point to missing, and so does every serving path
    (:func:`repair_inputs`)."""
    air = np.asarray(temp_air_c, dtype=float)
    dew = np.asarray(temp_dew_c, dtype=float)
    with np.errstate(invalid="ignore"):
        return dew > air + DEW_POINT_TOLERANCE_C


def repair_inputs(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Training's per-hour repairs, applied to model inputs on their way into the feature
    core by the API, the feed and batch scoring (so a served hour gets the features the
    same hour would get in training): a dew point above the air temperature + tolerance
    becomes missing. Ranges are not repaired here: the serving paths refuse out-of-range
    values before (docs: Data quality, one validation policy)."""
    bad = dew_point_too_high(columns["temp_air_c"], columns["temp_dew_c"])
    if not bad.any():
        return columns
    return {**columns, "temp_dew_c": np.where(bad, np.nan, columns["temp_dew_c"])}


def _drop_uninformative(frame: pd.DataFrame, report: QualityReport) -> None:
    for name in WEATHER_COLUMNS:
        if name == LABEL_SOURCE:
            continue  # judged below: without it the station is rejected, not trimmed
        values = frame[name]
        if values.isna().all():
            report.dropped_features.append({"column": name, "reason": "no values in the file"})
        elif values.nunique(dropna=True) == 1 and len(values.dropna()) > 24:
            stuck = float(values.dropna().iloc[0])
            report.dropped_features.append(
                {"column": name, "reason": f"stuck at {stuck:g} for every hour"})
            frame[name] = float("nan")


def _check_label(frame: pd.DataFrame, station: StationData, report: QualityReport,
                 label: LabelSettings, min_usable_night_hours: int) -> None:
    src = station.source
    cover = frame[LABEL_SOURCE]
    coded = [r for r in report.repairs if r["column"] == LABEL_SOURCE
             and r["rule"].startswith("missing code") and r["count"] == len(frame)]
    if coded:
        report.reject(
            f"{src}: field '{LABEL_SOURCE}' (opaque sky cover) holds the missing-value code "
            f"for every hour ({coded[0]['rule'].split(' -> ')[0]}) — the file carries no cloud "
            "observations (common in EPW files made from satellite or model data). Use a file "
            "with observed sky cover, or remove the station from params.yaml 'data.stations'"
        )
        return
    if cover.isna().all():
        report.reject(
            f"{src}: field '{LABEL_SOURCE}' (opaque sky cover) has no values; Starry Guide "
            "learns from it, so this station cannot be used. Use a file that reports opaque "
            "sky cover, or remove the station from params.yaml 'data.stations'"
        )
        return
    if cover.nunique(dropna=True) == 1:
        report.reject(
            f"{src}: field '{LABEL_SOURCE}' is {float(cover.dropna().iloc[0]):g} for every "
            "hour — a filled value, not an observation (many EPW files derived from satellite "
            "data carry no cloud observations). Use a file with observed sky cover, or remove "
            "the station from params.yaml 'data.stations'"
        )
    night = frame["sun_elevation_deg"] < label.night_max_sun_elevation_deg
    usable = night & cover.notna()
    report.usable_night_hours = int(usable.sum())
    origin = frame[LABEL_ORIGIN][usable]
    report.label_origin_hours = {name: int((origin == name).sum()) for name in LABEL_ORIGINS}
    if usable.any():
        report.clear_sky_rate = round(
            float((cover[usable] <= label.clear_max_opaque_tenths).mean()), 4)
    if report.usable_night_hours < min_usable_night_hours:
        report.reject(
            f"{src}: field '{LABEL_SOURCE}' is observed in only {report.usable_night_hours} "
            f"night hours (params.yaml 'data.min_usable_night_hours' = "
            f"{min_usable_night_hours}); supply a longer record or fill the gaps"
        )


def assess(station: StationData, label: LabelSettings, min_usable_night_hours: int,
           stuck_label_max_hours: int = 168) -> tuple[pd.DataFrame, QualityReport]:
    """Check, repair and judge one station; add the sun and moon geometry.

    Returns the cleaned frame (validated against :func:`canonical_schema` when the station is
    usable) and its report, whose ``verdict`` is ``usable`` or ``rejected`` with ``reasons``.
    Use :func:`require_usable` to turn rejections into an error.
    """
    report = QualityReport(station.station_id, station.label, station.kind,
                           len(station.frame), repairs=list(station.repairs),
                           source_years=dict(station.meta.get("source_years", {})))
    _check_metadata(station, report)
    frame = station.frame.copy()
    if LABEL_ORIGIN not in frame.columns:  # a source without per-hour flags (the feed)
        frame[LABEL_ORIGIN] = "unknown"
    frame = _check_structure(frame, station, report)
    if not report.usable:
        return frame, report
    _repair_units(frame, report)
    _repair_values(frame, report)
    _repair_stuck_label(frame, report, stuck_label_max_hours)
    _drop_uninformative(frame, report)
    report.missing_share = {
        name: round(float(frame[name].isna().mean()), 4) for name in WEATHER_COLUMNS
    }
    first = frame.iloc[0]
    geometry = astro.sun_moon(frame["time"], first["latitude"], first["longitude"],
                              first["elevation_m"])
    geometry.index = frame.index
    frame = frame.join(geometry)
    _check_hemisphere(frame, station, report)
    _check_label(frame, station, report, label, min_usable_night_hours)
    if report.usable:
        frame = canonical_schema().validate(frame[[*ID_COLUMNS, *WEATHER_COLUMNS,
                                                   *GEOMETRY_COLUMNS, LABEL_ORIGIN]],
                                            lazy=True)
    return frame, report


def require_usable(reports: list[QualityReport]) -> None:
    """Raise :class:`StationRejected` listing every rejected station's reasons."""
    rejected = [r for r in reports if not r.usable]
    if rejected:
        raise StationRejected(
            "station(s) rejected — nothing was written:\n"
            + "\n".join(f"  - {reason}" for r in rejected for reason in r.reasons)
        )


def observed_label_share(report: QualityReport) -> float | None:
    """The share of usable night label hours flagged as observed; ``None`` when the source
    carries no per-hour flags (every hour ``unknown``)."""
    counts = report.label_origin_hours
    flagged = counts.get("observed", 0) + counts.get("filled", 0)
    return round(counts.get("observed", 0) / flagged, 4) if flagged else None


def report_table(reports: list[QualityReport]) -> pd.DataFrame:
    """One row per station: rows, repairs, dropped features, night hours, verdict."""
    records = []
    for r in reports:
        records.append({
            "station": r.station_id,
            "format": r.kind.upper(),
            "rows": r.rows,
            "repaired values": sum(x["count"] for x in r.repairs if x["column"] != "(file)"),
            "repair rules": "; ".join(f"{x['column']}: {x['rule']} ({x['count']})"
                                      for x in r.repairs) or "-",
            "dropped features": ", ".join(f"{d['column']} ({d['reason']})"
                                          for d in r.dropped_features) or "-",
            "usable night hours": r.usable_night_hours,
            "observed label share": observed_label_share(r),
            "clear-sky rate": r.clear_sky_rate,
            "verdict": r.verdict,
        })
    return pd.DataFrame.from_records(records).set_index("station")
