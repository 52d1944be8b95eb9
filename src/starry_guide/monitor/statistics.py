"""The monitor's statistics: time chunks, histograms on reference deciles, the
Jensen-Shannon distance, thresholds from the reference's own variation, sustained runs
(the method: :mod:`starry_guide.monitor`). Pure functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from starry_guide.core.schema import WEATHER_COLUMNS

#: features that are functions of the clock and the place only: their "drift" is the
#: calendar or a new station's coordinates, not a change in the data, so they are not judged
CALENDAR_FEATURES = ("sun_elevation_deg", "latitude", "hour_sin", "hour_cos", "season_sin",
                     "season_cos", "horizon_h", "target_sun_elevation_deg", "target_hour_sin",
                     "target_hour_cos")
#: the category users report and the sensor's category at the same hour
FEEDBACK_CATEGORIES = ("clear", "partly", "cloudy")
NO_TRAFFIC = "no production traffic yet"
#: the Monday all chunks are counted from (1970-01-05 00:00 UTC)
_EPOCH_MONDAY = pd.Timestamp("1970-01-05", tz="UTC")


def feature_sensors(feature: str) -> tuple[str, ...]:
    """The sensor column(s) a model feature is computed from."""
    if feature.startswith("opaque_"):
        return ("opaque_cloud_tenths",)
    if feature.startswith("temp_change"):
        return ("temp_air_c",)
    if feature.startswith("humidity_change"):
        return ("relative_humidity",)
    if feature.startswith("pressure_change"):
        return ("pressure_hpa",)
    if feature == "dew_point_spread_c":
        return ("temp_air_c", "temp_dew_c")
    if feature in ("wind_u_ms", "wind_v_ms"):
        return ("wind_speed_ms", "wind_direction_deg")
    return (feature,) if feature in WEATHER_COLUMNS else ()


# --------------------------------------------------------------------------- chunks


def chunk_start(times: pd.Series | pd.DatetimeIndex, days: int = 7) -> pd.Series:
    """The start (UTC, ISO date) of the chunk each time falls in: chunks are ``days`` long,
    counted from Monday 1970-01-05, so a 7-day chunk is a calendar week Monday-Sunday."""
    times = pd.to_datetime(pd.Series(times), utc=True)
    index = (times - _EPOCH_MONDAY) // pd.Timedelta(days=days)
    # a year of hourly rows falls in ~53 chunks: format each chunk's start once, not each row
    chunks = index.drop_duplicates()
    labels = (_EPOCH_MONDAY + pd.to_timedelta(chunks * days, unit="D")).dt.strftime("%Y-%m-%d")
    return index.map(dict(zip(chunks, labels, strict=True))).astype(labels.dtype)


# --------------------------------------------------------------------------- statistics


def decile_edges(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates merged)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of ``edges`` plus a last bin for missing values."""
    values = np.asarray(values, dtype=float)
    ok = ~np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[ok], side="right"),
                         minlength=len(edges) + 1).astype(float)
    return np.append(counts, float((~ok).sum()))


def js_distance(counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, 0..1) between two histograms; 0 when either is
    empty."""
    if counts.sum() == 0 or reference_counts.sum() == 0:
        return 0.0
    return float(np.nan_to_num(jensenshannon(counts, reference_counts, base=2)))


def upper_threshold(reference_values: np.ndarray, sigma: float, floor: float = 0.0) -> float:
    """``mean + sigma x std`` of a statistic over the reference's chunks (at least ``floor``
    above the mean): the threshold a production chunk's value must exceed to raise an alert."""
    values = np.asarray(reference_values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("inf")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean + max(sigma * std, floor)


def sustained(flags: np.ndarray, n: int) -> np.ndarray:
    """True at each position that ends a run of at least ``n`` consecutive True flags."""
    flags = np.asarray(flags, dtype=bool)
    run = np.zeros(len(flags), dtype=int)
    for i, flag in enumerate(flags):
        run[i] = (run[i - 1] + 1 if i else 1) if flag else 0
    return run >= n


def cover_category(cover: np.ndarray, clear_max: float) -> np.ndarray:
    """``clear`` (opaque cover <= clear_max), ``cloudy`` (>= 10 - clear_max), else
    ``partly``; None where the cover is missing."""
    cover = np.asarray(cover, dtype=float)
    out = np.where(cover <= clear_max, "clear",
                   np.where(cover >= 10 - clear_max, "cloudy", "partly")).astype(object)
    out[np.isnan(cover)] = None
    return out
