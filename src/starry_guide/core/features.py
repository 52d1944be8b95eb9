"""The one feature function: hourly observations -> model rows (t, h).

The arithmetic lives in one NumPy core, :func:`hourly_feature_arrays` and
:func:`model_arrays`; training (prepare stage) reaches it through the DataFrame wrappers
:func:`hourly_features` and :func:`model_rows`, batch scoring and the API call it on arrays.
So a model never sees features computed two different ways (tests compare the paths).

Rules that keep the rows honest:

* every feature at ``t`` uses observations at or before ``t`` only;
* history (lags, rolling windows, tendencies) never reaches across a ``segment`` boundary —
  TMY files splice months from different years, and the hour before 1 March may be 1987;
* the target hour ``t + h`` lies in the same segment as ``t`` (enforced in
  :func:`supervised_rows`); its sun position is astronomy, known in advance, so it is a feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd

from starry_guide.config import FeatureSettings, LabelSettings
from starry_guide.core import astro
from starry_guide.core.schema import LABEL_ORIGIN

#: observation columns used as they are, at time t
CURRENT_COLUMNS = [
    "opaque_cloud_tenths",
    "total_cloud_tenths",
    "temp_air_c",
    "relative_humidity",
    "wind_speed_ms",
    "visibility_km",
    "ceiling_m",
    "precipitable_water_cm",
    "sun_elevation_deg",
]
#: read and carried along, but never model inputs: they would tell stations apart (latitude
#: is a station id; absolute pressure is mostly the station's elevation). Latitude places the
#: sun and the seasons; pressure enters through its tendency.
CONTEXT_COLUMNS = ["latitude", "pressure_hpa"]


def feature_columns(settings: FeatureSettings) -> list[str]:
    """Model input columns, in the order every model sees them."""
    return list(_feature_columns(settings))


@lru_cache(maxsize=16)
def _feature_columns(settings: FeatureSettings) -> tuple[str, ...]:
    lags = [f"opaque_lag_{k}h" for k in settings.cloud_lags_h]
    rolling = [
        name
        for w in settings.rolling_windows_h
        for name in (f"opaque_mean_{w}h", f"opaque_std_{w}h")
    ]
    n = settings.tendency_h
    tendencies = [f"pressure_change_{n}h", f"temp_change_{n}h", f"humidity_change_{n}h",
                  f"opaque_change_{n}h", f"dew_point_spread_change_{n}h"]
    derived = ["dew_point_spread_c", "wind_u_ms", "wind_v_ms", "hour_sin", "hour_cos",
               "season_sin", "season_cos"]
    target = ["horizon_h", "target_sun_elevation_deg", "target_hour_sin", "target_hour_cos"]
    return (*CURRENT_COLUMNS, *derived, *lags, *rolling, *tendencies, *target)


#: what :func:`hourly_feature_arrays` reads from each observation
INPUT_COLUMNS = [*(c for c in CURRENT_COLUMNS if c != "sun_elevation_deg"), *CONTEXT_COLUMNS,
                 "longitude", "temp_dew_c", "wind_direction_deg"]

_TARGET_COLUMNS = ("horizon_h", "target_sun_elevation_deg", "target_hour_sin", "target_hour_cos")


def local_solar_hour(seconds: np.ndarray, longitude: np.ndarray | float) -> np.ndarray:
    """Mean local solar hour (0-24) at whole minutes, from UTC epoch seconds and longitude."""
    utc_hour = (seconds // 60 % 1440) / 60.0
    return np.mod(utc_hour + np.asarray(longitude, dtype=float) / 15.0, 24.0)


def _day_of_year(seconds: np.ndarray) -> np.ndarray:
    days = (seconds // 86400).astype("datetime64[D]")
    return (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1


def _history(values: np.ndarray, depth: int, position: np.ndarray) -> np.ndarray:
    """Each row's values 0..``depth`` rows back in its own run: shape (n, depth + 1, ...),
    NaN where that row lies before the run's start."""
    back = np.arange(depth + 1)
    source = np.maximum(np.arange(len(values))[:, None] - back[None, :], 0)
    inside = back[None, :] <= position[:, None]
    if values.ndim == 2:
        inside = inside[:, :, None]
    return np.where(inside, values[source], np.nan)


