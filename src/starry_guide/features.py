"""The one feature function: hourly observations -> model rows (t, h).

Training (prepare stage), batch scoring and the API all call :func:`model_rows`, so a model
never sees features computed two different ways.

Rules that keep the rows honest:

* every feature at ``t`` uses observations at or before ``t`` only;
* history (lags, rolling windows, tendencies) never reaches across a ``segment`` boundary —
  TMY files splice months from different years, and the hour before 1 March may be 1987;
* the target hour ``t + h`` lies in the same segment as ``t`` (enforced in
  :func:`supervised_rows`); its sun position is astronomy, known in advance, so it is a feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from starry_guide import astro
from starry_guide.config import FeatureSettings, LabelSettings

GROUP = ["station_id", "segment"]

#: observation columns used as they are, at time t
CURRENT_COLUMNS = [
    "opaque_cloud_tenths",
    "total_cloud_tenths",
    "temp_air_c",
    "relative_humidity",
    "pressure_hpa",
    "wind_speed_ms",
    "visibility_km",
    "ceiling_m",
    "precipitable_water_cm",
    "sun_elevation_deg",
    "latitude",
]


def feature_columns(settings: FeatureSettings) -> list[str]:
    """Model input columns, in the order every model sees them."""
    lags = [f"opaque_lag_{k}h" for k in settings.cloud_lags_h]
    rolling = [
        name
        for w in settings.rolling_windows_h
        for name in (f"opaque_mean_{w}h", f"opaque_std_{w}h")
    ]
    n = settings.tendency_h
    tendencies = [f"pressure_change_{n}h", f"temp_change_{n}h", f"humidity_change_{n}h",
                  f"opaque_change_{n}h"]
    derived = ["dew_point_spread_c", "wind_u_ms", "wind_v_ms", "hour_sin", "hour_cos",
               "season_sin", "season_cos"]
    target = ["horizon_h", "target_sun_elevation_deg", "target_hour_sin", "target_hour_cos"]
    return [*CURRENT_COLUMNS, *derived, *lags, *rolling, *tendencies, *target]


def _local_solar_hour(times: pd.Series, longitude: pd.Series) -> np.ndarray:
    t = pd.DatetimeIndex(times)
    utc_hour = t.hour.to_numpy() + t.minute.to_numpy() / 60.0
    return np.mod(utc_hour + longitude.to_numpy() / 15.0, 24.0)


def hourly_features(observations: pd.DataFrame, settings: FeatureSettings) -> pd.DataFrame:
    """Features known at each observed hour ``t``.

    Parameters
    ----------
    observations : canonical hourly frame (see :mod:`starry_guide.stations`) with
        ``sun_elevation_deg`` (added by :func:`starry_guide.quality.assess`), one or many
        stations, hourly and contiguous inside each ``(station_id, segment)``.
    settings : lag, window and tendency lengths.

    Returns
    -------
    One row per input row with the id columns, the per-hour features, and
    ``history_complete`` — True when the full history window lies inside the segment.
    """
    obs = observations.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    grouped = obs.groupby(GROUP, sort=False)
    out = obs[["station_id", "time", "segment", "longitude", *CURRENT_COLUMNS]].copy()

    out["dew_point_spread_c"] = obs["temp_air_c"] - obs["temp_dew_c"]
    direction = np.deg2rad(obs["wind_direction_deg"])
    out["wind_u_ms"] = -obs["wind_speed_ms"] * np.sin(direction)
    out["wind_v_ms"] = -obs["wind_speed_ms"] * np.cos(direction)
    hour = _local_solar_hour(obs["time"], obs["longitude"])
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    day = pd.DatetimeIndex(obs["time"]).day_of_year.to_numpy()
    # the sign of latitude flips the seasons: "winter" means the same thing everywhere
    season = 2 * np.pi * (day - 1) / 365.25 + np.where(obs["latitude"] < 0, np.pi, 0.0)
    out["season_sin"] = np.sin(season)
    out["season_cos"] = np.cos(season)

    opaque = grouped["opaque_cloud_tenths"]
    for k in settings.cloud_lags_h:
        out[f"opaque_lag_{k}h"] = opaque.shift(k)
    for w in settings.rolling_windows_h:
        rolling = opaque.rolling(w, min_periods=1)
        out[f"opaque_mean_{w}h"] = rolling.mean().reset_index(level=GROUP, drop=True)
        out[f"opaque_std_{w}h"] = rolling.std(ddof=0).reset_index(level=GROUP, drop=True)
    n = settings.tendency_h
    for column, name in (("pressure_hpa", "pressure"), ("temp_air_c", "temp"),
                         ("relative_humidity", "humidity"), ("opaque_cloud_tenths", "opaque")):
        out[f"{name}_change_{n}h"] = obs[column] - grouped[column].shift(n)

    out["history_complete"] = grouped.cumcount().to_numpy() >= settings.history_h
    return out


def model_rows(hourly: pd.DataFrame, horizons: tuple[int, ...] | list[int],
               settings: FeatureSettings) -> pd.DataFrame:
    """Cross each hour's features with the forecast horizons.

    Adds ``horizon_h``, ``target_time`` and the target hour's sun elevation and local hour,
    which are astronomy and so known at ``t``. Returns the id columns, ``target_time``,
    ``history_complete`` and :func:`feature_columns`, sorted by station, time, horizon.
    """
    parts = []
    for h in horizons:
        part = hourly.copy()
        part["horizon_h"] = float(h)  # float: MLflow schemas cannot hold missing ints
        part["target_time"] = part["time"] + pd.Timedelta(hours=int(h))
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    rows["target_sun_elevation_deg"] = np.nan
    for _, group in rows.groupby("station_id", sort=False):
        first = group.iloc[0]
        # horizons overlap: hour t+2 of one row is hour t+1 of the next, so each distinct
        # target hour is computed once
        codes, unique_times = pd.factorize(group["target_time"])
        sun = astro.sun_elevation(unique_times, first["latitude"], first["longitude"])[codes]
        rows.loc[group.index, "target_sun_elevation_deg"] = sun
    target_hour = _local_solar_hour(rows["target_time"], rows["longitude"])
    rows["target_hour_sin"] = np.sin(2 * np.pi * target_hour / 24)
    rows["target_hour_cos"] = np.cos(2 * np.pi * target_hour / 24)
    rows = rows.sort_values(["station_id", "time", "horizon_h"], kind="stable")
    columns = feature_columns(settings)
    # Models are exported to ONNX, which computes in float32: features are float32 values
    # (held in float64) so that scikit-learn and ONNX see exactly the same numbers.
    rows[columns] = rows[columns].astype(np.float32).astype(np.float64)
    keep = ["station_id", "time", "segment", "longitude", "target_time", "history_complete",
            *columns]
    return rows[keep].reset_index(drop=True)


def supervised_rows(
    observations: pd.DataFrame, label: LabelSettings, settings: FeatureSettings
) -> pd.DataFrame:
    """Training rows: features at ``t``, label ``clear`` at ``t + h``.

    Kept only where the history is complete, ``t + h`` lies in the same segment as ``t``,
    the target hour is night (sun below ``label.night_max_sun_elevation_deg``) and its
    opaque cloud cover was observed. ``clear`` is 1 when that cover is at most
    ``label.clear_max_opaque_tenths``.
    """
    hourly = hourly_features(observations, settings)
    rows = model_rows(hourly, label.horizons, settings)
    targets = observations[["station_id", "time", "segment", "opaque_cloud_tenths"]].rename(
        columns={"time": "target_time", "segment": "target_segment",
                 "opaque_cloud_tenths": "target_opaque_cloud_tenths"}
    )
    rows = rows.merge(targets, on=["station_id", "target_time"], how="inner", validate="m:1")
    keep = (
        rows["history_complete"]
        & (rows["target_segment"] == rows["segment"])
        & (rows["target_sun_elevation_deg"] < label.night_max_sun_elevation_deg)
        & rows["target_opaque_cloud_tenths"].notna()
    )
    rows = rows.loc[keep].drop(columns=["history_complete", "target_segment"])
    rows["clear"] = (
        rows["target_opaque_cloud_tenths"] <= label.clear_max_opaque_tenths
    ).astype("int8")
    return rows.sort_values(["station_id", "time", "horizon_h"], kind="stable").reset_index(
        drop=True
    )
