"""Data quality: pandera schemas, repairs, and a per-station verdict.

Policy per problem (recorded in the report):

* **repair** — a value outside its physical range becomes missing;
* **drop the feature for that station** — a column that is entirely missing or stuck at one
  value for the whole file (pvlib's own Sand Point TMY3 reports 1012 hPa for all 8760 hours);
  the models cope with missing features;
* **reject the station** — no usable opaque cloud cover, the label itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from starry_guide.stations import WEATHER_COLUMNS, StationData

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

#: the label needs this column; without it the station is rejected
LABEL_SOURCE = "opaque_cloud_tenths"
#: a station whose label column is missing in more than this share of hours is rejected
MAX_MISSING_LABEL_SHARE = 0.5


class StationRejected(ValueError):
    """A station cannot be used; the message names the file, the field and the remedy."""


def canonical_schema() -> pa.DataFrameSchema:
    """The pandera schema every station frame satisfies after :func:`assess`."""
    columns: dict[str, pa.Column] = {
        "station_id": pa.Column(str, nullable=False),
        "time": pa.Column(pd.DatetimeTZDtype("us", "UTC"), nullable=False, unique=True,
                          coerce=True),
        "segment": pa.Column("int64", pa.Check.in_range(1, 12)),
        "latitude": pa.Column(float, pa.Check.in_range(-90, 90)),
        "longitude": pa.Column(float, pa.Check.in_range(-180, 180)),
        "elevation_m": pa.Column(float, pa.Check.in_range(-500, 9000)),
    }
    for name, (lo, hi) in PHYSICAL_RANGES.items():
        columns[name] = pa.Column(float, pa.Check.in_range(lo, hi), nullable=True)
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
    verdict: str = "usable"
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "station_id": self.station_id,
            "source": self.source,
            "kind": self.kind,
            "rows": self.rows,
            "repairs": self.repairs,
            "dropped_features": self.dropped_features,
            "missing_share": self.missing_share,
            "verdict": self.verdict,
            "reasons": self.reasons,
        }


def assess(station: StationData) -> tuple[pd.DataFrame, QualityReport]:
    """Repair, drop and judge one station's canonical frame.

    Returns the cleaned frame (validated against :func:`canonical_schema`) and its report.
    Raises :class:`StationRejected` when the station cannot be used at all.
    """
    frame = station.frame.copy()
    report = QualityReport(station.station_id, str(station.source), station.kind, len(frame),
                           repairs=list(station.repairs))

    duplicated = frame["time"].duplicated()
    if duplicated.any():
        first = frame.loc[duplicated, "time"].iloc[0]
        raise StationRejected(
            f"{station.source}: field 'time' has {int(duplicated.sum())} duplicated hours "
            f"(first: {first}); keep one record per hour and try again"
        )

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

    for name in WEATHER_COLUMNS:
        values = frame[name]
        if values.isna().all():
            report.dropped_features.append({"column": name, "reason": "no values in the file"})
        elif values.nunique(dropna=True) == 1 and name not in (
            "total_cloud_tenths", "opaque_cloud_tenths"
        ):
            stuck = float(values.dropna().iloc[0])
            report.dropped_features.append(
                {"column": name, "reason": f"stuck at {stuck:g} for every hour"}
            )
            frame[name] = float("nan")

    report.missing_share = {
        name: round(float(frame[name].isna().mean()), 4) for name in WEATHER_COLUMNS
    }
    label = frame[LABEL_SOURCE]
    if label.isna().mean() > MAX_MISSING_LABEL_SHARE:
        report.verdict = "rejected"
        raise StationRejected(
            f"{station.source}: field '{LABEL_SOURCE}' is missing in "
            f"{label.isna().mean():.0%} of hours; Starry Guide learns from opaque sky cover, so "
            "this station cannot be used — remove it from params.yaml 'data.stations' or "
            "supply a file that reports opaque sky cover"
        )
    if label.nunique(dropna=True) <= 1:
        report.verdict = "rejected"
        raise StationRejected(
            f"{station.source}: field '{LABEL_SOURCE}' is {float(label.dropna().iloc[0]):g} "
            "for every hour (a filled value, not an observation); remove this station from "
            "params.yaml 'data.stations' or supply a file with observed sky cover"
        )
    if report.dropped_features:
        report.reasons.append(
            "dropped: " + ", ".join(d["column"] for d in report.dropped_features)
        )
    frame = canonical_schema().validate(frame, lazy=True)
    return frame, report


def report_table(reports: list[QualityReport]) -> pd.DataFrame:
    """One row per station: rows, repairs, dropped features, verdict (for the notebook/docs)."""
    records = []
    for r in reports:
        records.append({
            "station": r.station_id,
            "format": r.kind.upper(),
            "rows": r.rows,
            "repaired values": sum(x["count"] for x in r.repairs),
            "repair rules": "; ".join(f"{x['column']}: {x['rule']} ({x['count']})"
                                      for x in r.repairs) or "-",
            "dropped features": ", ".join(f"{d['column']} ({d['reason']})"
                                          for d in r.dropped_features) or "-",
            "verdict": r.verdict,
        })
    return pd.DataFrame.from_records(records).set_index("station")
