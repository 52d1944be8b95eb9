"""Write real station data back out as EPW or plain-CSV files, so tests can craft one file per
failure mode from real observations (no synthetic weather)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

EPW_HEADER = [
    "DESIGN CONDITIONS,0",
    "TYPICAL/EXTREME PERIODS,0",
    "GROUND TEMPERATURES,0",
    "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
    "COMMENTS 1,written by the Starry Guide tests",
    "COMMENTS 2,",
    "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31",
]


def _local_hour_ending(times: pd.Series, tz: float) -> pd.DataFrame:
    local = times + pd.Timedelta(hours=tz)
    label = local - pd.Timedelta(hours=1)  # the hour ending at `local` belongs to its day
    return pd.DataFrame({"year": label.dt.year, "month": label.dt.month,
                         "day": label.dt.day, "hour": label.dt.hour + 1})


def write_epw(path: Path, frame: pd.DataFrame, meta: dict, *, city: str = "Greensboro",
              encoding: str = "utf-8", visibility_factor: float = 1.0,
              opaque: pd.Series | None = None, rows: int | None = None) -> Path:
    """An EPW file holding ``frame``'s observations (canonical units -> EPW units)."""
    t = _local_hour_ending(frame["time"], meta["tz_offset_h"])

    def col(name: str, missing: float, factor: float = 1.0) -> np.ndarray:
        return (frame[name] * factor).fillna(missing).to_numpy()

    ceiling = frame["ceiling_m"].fillna(99999).to_numpy()
    data = pd.DataFrame({
        "year": t["year"], "month": t["month"], "day": t["day"], "hour": t["hour"],
        "minute": 60, "source": "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9",
        "temp_air": col("temp_air_c", 99.9), "temp_dew": col("temp_dew_c", 99.9),
        "rh": col("relative_humidity", 999), "pressure": col("pressure_hpa", 999999, 100.0),
        **{f"rad{i}": 0 for i in range(10)},
        "wind_dir": col("wind_direction_deg", 999), "wind_speed": col("wind_speed_ms", 999),
        "total_cover": col("total_cloud_tenths", 99),
        "opaque_cover": (opaque if opaque is not None else frame["opaque_cloud_tenths"])
        .fillna(99).to_numpy(),
        "visibility": col("visibility_km", 9999, visibility_factor),
        "ceiling": np.where(ceiling >= 20000, 77777, ceiling),
        "obs": 9, "codes": "999999999",
        "pwat": col("precipitable_water_cm", 999, 10.0),
        "aod": 0.1, "snow": 0, "days": 88, "albedo": 0.2, "rain": 0, "rain_q": 1,
    })
    if rows is not None:
        data = data.head(rows)
    location = (f"LOCATION,{city},NC,USA,TMY3,723170,{meta['latitude']},{meta['longitude']},"
                f"{meta['tz_offset_h']},{meta['elevation_m']}")
    body = data.to_csv(header=False, index=False, float_format="%.1f", lineterminator="\n")
    path.write_bytes(("\n".join([location, *EPW_HEADER]) + "\n" + body).encode(encoding))
    return path


def write_csv(path: Path, frame: pd.DataFrame, meta: dict, *, drop: tuple[str, ...] = (),
              offset: str = "-05:00") -> Path:
    """A plain CSV in the documented schema."""
    hours = int(offset[:3]) if offset else 0  # no offset: naive local times
    local = frame["time"] + pd.Timedelta(hours=hours)
    out = pd.DataFrame({"timestamp": local.dt.strftime("%Y-%m-%dT%H:%M:%S") + offset,
                        "latitude": meta["latitude"], "longitude": meta["longitude"],
                        "elevation_m": meta["elevation_m"]})
    for column in ("opaque_cloud_tenths", "total_cloud_tenths", "temp_air_c", "temp_dew_c",
                   "relative_humidity", "pressure_hpa", "wind_speed_ms", "visibility_km"):
        if column not in drop:
            out[column] = frame[column].to_numpy()
    out.to_csv(path, index=False, lineterminator="\n")
    return path
