"""Batch scoring: a file of hourly observations -> P(clear) per horizon, through the same
feature function as training and the same ONNX bundle as the API.

Input: CSV or Parquet with ``station_id``, ``time`` (ISO 8601 with offset), ``latitude``,
``longitude``, ``elevation_m`` and any of the canonical weather columns. Output: one row per
(station, observed hour, horizon) with ``p_clear``.

Locally the file is read into memory and scored station by station in chunks of hours
(each chunk carries the history its first rows need), with a progress bar. With
``--engine dask`` the client never holds the file: the workers read it in blocks, check
every row (row numbers stay the file's), regroup each station's rows with a shuffle, score
them and write the output — for inputs larger than memory, or a cluster.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from starry_guide.artifacts.bundle import Bundle, load_bundle
from starry_guide.config import FeatureSettings
from starry_guide.core import astro, features, inference
from starry_guide.core.quality import PHYSICAL_RANGES, PLACE_RANGES
from starry_guide.core.schema import WEATHER_COLUMNS

REQUIRED = ["station_id", "time", "latitude", "longitude", "elevation_m"]
OUTPUT_COLUMNS = ["station_id", "time", "horizon_h", "target_time", "p_clear"]


class BadRows(ValueError):
    """Rows that cannot be scored; the message lists them by row number."""


@dataclass
class Problems:
    rows: list[int]
    messages: list[str]


def _file_format(path: Path) -> str:
    """``"parquet"`` or ``"csv"``, by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise BadRows(f"{path}: use a .csv or .parquet file (got '{Path(path).suffix}')")


def _require_columns(columns, source: str) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BadRows(f"{source}: required column(s) {', '.join(missing)} missing; "
                      f"expected {', '.join(REQUIRED)} and weather columns")


def read_observations(path: Path) -> pd.DataFrame:
    """Read the input file (CSV or Parquet)."""
    if _file_format(path) == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"station_id": str, "time": str})


