"""Batch scoring: a file of hourly observations -> P(clear) per horizon, through the same
feature function as training and the same ONNX bundle as the API.

Input: CSV or Parquet with ``station_id``, ``time`` (ISO 8601 with offset), ``latitude``,
``longitude``, ``elevation_m`` and any of the canonical weather columns. Output: one row per
(station, observed hour, horizon) with ``p_clear``.

Locally the file is streamed station by station in chunks of hours (each chunk carries the
history its first rows need); with ``engine="dask"`` each station's rows are scored on a
Dask cluster, so inputs larger than memory or many stations scale out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from starry_guide import astro, features
from starry_guide.config import FeatureSettings
from starry_guide.quality import PHYSICAL_RANGES
from starry_guide.serve.bundle import Bundle, load_bundle
from starry_guide.stations import WEATHER_COLUMNS

REQUIRED = ["station_id", "time", "latitude", "longitude", "elevation_m"]
OUTPUT_COLUMNS = ["station_id", "time", "horizon_h", "target_time", "p_clear"]


class BadRows(ValueError):
    """Rows that cannot be scored; the message lists them by row number."""


@dataclass
class Problems:
    rows: list[int]
    messages: list[str]


def read_observations(path: Path) -> pd.DataFrame:
    """Read the input file (CSV or Parquet)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"station_id": str, "time": str})
    raise BadRows(f"{path}: use a .csv or .parquet file (got '{path.suffix}')")


