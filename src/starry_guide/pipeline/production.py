"""Production observations as a data source: the serving store's snapshot, read like any
station record, validated by the same policy, split by time.

``starry store snapshot`` (or ``starry retrain``) writes what the feed received into
``data/production/`` (sorted Parquet and a manifest). The ``prepare`` stage reads its
observations here as one more source, per station, with provenance (``source`` =
``production`` on every row and in the data-quality report):

* each station's hours go through :func:`starry_guide.core.quality.assess` — the ranges, the dew
  point rule, the stuck-sensor rule, the label checks — exactly as a station file does; a
  production station with too few usable night hours is *skipped* (reported), never fatal:
  the research stations alone still make a pipeline;
* the **most recent** ``production.recent_window_days`` of each station are held out by time
  (split ``recent``): no model trains on them, and the champion gate judges challengers on
  them — what matters now;
* older production hours train (split ``train``), except those whose month is one of the
  research validation or held-out months (split ``excluded``): a production record can
  repeat a research station's year (the demo replays the research files themselves), and
  must never teach a model the answers it is validated on.

Pure functions over frames, apart from :func:`read_snapshot`, which only reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from starry_guide.artifacts import snapshot
from starry_guide.config import Settings
from starry_guide.core.schema import WEATHER_COLUMNS, StationData

SOURCE = "production"
RESEARCH = "research"


class ProductionDataError(ValueError):
    """The snapshot cannot be read; the message names the file and what to do."""


def read_snapshot(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The snapshot's ``observations`` and ``stations`` tables (both empty when ``folder``
    holds no snapshot)."""
    folder = Path(folder)
    paths = {name: folder / f"{name}.parquet" for name in ("observations", "stations")}
    if not paths["observations"].is_file():
        return pd.DataFrame(), pd.DataFrame()
    tables = {}
    for name in paths:
        try:
            tables[name] = snapshot.read_table(folder, name)
        except snapshot.SnapshotError as exc:
            raise ProductionDataError(f"{exc}, or set params.yaml 'production.use: false'"
                                      ) from None
    missing = [c for c in ("station_id", "time", "opaque_cloud_tenths")
               if c not in tables["observations"].columns]
    missing += [f"stations.{c}" for c in ("station_id", "latitude", "longitude", "elevation_m")
                if c not in tables["stations"].columns]
    if missing:
        raise ProductionDataError(
            f"{paths['observations']}: column(s) {', '.join(missing)} missing — not a "
            "`starry store snapshot`; take a new one")
    return tables["observations"], tables["stations"]


def station_records(observations: pd.DataFrame, stations: pd.DataFrame,
                    source: Path) -> list[StationData]:
    """One :class:`~starry_guide.core.schema.StationData` per production station, in the
    canonical columns of a station file (segment = local solar year and month), ready for
    :func:`starry_guide.core.quality.assess`."""
    records = []
    places = stations.set_index("station_id")
    for station_id, part in observations.groupby("station_id", sort=True):
        station_id = str(station_id)
        if station_id not in places.index:
            raise ProductionDataError(
                f"{source}: station '{station_id}' has observations but is not in "
                "stations.parquet; take a new snapshot")
        place = places.loc[station_id]
        # the store keeps UTC; local *solar* time names the month (no civil time zone is known)
        tz = float(np.round(float(place["longitude"]) / 15.0))
        times = pd.to_datetime(part["time"], utc=True)
        local = times + pd.Timedelta(hours=tz)
        frame = pd.DataFrame({
            "station_id": station_id,
            "time": times.to_numpy(),
            "segment": (local.dt.year * 100 + local.dt.month).astype("int64").to_numpy(),
            "latitude": float(place["latitude"]),
            "longitude": float(place["longitude"]),
            "elevation_m": float(place["elevation_m"]),
        })
        for name in WEATHER_COLUMNS:
            frame[name] = (pd.to_numeric(part[name], errors="coerce").astype("float64").to_numpy()
                           if name in part.columns else np.nan)
        meta = {"name": str(place.get("name", station_id)), "latitude": float(place["latitude"]),
                "longitude": float(place["longitude"]),
                "elevation_m": float(place["elevation_m"]), "tz_offset_h": tz}
        records.append(StationData(station_id, Path(source), SOURCE, frame, meta))
    return records


def check_snapshot(settings: Settings):
    """Read and assess every production station of ``data/production``.

    Returns ``(frames, reports)``: the usable stations' cleaned frames and a report per
    station (``source: production``; a skipped station's report says why). Nothing when
    ``production.use`` is false or there is no snapshot.
    """
    from starry_guide.core import quality

    if not settings.production.use:
        return [], []
    folder = settings.paths.production_dir
    observations, stations = read_snapshot(folder)
    if observations.empty:
        return [], []
    frames, reports = [], []
    for station in station_records(observations, stations, folder / "observations.parquet"):
        frame, report = quality.assess(station, settings.label,
                                       settings.production.min_usable_night_hours,
                                       settings.data.stuck_label_max_hours)
        if report.usable:
            frames.append(frame)
        reports.append(report)
    return frames, reports


def assign_splits(rows: pd.DataFrame, settings: Settings) -> pd.Series:
    """The split of each production row: ``recent`` when its target hour lies in the
    station's last ``production.recent_window_days`` (counted back from its latest target
    hour), else ``excluded`` in a research validation / held-out month, else ``train``."""
    days = pd.Timedelta(days=settings.production.recent_window_days)
    window_start = rows.groupby("station_id")["target_time"].transform("max") - days
    month = rows["segment"] % 100
    held = month.isin([*settings.split.validation_months, *settings.split.held_out_months])
    split = np.select([rows["target_time"] > window_start, held], ["recent", "excluded"],
                      default="train")
    return pd.Series(split, index=rows.index, name="split")


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows, nights-worth of hours and clear-sky rate per production station and split."""
    if rows.empty:
        return pd.DataFrame(columns=["rows", "first", "last", "clear_rate"])
    return (rows.groupby(["station_id", "split"], observed=True)
            .agg(rows=("clear", "size"), first=("target_time", "min"),
                 last=("target_time", "max"), clear_rate=("clear", "mean"))
            .round({"clear_rate": 4}))