def check_rows(frame: pd.DataFrame, source: str,
               first_row: int = 0) -> tuple[pd.DataFrame, Problems]:
    """Parse and check every row; return the good rows and the problems (1-based data row
    numbers, as a spreadsheet shows them below the header; ``first_row`` rows come before
    ``frame`` in the file)."""
    _require_columns(frame.columns, source)
    frame = frame.copy()
    messages, bad = [], np.zeros(len(frame), dtype=bool)
    times = pd.to_datetime(frame["time"], errors="coerce", utc=True, format="ISO8601")
    for i in np.flatnonzero(times.isna().to_numpy()):
        messages.append(f"row {first_row + i + 1}: field 'time' = {frame['time'].iloc[i]!r} "
                        "is not an ISO 8601 time with offset")
    bad |= times.isna().to_numpy()
    first = pd.Timestamp(astro.FIRST_DATE, tz="UTC")
    last = pd.Timestamp(astro.LAST_DATE, tz="UTC") + pd.Timedelta(days=1)
    outside = (times.notna() & ((times < first) | (times >= last))).to_numpy()
    for i in np.flatnonzero(outside)[:20]:
        messages.append(f"row {first_row + i + 1}: field 'time' = {frame['time'].iloc[i]!r} "
                        f"is outside {astro.FIRST_DATE}..{astro.LAST_DATE}, the range of the "
                        "bundled ephemeris")
    bad |= outside
    frame["time"] = times
    for column in WEATHER_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    for column, (lo, hi) in PHYSICAL_RANGES.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        wrong = (values.notna() & ~values.between(lo, hi)) | (values.isna()
                                                              & frame[column].notna())
        for i in np.flatnonzero(wrong.to_numpy())[:20]:
            messages.append(f"row {first_row + i + 1}: field '{column}' = "
                            f"{_show(frame[column].iloc[i])} is outside {lo}..{hi}")
        bad |= wrong.to_numpy()
        frame[column] = values
    for column in ("latitude", "longitude", "elevation_m"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
        lo, hi = PLACE_RANGES[column]
        wrong = (frame[column].notna() & ~frame[column].between(lo, hi)).to_numpy() & ~bad
        for i in np.flatnonzero(wrong)[:20]:
            messages.append(f"row {first_row + i + 1}: field '{column}' = "
                            f"{_show(frame[column].iloc[i])} is outside {lo}..{hi}")
        bad |= wrong
    no_place = frame[["latitude", "longitude"]].isna().any(axis=1).to_numpy() & ~bad
    for i in np.flatnonzero(no_place)[:20]:
        messages.append(f"row {first_row + i + 1}: fields 'latitude', 'longitude' = "
                        f"{_show(frame['latitude'].iloc[i])}, "
                        f"{_show(frame['longitude'].iloc[i])} are not both numbers")
    bad |= no_place
    duplicated = frame.duplicated(["station_id", "time"], keep="first").to_numpy() & ~bad
    for i in np.flatnonzero(duplicated)[:20]:
        messages.append(f"row {first_row + i + 1}: station {frame['station_id'].iloc[i]!r} "
                        f"already has an observation at {frame['time'].iloc[i].isoformat()}")
    bad |= duplicated
    return frame.loc[~bad], Problems((np.flatnonzero(bad) + 1 + first_row).tolist(), messages)


def _show(value) -> str:
    """A cell as a user wrote it: numbers plainly (also when read as text), text quoted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return repr(value)
    if isinstance(value, int | float | np.number):
        return f"{float(value):g}"
    return repr(value)


def score_station(station: pd.DataFrame, bundle: Bundle, settings: FeatureSettings,
                  horizons: tuple[int, ...]) -> pd.DataFrame:
    """Score one station's rows (any length) through the one inference chain
    (:func:`starry_guide.core.inference.infer`: training's repairs and features, ONNX, the
    station's own recalibration when the bundle has one for its id). Runs of consecutive
    hours are scored apart: history never spans a gap."""
    if station.empty:
        return _empty_output()
    station = station.sort_values("time", kind="stable")
    seconds = astro.epoch_seconds(station["time"])
    ids = station["station_id"].to_numpy()
    columns = {name: station[name].to_numpy(dtype=float) for name in features.INPUT_COLUMNS}
    result = inference.infer(columns, seconds, inference.runs_of_hours(seconds, ids), bundle,
                             settings, horizons, station_ids=ids)
    if not len(result.issued):
        return _empty_output()
    times = pd.DatetimeIndex(station["time"])[result.issued].repeat(len(horizons))
    horizon = np.tile(np.asarray(horizons, dtype=float), len(result.issued))
    return pd.DataFrame({
        "station_id": np.repeat(ids[result.issued], len(horizons)),
        "time": times,
        "horizon_h": horizon,
        "target_time": times + pd.to_timedelta(horizon, unit="h"),
        "p_clear": result.p_clear.reshape(-1),
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
    settings, horizons = bundle.feature_settings, bundle.horizons
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
    # a repeated (station, hour) keeps its first row, as check_rows does for the local engine
    partition = partition.sort_values("_row").drop_duplicates(["station_id", "time"])
    parts = [score_station(station, bundle, bundle.feature_settings, bundle.horizons)
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
    return pd.DataFrame({"station_id": pd.Series(dtype="str"),
                         "time": pd.Series(dtype="datetime64[us, UTC]"),
                         "horizon_h": pd.Series(dtype=float),
                         "target_time": pd.Series(dtype="datetime64[us, UTC]"),
                         "p_clear": pd.Series(dtype=float)})


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator:
    """A Dask client on ``scheduler`` (an address), else on a LocalCluster of ``n_workers``
    single-threaded processes, closed on exit."""
    from dask.distributed import Client, LocalCluster

    # the scheduler logs every finished shuffle as a WARNING: routine, not a problem
    logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _read_dask(path: Path, blocksize: str | int):
    import dask.dataframe as dd

    if _file_format(path) == "parquet":
        return dd.read_parquet(path, split_row_groups=True)  # a partition per row group
    # every column as text: blocks cannot disagree about types, and check_rows converts and
    # reports each bad value by row, as it does for the local engine
    return dd.read_csv(path, dtype=str, blocksize=blocksize)


@lru_cache(maxsize=8)
def _row_offsets(path: str, modified_ns: int, size: int,
                 blocksize: str | int) -> tuple[int, ...]:
    """How many rows come before each block of the file: one counting pass, shared by
    :func:`check_dask` and :func:`score_dask` (the file's time and size are in the key)."""
    lengths = _read_dask(Path(path), blocksize).map_partitions(len).compute().tolist()
    return tuple(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist())


def _check_partition(part: pd.DataFrame, source: str,
                     first_row: int) -> tuple[pd.DataFrame, Problems]:
    part = part.reset_index(drop=True)
    part["_row"] = np.arange(first_row + 1, first_row + len(part) + 1)
    good, problems = check_rows(part, source, first_row)
    good = good.astype({"time": "datetime64[us, UTC]"})
    return good.reset_index(drop=True), problems


def _duplicates(keys: pd.DataFrame) -> pd.DataFrame:
    keys = keys.sort_values("_row")
    return keys[keys.duplicated(["station_id", "time"], keep="first")]


def _checked_rows(source: Path, blocksize: str | int):
    """The file's good rows as a lazy Dask frame (with ``_row``, the file's row number),
    and the per-partition problems as delayed values. Workers read the file: the client
    never holds it."""
    import dask
    import dask.dataframe as dd

    raw = _read_dask(source, blocksize)
    _require_columns(raw.columns, str(source))
    stat = source.stat()
    offsets = _row_offsets(str(source.resolve()), stat.st_mtime_ns, stat.st_size, blocksize)
    checked = [dask.delayed(_check_partition, nout=2)(part, str(source), offset)
               for part, offset in zip(raw.to_delayed(), offsets, strict=True)]
    meta = _check_partition(raw._meta, str(source), 0)[0]
    good = dd.from_delayed([c[0] for c in checked], meta=meta, verify_meta=False)
    return good, [c[1] for c in checked]


def _fan_out(frame) -> int:
    """Partitions to regroup stations into: enough for every worker to get some, even when
    the file was read as one block."""
    from dask.distributed import get_client

    workers = len(get_client().scheduler_info(n_workers=-1)["workers"])
    return max(frame.npartitions, 2 * workers)


@contextmanager
def _one_graph() -> Iterator[None]:
    # computing delayed values and dataframe expressions together makes Dask materialise
    # the expressions, and it warns; that is what we want: one pass over the file for both
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Computing mixed collections",
                                category=UserWarning)
        yield


def check_dask(source: Path, blocksize: str | int = "64MB") -> Problems:
    """Every problem in the file, found on the cluster — including an hour repeated in
    another part of the file."""
    import dask

    good, problems = _checked_rows(Path(source), blocksize)
    keys = good[["station_id", "time", "_row"]].shuffle("station_id",
                                                        npartitions=_fan_out(good))
    duplicates = keys.map_partitions(_duplicates, meta=keys._meta)
    with _one_graph():
        parts, repeated = dask.compute(problems, duplicates)
    rows = [row for part in parts for row in part.rows]
    messages = [message for part in parts for message in part.messages]
    for row in repeated.sort_values("_row").itertuples():
        rows.append(int(row._3))
        if len(messages) < 1000:
            messages.append(f"row {row._3}: station {row.station_id!r} already has an "
                            f"observation at {row.time.isoformat()}")
    order = np.argsort(rows, kind="stable")
    return Problems([rows[i] for i in order], messages)


def score_dask(source: Path, target: Path, bundle_path: Path,
               blocksize: str | int = "64MB") -> tuple[int, int]:
    """Score a file on the current Dask client (see :func:`dask_client`): workers read it,
    drop bad rows (report them first with :func:`check_dask`), gather each station's rows
    by a shuffle and score them; the output is written by the workers, atomically.

    A ``.parquet`` target is a folder of part files (read it back with ``pd.read_parquet``),
    each sorted by station, time and horizon; a ``.csv`` target is one file.

    Returns the numbers of scores and of stations.
    """
    import shutil

    import dask

    source, target = Path(source), Path(target)
    good, _ = _checked_rows(source, blocksize)
    scores = good.shuffle("station_id", npartitions=_fan_out(good)).map_partitions(
        _score_partition, str(bundle_path), meta=_empty_output())
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.unlink(missing_ok=True)
    if target.suffix.lower() in (".parquet", ".pq"):
        with warnings.catch_warnings():
            # pyarrow's schema inference reads Series.values, deprecated for tz-aware times
            # in pandas 3.1; the schema it infers is right
            warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
            write = scores.to_parquet(partial, write_index=False, compute=False)
    else:
        write = scores.to_csv(str(partial), single_file=True, index=False, compute=False,
                              float_format="%.6g", lineterminator="\n")
    counts = scores.map_partitions(
        lambda part: pd.DataFrame({"scores": [len(part)],
                                   "stations": [part["station_id"].nunique()]}),
        meta=pd.DataFrame({"scores": pd.Series(dtype=int), "stations": pd.Series(dtype=int)}))
    with _one_graph():
        _, counted = dask.compute(write, counts)
    if target.is_dir():
        shutil.rmtree(target)
    partial.replace(target)
    return int(counted["scores"].sum()), int(counted["stations"].sum())


def write_output(scores: pd.DataFrame, path: Path) -> None:
    """Write scores to CSV or Parquet, atomically (a failed run leaves no half file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if path.suffix.lower() in (".parquet", ".pq"):
        scores.to_parquet(tmp, index=False)
    else:
        scores.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    tmp.replace(path)