def check_rows(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, Problems]:
    """Parse and check every row; return the good rows and the problems (1-based data row
    numbers, as a spreadsheet shows them below the header)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BadRows(f"{source}: required column(s) {', '.join(missing)} missing; "
                      f"expected {', '.join(REQUIRED)} and weather columns")
    frame = frame.copy()
    messages, bad = [], np.zeros(len(frame), dtype=bool)
    times = pd.to_datetime(frame["time"], errors="coerce", utc=True, format="ISO8601")
    for i in np.flatnonzero(times.isna().to_numpy()):
        messages.append(f"row {i + 1}: field 'time' = {frame['time'].iloc[i]!r} is not an "
                        "ISO 8601 time with offset")
    bad |= times.isna().to_numpy()
    frame["time"] = times
    for column in WEATHER_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    for column, (lo, hi) in PHYSICAL_RANGES.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        wrong = (values.notna() & ~values.between(lo, hi)) | (values.isna()
                                                              & frame[column].notna())
        for i in np.flatnonzero(wrong.to_numpy())[:20]:
            messages.append(f"row {i + 1}: field '{column}' = {_show(frame[column].iloc[i])} "
                            f"is outside {lo}..{hi}")
        bad |= wrong.to_numpy()
        frame[column] = values
    for column in ("latitude", "longitude", "elevation_m"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    bad |= frame[["latitude", "longitude"]].isna().any(axis=1).to_numpy()
    duplicated = frame.duplicated(["station_id", "time"], keep="first").to_numpy() & ~bad
    for i in np.flatnonzero(duplicated)[:20]:
        messages.append(f"row {i + 1}: station {frame['station_id'].iloc[i]!r} already has "
                        f"an observation at {frame['time'].iloc[i].isoformat()}")
    bad |= duplicated
    return frame.loc[~bad], Problems(list(np.flatnonzero(bad) + 1), messages)


def _show(value) -> str:
    """A cell as a user wrote it: numbers plainly, text quoted."""
    if isinstance(value, int | float | np.number):
        return f"{float(value):g}"
    return repr(value)


def score_station(station: pd.DataFrame, bundle: Bundle, settings: FeatureSettings,
                  horizons: tuple[int, ...]) -> pd.DataFrame:
    """Score one station's rows (any length): the training feature core on its arrays, then
    ONNX. Runs of consecutive hours are scored apart: history never spans a gap."""
    if station.empty:
        return _empty_output()
    station = station.sort_values("time", kind="stable")
    seconds = astro.epoch_seconds(station["time"])
    run_start = np.ones(len(seconds), dtype=bool)
    run_start[1:] = np.diff(seconds) != 3600
    first = station.iloc[0]
    columns = {name: station[name].to_numpy(dtype=float)
               for name in [*WEATHER_COLUMNS, "latitude", "longitude"]}
    columns["sun_elevation_deg"] = astro.sun_elevation(seconds, first["latitude"],
                                                       first["longitude"])
    hourly = features.hourly_feature_arrays(columns, seconds, run_start, settings)
    complete = hourly.pop("history_complete")
    if not complete.any():
        return _empty_output()
    hourly = {name: values[complete] for name, values in hourly.items()}
    hourly["longitude"] = columns["longitude"][complete]
    matrix, _ = features.model_arrays(hourly, seconds[complete], horizons, settings)
    times = pd.DatetimeIndex(station["time"])[complete].repeat(len(horizons))
    horizon = np.tile(np.asarray(horizons, dtype=float), int(complete.sum()))
    return pd.DataFrame({
        "station_id": np.repeat(station["station_id"].to_numpy()[complete], len(horizons)),
        "time": times,
        "horizon_h": horizon,
        "target_time": times + pd.to_timedelta(horizon, unit="h"),
        "p_clear": bundle.predict_matrix(matrix),
    })


def station_chunks(frame: pd.DataFrame, chunk_hours: int,
                   history_h: int) -> Iterator[tuple[pd.DataFrame, pd.Timestamp]]:
    """Per station, chunks of ``chunk_hours`` rows, each preceded by the ``history_h`` rows
    its first hours need; yields (chunk, first time whose scores belong to this chunk)."""
    for _, station in frame.groupby("station_id", sort=True):
        station = station.sort_values("time", kind="stable")
        for start in range(0, len(station), chunk_hours):
            chunk = station.iloc[max(0, start - history_h):start + chunk_hours]
            yield chunk, station["time"].iloc[start]


def score_local(frame: pd.DataFrame, bundle: Bundle, chunk_hours: int = 20_000,
                progress: bool = True) -> pd.DataFrame:
    """Score in memory-bounded chunks with a progress bar."""
    spec = bundle.spec
    settings = FeatureSettings(tuple(spec["cloud_lags_h"]), tuple(spec["rolling_windows_h"]),
                               spec["tendency_h"])
    horizons = tuple(spec["horizons"])
    parts = []
    chunks = list(station_chunks(frame, chunk_hours, settings.history_h))
    for chunk, first_time in tqdm(chunks, desc="scoring", unit="chunk", disable=not progress):
        scored = score_station(chunk, bundle, settings, horizons)
        parts.append(scored[scored["time"] >= first_time])
    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def _score_partition(partition: pd.DataFrame, bundle_path: str) -> pd.DataFrame:
    bundle = _worker_bundle(bundle_path)
    spec = bundle.spec
    settings = FeatureSettings(tuple(spec["cloud_lags_h"]), tuple(spec["rolling_windows_h"]),
                               spec["tendency_h"])
    parts = [score_station(station, bundle, settings, tuple(spec["horizons"]))
             for _, station in partition.groupby("station_id", sort=True)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty_output()
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]


_BUNDLES: dict[str, Bundle] = {}


def _worker_bundle(path: str) -> Bundle:
    # each Dask worker verifies and opens the bundle once, not once per partition
    if path not in _BUNDLES:
        _BUNDLES[path] = load_bundle(Path(path))
    return _BUNDLES[path]


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame({"station_id": pd.Series(dtype=object),
                         "time": pd.Series(dtype="datetime64[us, UTC]"),
                         "horizon_h": pd.Series(dtype=float),
                         "target_time": pd.Series(dtype="datetime64[us, UTC]"),
                         "p_clear": pd.Series(dtype=float)})


def score_dask(frame: pd.DataFrame, bundle_path: Path, scheduler: str | None = None,
               n_workers: int = 2) -> pd.DataFrame:
    """Score on Dask: stations are spread over partitions (a station never splits), each
    partition is scored on a worker. ``scheduler``: a running scheduler's address, else a
    LocalCluster of ``n_workers`` processes."""
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    stations = sorted(frame["station_id"].unique())
    n_parts = max(1, min(len(stations), n_workers * 2))
    part_of = {s: i % n_parts for i, s in enumerate(stations)}
    keyed = frame.assign(_part=frame["station_id"].map(part_of)).set_index("_part").sort_index()
    ddf = dd.from_pandas(keyed, npartitions=n_parts, sort=True)
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        result = ddf.map_partitions(_score_partition, str(bundle_path),
                                    meta=_empty_output()).compute()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return result.sort_values(["station_id", "time", "horizon_h"], kind="stable").reset_index(
        drop=True)


def write_output(scores: pd.DataFrame, path: Path) -> None:
    """Write scores to CSV or Parquet, atomically (a failed run leaves no half file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if path.suffix.lower() in (".parquet", ".pq"):
        scores.to_parquet(tmp, index=False)
    else:
        scores.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    tmp.replace(path)