def _mean_std(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise mean and population std skipping NaN; NaN for rows with no value."""
    valid = ~np.isnan(window)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, window, 0.0).sum(axis=1) / count
        deviation = np.where(valid, window - mean[:, None], 0.0)
        std = np.sqrt((deviation * deviation).sum(axis=1) / count)
    return mean, std


def hourly_feature_arrays(columns: Mapping[str, np.ndarray], seconds: np.ndarray,
                          run_start: np.ndarray, settings: FeatureSettings
                          ) -> dict[str, np.ndarray]:
    """The feature arithmetic on plain arrays — the core that training, batch scoring and
    the API share (:func:`hourly_features` wraps it for data frames).

    Parameters
    ----------
    columns : :data:`INPUT_COLUMNS` as float arrays, one value per row
    seconds : UTC epoch seconds of each row
    run_start : True where a row begins a run of consecutive hours (a new station or
        segment); rows are in time order inside each run
    settings : lag, window and tendency lengths

    Returns
    -------
    The per-hour features in :func:`feature_columns` order (without the target columns),
    and ``history_complete``.
    """
    n = len(seconds)
    index = np.arange(n)
    position = index - np.maximum.accumulate(np.where(run_start, index, 0))
    # the sun at t is astronomy: computed here, the same way for training, batch and the API
    sun = astro.sun_elevation(seconds, columns["latitude"], columns["longitude"])
    out = {name: sun if name == "sun_elevation_deg" else np.asarray(columns[name], dtype=float)
           for name in [*CURRENT_COLUMNS, *CONTEXT_COLUMNS]}

    out["dew_point_spread_c"] = out["temp_air_c"] - columns["temp_dew_c"]
    direction = np.deg2rad(columns["wind_direction_deg"])
    out["wind_u_ms"] = -out["wind_speed_ms"] * np.sin(direction)
    out["wind_v_ms"] = -out["wind_speed_ms"] * np.cos(direction)
    hour = local_solar_hour(seconds, columns["longitude"])
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    # the sign of latitude flips the seasons: "winter" means the same thing everywhere
    season = (2 * np.pi * (_day_of_year(seconds) - 1) / 365.25
              + np.where(out["latitude"] < 0, np.pi, 0.0))
    out["season_sin"] = np.sin(season)
    out["season_cos"] = np.cos(season)

    # the opaque cover 0..history_h hours back, inside the run: lags and windows read it
    opaque = _history(out["opaque_cloud_tenths"], settings.history_h, position)
    for k in settings.cloud_lags_h:
        out[f"opaque_lag_{k}h"] = opaque[:, k]
    for w in settings.rolling_windows_h:
        out[f"opaque_mean_{w}h"], out[f"opaque_std_{w}h"] = _mean_std(opaque[:, :w])
    n_h = settings.tendency_h
    tendencies = (("pressure_hpa", "pressure"), ("temp_air_c", "temp"),
                  ("relative_humidity", "humidity"), ("opaque_cloud_tenths", "opaque"),
                  ("dew_point_spread_c", "dew_point_spread"))
    now = np.column_stack([out[column] for column, _ in tendencies])
    change = now - _history(now, n_h, position)[:, n_h]
    for j, (_, name) in enumerate(tendencies):
        out[f"{name}_change_{n_h}h"] = change[:, j]

    out["history_complete"] = position >= settings.history_h
    return out


def segment_starts(station: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """True where a row of a frame sorted by station and time begins a new station or
    segment: feature history never crosses either (see :func:`hourly_features`)."""
    run_start = np.ones(len(station), dtype=bool)
    run_start[1:] = (station[1:] != station[:-1]) | (segment[1:] != segment[:-1])
    return run_start


def hourly_features(observations: pd.DataFrame, settings: FeatureSettings) -> pd.DataFrame:
    """Features known at each observed hour ``t``.

    Parameters
    ----------
    observations : canonical hourly frame (see :mod:`starry_guide.ingest.stations`), one or many
        stations, hourly and contiguous inside each ``(station_id, segment)``.
    settings : lag, window and tendency lengths.

    Returns
    -------
    One row per input row, sorted by station and time, with the id columns, the per-hour
    features, and ``history_complete`` — True when the full history window lies inside the
    segment.
    """
    obs = observations.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    run_start = segment_starts(obs["station_id"].to_numpy(), obs["segment"].to_numpy())
    arrays = hourly_feature_arrays(
        {name: obs[name].to_numpy(dtype=float) for name in INPUT_COLUMNS},
        astro.epoch_seconds(obs["time"]), run_start, settings)
    return pd.DataFrame({"station_id": obs["station_id"], "time": obs["time"],
                         "segment": obs["segment"], "longitude": obs["longitude"], **arrays})


def model_arrays(hourly: Mapping[str, np.ndarray], seconds: np.ndarray,
                 horizons: tuple[int, ...] | list[int], settings: FeatureSettings
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cross each hour's features with the forecast horizons — the core of
    :func:`model_rows`, on plain arrays.

    Returns
    -------
    The float32 feature matrix, one row per (hour, horizon) in that order with columns in
    :func:`feature_columns` order, and the target hours' UTC epoch seconds. ONNX computes in
    float32, so scikit-learn is trained on exactly these float32 values too.
    """
    n_horizons = len(horizons)
    horizon = np.tile(np.asarray(horizons, dtype=float), len(seconds))
    target_seconds = np.repeat(seconds, n_horizons) + (horizon * 3600).astype(np.int64)
    latitude = np.repeat(np.asarray(hourly["latitude"], dtype=float), n_horizons)
    longitude = np.repeat(np.asarray(hourly["longitude"], dtype=float), n_horizons)
    # the target hour's sun and local hour are astronomy, known at t
    target_hour = local_solar_hour(target_seconds, longitude)
    target = {
        "horizon_h": horizon,
        "target_sun_elevation_deg": astro.sun_elevation(target_seconds, latitude, longitude),
        "target_hour_sin": np.sin(2 * np.pi * target_hour / 24),
        "target_hour_cos": np.cos(2 * np.pi * target_hour / 24),
    }
    hourly_names, hourly_index, target_index = _matrix_layout(settings)
    matrix = np.empty((len(horizon), len(hourly_index) + len(target_index)), dtype=np.float32)
    # each hour's features, once per horizon: one float32 block, repeated in one call
    block = np.empty((len(seconds), len(hourly_names)), dtype=np.float32)
    for j, name in enumerate(hourly_names):
        block[:, j] = hourly[name]
    matrix[:, hourly_index] = np.repeat(block, n_horizons, axis=0)
    for name, values in target.items():
        matrix[:, target_index[name]] = values
    return matrix, target_seconds


@lru_cache(maxsize=16)
def _matrix_layout(settings: FeatureSettings) -> tuple[tuple[str, ...], np.ndarray, dict]:
    """Where :func:`model_arrays` puts each column: the per-hour feature names, their
    column indices, and each target column's index (worked out once per settings)."""
    columns = _feature_columns(settings)
    hourly_names = tuple(name for name in columns if name not in _TARGET_COLUMNS)
    return (hourly_names, np.array([columns.index(name) for name in hourly_names]),
            {name: columns.index(name) for name in _TARGET_COLUMNS})


def model_rows(hourly: pd.DataFrame, horizons: tuple[int, ...] | list[int],
               settings: FeatureSettings) -> pd.DataFrame:
    """Cross each hour's features with the forecast horizons.

    Adds ``horizon_h``, ``target_time`` and the target hour's sun elevation and local hour,
    which are astronomy and so known at ``t``. Returns the id columns, ``target_time``,
    ``history_complete`` and :func:`feature_columns` (float32 values held as float64), in
    the order of ``hourly`` (station, time — as :func:`hourly_features` sorts it), each
    hour's horizons in order.
    """
    columns = feature_columns(settings)
    needed = [c for c in columns if c not in _TARGET_COLUMNS]
    matrix, target_seconds = model_arrays(
        {name: hourly[name].to_numpy(dtype=float) for name in [*needed, "longitude",
                                                                "latitude"]},
        astro.epoch_seconds(hourly["time"]), horizons, settings)
    n_horizons = len(horizons)
    times = pd.DatetimeIndex(hourly["time"]).repeat(n_horizons)
    ids = {
        "station_id": hourly["station_id"].to_numpy().repeat(n_horizons),
        "time": times,
        "segment": hourly["segment"].to_numpy().repeat(n_horizons),
        "longitude": hourly["longitude"].to_numpy().repeat(n_horizons),
        "target_time": times + pd.to_timedelta(
            np.tile(np.asarray(horizons, dtype=np.int64), len(hourly)), unit="h"),
        "history_complete": hourly["history_complete"].to_numpy().repeat(n_horizons),
    }
    frame = pd.DataFrame(ids)
    features = pd.DataFrame(matrix.astype(np.float64), columns=columns)
    return pd.concat([frame, features], axis=1)


def supervised_rows(
    observations: pd.DataFrame, label: LabelSettings, settings: FeatureSettings
) -> pd.DataFrame:
    """Training rows: features at ``t``, label ``clear`` at ``t + h``.

    Kept only where the history is complete, ``t + h`` lies in the same segment as ``t``,
    the target hour is night (sun below ``label.night_max_sun_elevation_deg``) and its
    opaque cloud cover was observed. ``clear`` is 1 when that cover is at most
    ``label.clear_max_opaque_tenths``. When ``observations`` carry
    :data:`~starry_guide.core.schema.LABEL_ORIGIN`, each row keeps its target hour's as
    ``target_label_origin``.
    """
    hourly = hourly_features(observations, settings)
    rows = model_rows(hourly, label.horizons, settings)
    target_columns = ["station_id", "time", "segment", "opaque_cloud_tenths"]
    if LABEL_ORIGIN in observations.columns:  # kept for evaluation on observed labels only
        target_columns.append(LABEL_ORIGIN)
    targets = observations[target_columns].rename(
        columns={"time": "target_time", "segment": "target_segment",
                 "opaque_cloud_tenths": "target_opaque_cloud_tenths",
                 LABEL_ORIGIN: "target_label_origin"}
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
