"""Monitoring on production traffic: realised performance, drift, data quality, a verdict.

Inputs are a snapshot of the serving store (:func:`load_production` reads the Parquet files
that ``starry store snapshot`` writes under ``data/production/``) and a *reference*: what the
champion was built and evaluated on (:func:`build_reference`). Everything is computed per
station and per time **chunk** (a week by default, Monday 00:00 UTC), as NannyML does:

* **realised performance** once labels arrived (the observed opaque cover at a prediction's
  target hour is its truth): Brier score, the Brier score the served probabilities *promise*
  (mean p(1 - p), what the Brier score would be if they were calibrated), their difference
  (the *Brier excess*), BSS against calibrated persistence fitted on the training months (the
  champion gate's baseline), reliability, accuracy / precision / recall at the served
  threshold, and the count of labelled predictions;
* **feedback agreement**: users' reports (clear / partly / cloudy) against the sensor's
  category at that hour and against the forecast;
* **data drift** of the served features, and **prediction drift** of the served P(clear):
  the Jensen-Shannon distance of each chunk's histogram (on the reference's deciles, plus a
  bin for missing values) to the whole reference's;
* **data quality** per station, sensor and chunk: missing values and stuck sensors.

No threshold is a fixed band. Each comes from the reference's own chunk-to-chunk variation:
the reference is cut into the same chunks, the statistic computed on each, and an alert needs
``mean + threshold_sigma x std`` of those reference values (NannyML's default rule). Weekly
weather makes single chunks noisy, so an alert also has to be *sustained*: drift in
``drift_consecutive_chunks`` consecutive chunks; the Brier excess averaged over the last
``performance_window_chunks`` chunks (its threshold shrinks with the square root of the
window) above its threshold in ``performance_consecutive_chunks`` consecutive chunks.

The **verdict** ``retrain_recommended`` is driven by realised performance first: a sustained
performance alert recommends retraining, unless a data-quality alert on the label's sensor
explains it (then the sensor needs fixing, not the model). Drift alone is an early warning
(status ``drift``), and drift of features whose sensor has a data-quality alert is attributed
to that sensor.

Everything here is pure computation on data frames; reading files is :func:`load_production`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from starry_guide.artifacts import snapshot
from starry_guide.config import LabelSettings, MonitorSettings
from starry_guide.core import astro, evaluate, quality
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
    start = _EPOCH_MONDAY + pd.to_timedelta(index * days, unit="D")
    return start.dt.strftime("%Y-%m-%d")


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


# --------------------------------------------------------------------------- inputs


@dataclass
class Production:
    """A snapshot of the serving store, as data frames (see :func:`load_production`).

    ``observations``: station_id, time and the weather columns as stored. ``predictions``:
    one row per prediction and horizon — prediction_id, station_id, time (the hour the
    forecast was issued for), horizon_h, target_time, p_clear, the model inputs, and the
    label once it arrived (``label_opaque_cloud_tenths``). ``feedback``: prediction_id,
    observed (clear / partly / cloudy), observed_at.
    """

    stations: pd.DataFrame
    observations: pd.DataFrame
    predictions: pd.DataFrame
    feedback: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.observations.empty and self.predictions.empty


#: the snapshot's column names (:mod:`starry_guide.artifacts.snapshot`) -> the monitor's
_MONITOR_NAMES = {"issued_for": "time", "observed_opaque_cloud_tenths": "label_opaque_cloud_tenths"}


def load_production(folder: Path) -> Production:
    """Read a store snapshot folder (``starry store snapshot``: ``stations``,
    ``observations``, ``predictions``, ``prediction_features`` and ``feedback`` Parquet files
    and ``manifest.json``); absent files read as empty. Only the nowcasts of feed stations
    are monitored (night plans and ad-hoc nowcasts have no station to label them)."""
    folder = Path(folder)
    frames = {name: snapshot.read_table(folder, name).rename(columns=_MONITOR_NAMES)
              for name in snapshot.FILES}
    for frame in frames.values():
        for column in ("time", "target_time", "observed_at"):
            if column in frame.columns:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        if "station_id" in frame.columns:
            frame["station_id"] = frame["station_id"].astype(object)
    predictions = frames["predictions"]
    if len(predictions):
        if "kind" in predictions.columns:
            predictions = predictions[predictions["kind"] == "nowcast"]
        predictions = predictions[predictions["station_id"].notna()]
        if len(frames["prediction_features"]):
            predictions = predictions.merge(frames["prediction_features"], on="prediction_id",
                                            how="left", suffixes=("", "_input"))
        predictions = predictions.reset_index(drop=True)
    manifest = snapshot.read_manifest(folder)
    return Production(frames["stations"], frames["observations"], predictions,
                      frames["feedback"], manifest)


@dataclass
class Reference:
    """What production is compared with; every threshold in it came from reference chunks."""

    drift_edges: dict[str, np.ndarray]
    drift_counts: dict[str, np.ndarray]
    drift_thresholds: dict[str, float]
    prediction_counts: np.ndarray
    prediction_threshold: float
    excess_mean: float
    excess_std: float
    brier: float
    missing_thresholds: dict[str, float]
    stuck_hours: dict[str, int]
    chunks: int
    cp_table: object = None  # calibrated persistence fitted on the training months

    def excess_threshold(self, window: int, sigma: float) -> float:
        """The Brier-excess threshold for a mean over ``window`` chunks."""
        return self.excess_mean + sigma * self.excess_std / np.sqrt(max(window, 1))

    def summary(self) -> dict:
        return {
            "reference_chunks": self.chunks,
            "brier_held_out": self.brier,
            "brier_excess_mean": self.excess_mean,
            "brier_excess_std": self.excess_std,
            "feature_drift_thresholds": dict(sorted(self.drift_thresholds.items())),
            "prediction_drift_threshold": self.prediction_threshold,
            "missing_share_thresholds": dict(sorted(self.missing_thresholds.items())),
            "stuck_run_hours": dict(sorted(self.stuck_hours.items())),
        }


P_EDGES = np.round(np.linspace(0.1, 0.9, 9), 1)  # P(clear) histograms: ten equal bins


def _chunk_groups(frame: pd.DataFrame, settings: MonitorSettings):
    keys = chunk_start(frame["time"], settings.chunk_days)
    return frame.groupby([frame["station_id"].to_numpy(), keys.to_numpy()], sort=True)


def build_reference(hourly: pd.DataFrame, hourly_p: pd.DataFrame, held_out: pd.DataFrame,
                    observations: pd.DataFrame, settings: MonitorSettings,
                    cp_baseline=None) -> Reference:
    """Reference statistics and thresholds from the data the champion was built on.

    Parameters
    ----------
    hourly : the served features at every hour of the reference stations (station_id, time
        and the feature columns; :func:`starry_guide.core.features.hourly_features`)
    hourly_p : station_id, time, p_clear: the champion's predictions at those hours, all
        horizons
    held_out : labelled rows the champion never trained on (validation and held-out months):
        station_id, time, clear, p_clear
    observations : the reference stations' hourly sensor values
    cp_baseline : calibrated persistence fitted on the training months (for BSS)
    """
    min_hours = settings.min_chunk_hours
    columns = [c for c in hourly.columns
               if c not in ("station_id", "time", "segment", "longitude", "history_complete")
               and c not in CALENDAR_FEATURES]
    groups = [g for _, g in _chunk_groups(hourly, settings) if len(g) >= min_hours]
    edges, counts, thresholds = {}, {}, {}
    for column in columns:
        values = hourly[column].to_numpy(dtype=float)
        edges[column] = decile_edges(values, settings.drift_bins)
        counts[column] = histogram(values, edges[column])
        distances = [js_distance(histogram(g[column].to_numpy(dtype=float), edges[column]),
                                 counts[column]) for g in groups]
        thresholds[column] = upper_threshold(np.array(distances), settings.threshold_sigma)
    p_counts = histogram(hourly_p["p_clear"].to_numpy(dtype=float), P_EDGES)
    p_distances = [js_distance(histogram(g["p_clear"].to_numpy(dtype=float), P_EDGES), p_counts)
                   for _, g in _chunk_groups(hourly_p, settings)
                   if len(g) >= min_hours]
    p = held_out["p_clear"].to_numpy(dtype=float)
    y = held_out["clear"].to_numpy(dtype=float)
    frame = held_out.assign(_excess=(p - y) ** 2 - p * (1 - p))
    excess = [g["_excess"].mean() for _, g in _chunk_groups(frame, settings)
              if len(g) >= settings.min_labelled_rows]
    missing, stuck = {}, {}
    obs_groups = [g for _, g in _chunk_groups(observations, settings) if len(g) >= min_hours]
    for sensor in WEATHER_COLUMNS:
        if sensor not in observations.columns:
            continue
        shares = [float(g[sensor].isna().mean()) for g in obs_groups]
        missing[sensor] = min(1.0, upper_threshold(np.array(shares), settings.threshold_sigma,
                                                   settings.missing_min_increase))
        longest = 0
        for _, g in observations.sort_values("time").groupby("station_id"):
            _, lengths, _ = quality.value_runs(g[sensor].to_numpy(dtype=float))
            longest = max(longest, int(lengths.max()) if len(lengths) else 0)
        stuck[sensor] = max(settings.stuck_min_hours,
                            int(np.ceil(settings.stuck_run_factor * longest)))
    return Reference(edges, counts, thresholds, p_counts,
                     upper_threshold(np.array(p_distances), settings.threshold_sigma),
                     float(np.mean(excess)) if excess else 0.0,
                     float(np.std(excess, ddof=1)) if len(excess) > 1 else 0.0,
                     float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
                     missing, stuck, len(groups), cp_baseline)


# --------------------------------------------------------------------------- performance


def labelled_predictions(production: Production, label: LabelSettings) -> pd.DataFrame:
    """Predictions whose truth arrived and whose target hour is night (sun below
    ``label.night_max_sun_elevation_deg``, as in training), with ``clear`` (1/0)."""
    predictions = production.predictions
    needed = {"station_id", "time", "target_time", "horizon_h", "p_clear",
              "label_opaque_cloud_tenths"}
    if predictions.empty or not needed <= set(predictions.columns):
        return pd.DataFrame(columns=[*sorted(needed), "clear"])
    rows = predictions[predictions["label_opaque_cloud_tenths"].notna()].copy()
    if rows.empty:
        return rows.assign(clear=pd.Series(dtype="int8"))
    if "target_sun_elevation_deg" not in rows.columns:
        place = production.stations.set_index("station_id")[["latitude", "longitude"]]
        where = place.reindex(rows["station_id"])
        rows["target_sun_elevation_deg"] = astro.sun_elevation(
            rows["target_time"], where["latitude"].to_numpy(), where["longitude"].to_numpy())
    rows = rows[rows["target_sun_elevation_deg"] < label.night_max_sun_elevation_deg]
    rows["clear"] = (rows["label_opaque_cloud_tenths"]
                     <= label.clear_max_opaque_tenths).astype("int8")
    return rows.sort_values(["station_id", "time", "horizon_h"], kind="stable").reset_index(
        drop=True)


def _scores(y: np.ndarray, p: np.ndarray, p_base: np.ndarray | None, threshold: float) -> dict:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0, 1)
    decided = p >= threshold
    brier = float(np.mean((p - y) ** 2))
    expected = float(np.mean(p * (1 - p)))
    positives, hits = decided.sum(), (decided & (y == 1)).sum()
    out = {"rows": int(len(y)), "clear_rate": float(y.mean()), "mean_p_clear": float(p.mean()),
           "brier": brier, "expected_brier": expected, "brier_excess": brier - expected,
           "accuracy": float(np.mean(decided == (y == 1))),
           "precision": float(hits / positives) if positives else float("nan"),
           "recall": float(hits / (y == 1).sum()) if (y == 1).any() else float("nan")}
    if p_base is not None:
        reference = float(np.mean((np.clip(p_base, 0, 1) - y) ** 2))
        out["bss"] = 1 - brier / reference if reference > 0 else float("nan")
    return out


def performance(labelled: pd.DataFrame, threshold: float, settings: MonitorSettings,
                cp_baseline=None, by: tuple[str, ...] = ("station_id", "chunk")
                ) -> pd.DataFrame:
    """Realised performance per group (default: station and chunk; add ``horizon_h`` for
    per-horizon rows). ``threshold`` is the served P(clear) cut-off (accuracy / precision /
    recall); BSS needs ``cp_baseline``, the calibrated persistence of the training months."""
    if labelled.empty:
        return pd.DataFrame(columns=[*by, "rows", "brier", "expected_brier", "brier_excess"])
    rows = labelled.assign(chunk=chunk_start(labelled["time"], settings.chunk_days).to_numpy())
    base = None
    if cp_baseline is not None:
        base = cp_baseline.predict_proba(rows)[:, 1]
    records = []
    for key, index in rows.groupby(list(by), sort=True).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        part = rows.iloc[index]
        records.append({**dict(zip(by, key, strict=True)),
                        **_scores(part["clear"].to_numpy(), part["p_clear"].to_numpy(),
                                  None if base is None else base[index], threshold)})
    return pd.DataFrame.from_records(records)


def performance_alerts(by_chunk: pd.DataFrame, reference: Reference,
                       settings: MonitorSettings) -> pd.DataFrame:
    """Per station and chunk: the Brier excess averaged (row-weighted) over the trailing
    ``performance_window_chunks`` chunks with enough labels, its threshold, and ``alert``
    where it stayed above the threshold for ``performance_consecutive_chunks`` chunks."""
    columns = ["station_id", "chunk", "rows", "window_excess", "threshold", "above", "alert"]
    if by_chunk.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for station, part in by_chunk.sort_values("chunk").groupby("station_id", sort=True):
        part = part[part["rows"] >= settings.min_labelled_rows]
        window_excess, thresholds = [], []
        weighted = (part["brier_excess"] * part["rows"]).to_numpy()
        n = part["rows"].to_numpy(dtype=float)
        for i in range(len(part)):
            lo = max(0, i - settings.performance_window_chunks + 1)
            window_excess.append(weighted[lo:i + 1].sum() / n[lo:i + 1].sum())
            thresholds.append(reference.excess_threshold(i + 1 - lo, settings.threshold_sigma))
        above = np.array(window_excess) > np.array(thresholds)
        out.append(pd.DataFrame({
            "station_id": station, "chunk": part["chunk"].to_numpy(),
            "rows": part["rows"].to_numpy(), "window_excess": window_excess,
            "threshold": thresholds, "above": above,
            "alert": sustained(above, settings.performance_consecutive_chunks)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)


# --------------------------------------------------------------------------- drift


def feature_drift(features: pd.DataFrame, reference: Reference,
                  settings: MonitorSettings) -> pd.DataFrame:
    """Per station, chunk and judged feature: the JS distance to the reference, its
    threshold, ``above`` and ``alert`` (above in ``drift_consecutive_chunks`` consecutive
    chunks of the station). ``features``: one row per station and served hour."""
    records = []
    for (station, chunk), g in _chunk_groups(features, settings):
        if len(g) < settings.min_chunk_hours:
            continue
        for column, edges in reference.drift_edges.items():
            if column not in g.columns:
                continue
            distance = js_distance(histogram(g[column].to_numpy(dtype=float), edges),
                                   reference.drift_counts[column])
            records.append({"station_id": station, "chunk": chunk, "feature": column,
                            "distance": distance,
                            "threshold": reference.drift_thresholds[column]})
    return _sustain(pd.DataFrame.from_records(records), ["station_id", "feature"],
                    settings.drift_consecutive_chunks)


def prediction_drift(predictions: pd.DataFrame, reference: Reference,
                     settings: MonitorSettings) -> pd.DataFrame:
    """Per station and chunk: JS distance of the served P(clear) (all horizons) to the
    reference's, its threshold, ``above`` and a sustained ``alert``."""
    records = []
    for (station, chunk), g in _chunk_groups(predictions, settings):
        if len(g) < settings.min_chunk_hours:
            continue
        records.append({"station_id": station, "chunk": chunk,
                        "distance": js_distance(histogram(g["p_clear"].to_numpy(dtype=float),
                                                          P_EDGES), reference.prediction_counts),
                        "threshold": reference.prediction_threshold})
    return _sustain(pd.DataFrame.from_records(records), ["station_id"],
                    settings.drift_consecutive_chunks)


def _sustain(table: pd.DataFrame, keys: list[str], n: int) -> pd.DataFrame:
    if table.empty:
        return table.assign(above=pd.Series(dtype=bool), alert=pd.Series(dtype=bool))
    table = table.sort_values([*keys, "chunk"], kind="stable").reset_index(drop=True)
    table["above"] = table["distance"] > table["threshold"]
    table["alert"] = False
    for _, index in table.groupby(keys, sort=False).indices.items():
        table.loc[index, "alert"] = sustained(table.loc[index, "above"].to_numpy(), n)
    return table


# --------------------------------------------------------------------------- data quality


def hourly_grid(observations: pd.DataFrame) -> pd.DataFrame:
    """Each station's observations on a complete hourly grid from its first to its last
    received hour: hours never received are rows with every sensor missing."""
    out = []
    for station, g in observations.sort_values("time").groupby("station_id", sort=True):
        grid = pd.date_range(g["time"].iloc[0], g["time"].iloc[-1], freq="h")
        full = g.drop_duplicates("time", keep="last").set_index("time").reindex(grid)
        full.index.name = "time"
        full["station_id"] = station
        full["received"] = full.index.isin(g["time"])
        out.append(full.reset_index())
    return pd.concat(out, ignore_index=True) if out else observations.assign(received=True)


def quality_alerts(observations: pd.DataFrame, reference: Reference,
                   settings: MonitorSettings) -> pd.DataFrame:
    """Missing-value and stuck-sensor alerts per station, sensor and chunk.

    *missing*: the chunk's share of hours without a value (not received, or received
    without this sensor) above the reference's threshold for that sensor. *stuck*: the
    sensor repeated one value for longer than any run in the reference (times
    ``stuck_run_factor``, at least ``stuck_min_hours``); every chunk the run overlaps is
    named, with the hour it froze.
    """
    columns = ["station_id", "sensor", "chunk", "kind", "value", "threshold", "detail"]
    if observations.empty:
        return pd.DataFrame(columns=columns)
    grid = hourly_grid(observations)
    grid["chunk"] = chunk_start(grid["time"], settings.chunk_days).to_numpy()
    records = []
    for station, g in grid.groupby("station_id", sort=True):
        g = g.reset_index(drop=True)
        sizes = g.groupby("chunk").size()
        for sensor, limit in reference.missing_thresholds.items():
            if sensor not in g.columns:
                continue
            shares = g[sensor].isna().groupby(g["chunk"]).mean()
            for chunk, share in shares.items():
                if sizes[chunk] >= settings.min_chunk_hours and share > limit:
                    records.append({"station_id": station, "sensor": sensor, "chunk": chunk,
                                    "kind": "missing", "value": float(share),
                                    "threshold": float(limit),
                                    "detail": f"{share:.0%} of hours missing"})
            starts, lengths, values = quality.value_runs(g[sensor].to_numpy(dtype=float))
            limit_h = reference.stuck_hours.get(sensor)
            for start, length, value in zip(starts, lengths, values, strict=True):
                if limit_h is None or length <= limit_h:
                    continue
                since = g["time"].iloc[start]
                for chunk in pd.unique(g["chunk"].iloc[start:start + length]):
                    records.append({"station_id": station, "sensor": sensor, "chunk": chunk,
                                    "kind": "stuck", "value": float(length),
                                    "threshold": float(limit_h),
                                    "detail": f"stuck at {value:g} for {length} h since "
                                              f"{since.isoformat()}"})
    table = pd.DataFrame.from_records(records, columns=columns)
    return table.sort_values(["station_id", "sensor", "chunk", "kind"]).reset_index(drop=True)


# --------------------------------------------------------------------------- feedback


def feedback_agreement(production: Production, label: LabelSettings, threshold: float,
                       settings: MonitorSettings) -> pd.DataFrame:
    """Per station and chunk: users' reports, the share that agrees with the sensor's
    category at the reported hour, and (for clear / cloudy reports) with the forecast."""
    columns = ["station_id", "chunk", "feedback", "agree_sensor", "agree_forecast"]
    feedback, predictions = production.feedback, production.predictions
    if feedback.empty or predictions.empty:
        return pd.DataFrame(columns=columns)
    seen = predictions.drop_duplicates("prediction_id")[["prediction_id", "station_id", "time"]]
    rows = feedback.merge(seen, on="prediction_id", how="inner", suffixes=("", "_issued"))
    if rows.empty:
        return pd.DataFrame(columns=columns)
    when = rows["observed_at"].fillna(rows["time"]).dt.floor("h")
    sensor = production.observations.drop_duplicates(["station_id", "time"], keep="last")
    sensor = sensor.set_index(["station_id", "time"])["opaque_cloud_tenths"]
    cover = sensor.reindex(pd.MultiIndex.from_arrays([rows["station_id"], when])).to_numpy()
    rows["sensor"] = cover_category(cover, label.clear_max_opaque_tenths)
    # the forecast the user saw for that hour: the prediction's horizon closest to it
    horizon = ((when - rows["time"]) / pd.Timedelta(hours=1)).round().astype(int)
    forecast = predictions.set_index(["prediction_id", "horizon_h"])["p_clear"]
    p = forecast.reindex(pd.MultiIndex.from_arrays([rows["prediction_id"], horizon])).to_numpy()
    rows["forecast"] = np.where(np.isnan(p), None, np.where(p >= threshold, "clear", "cloudy"))
    rows["chunk"] = chunk_start(when, settings.chunk_days).to_numpy()
    records = []
    for (station, chunk), g in rows.groupby(["station_id", "chunk"], sort=True):
        judged = g[g["sensor"].notna()]
        decided = g[g["observed"].isin(["clear", "cloudy"]) & g["forecast"].notna()]
        records.append({
            "station_id": station, "chunk": chunk, "feedback": len(g),
            "agree_sensor": float((judged["observed"] == judged["sensor"]).mean())
            if len(judged) else float("nan"),
            "agree_forecast": float((decided["observed"] == decided["forecast"]).mean())
            if len(decided) else float("nan")})
    return pd.DataFrame.from_records(records, columns=columns)


def feedback_alerts(agreement: pd.DataFrame, settings: MonitorSettings) -> pd.DataFrame:
    """Chunks where enough users disagree with the cloud sensor: a data-quality alert on
    ``opaque_cloud_tenths`` from a second, independent signal."""
    bad = agreement[(agreement["feedback"] >= settings.feedback_min_count)
                    & (agreement["agree_sensor"] < settings.feedback_min_agreement)]
    return pd.DataFrame({
        "station_id": bad["station_id"], "sensor": "opaque_cloud_tenths",
        "chunk": bad["chunk"], "kind": "feedback", "value": bad["agree_sensor"],
        "threshold": settings.feedback_min_agreement,
        "detail": [f"only {a:.0%} of {n} users' reports agree with the sensor"
                   for a, n in zip(bad["agree_sensor"], bad["feedback"], strict=True)]})


# --------------------------------------------------------------------------- verdict


@dataclass
class StationVerdict:
    station_id: str
    retrain_recommended: bool
    status: str  # ok | drift | data_quality | degraded
    reasons: list[str]

    def as_dict(self) -> dict:
        return {"retrain_recommended": self.retrain_recommended, "status": self.status,
                "reasons": self.reasons}


def _chunks(frame: pd.DataFrame) -> list[str]:
    return sorted(pd.unique(frame["chunk"]).tolist())


def station_verdict(station: str, performance_table: pd.DataFrame, drift: pd.DataFrame,
                    predictions_drift: pd.DataFrame, quality: pd.DataFrame) -> StationVerdict:
    """Realised performance first, data quality to explain it, drift as early warning.

    * a data-quality alert names the sensor and chunks: fix the sensor (status
      ``data_quality``);
    * a sustained performance alert recommends retraining (status ``degraded``) — unless a
      data-quality alert on the label's sensor (opaque cover) overlaps it: broken labels and
      inputs are not a reason to retrain;
    * drift alerts on features whose sensors have no data-quality alert, or of the
      predictions, are an early warning (status ``drift``).
    """
    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["station_id"] == station] if len(frame) else frame

    quality, perf = mine(quality), mine(performance_table)
    drift, p_drift = mine(drift), mine(predictions_drift)
    reasons: list[str] = []
    status = "ok"
    broken = set(quality["sensor"]) if len(quality) else set()
    for sensor, part in (quality.groupby("sensor", sort=True) if len(quality) else []):
        chunks = _chunks(part)
        kinds = ", ".join(sorted(set(part["kind"])))
        reasons.append(f"{station}: sensor {sensor} {kinds} in chunk(s) "
                       f"{_span(chunks)} ({part['detail'].iloc[0]}) — fix the sensor or the "
                       "feed; the model is not the problem")
        status = "data_quality"
    retrain = False
    degraded = perf[perf["alert"]] if len(perf) else perf
    if len(degraded):
        label_broken = quality[quality["sensor"] == "opaque_cloud_tenths"] if len(quality) \
            else quality
        overlap = set(_chunks(degraded)) & set(_chunks(label_broken)) if len(label_broken) \
            else set()
        worst = degraded.loc[degraded["window_excess"].idxmax()]
        text = (f"{station}: realised Brier exceeds what the served probabilities promise by "
                f"{worst['window_excess']:.3f} (threshold {worst['threshold']:.3f}, from the "
                f"reference) in chunk(s) {_span(_chunks(degraded))}")
        if overlap:
            reasons.append(text + " — explained by the opaque-cover sensor's data-quality "
                                  "alert; not a reason to retrain")
        else:
            reasons.append(text + " — retrain on recent data")
            retrain, status = True, "degraded"
    drifted = drift[drift["alert"]] if len(drift) else drift
    if len(drifted):
        unexplained = drifted[[not (set(feature_sensors(f)) & broken)
                               for f in drifted["feature"]]]
        if len(unexplained):
            names = sorted(set(unexplained["feature"]))
            reasons.append(f"{station}: feature drift (early warning) in {', '.join(names)} "
                           f"in chunk(s) {_span(_chunks(unexplained))}")
            status = status if status != "ok" else "drift"
    if len(p_drift) and p_drift["alert"].any():
        chunks = _chunks(p_drift[p_drift["alert"]])
        if len(quality) and set(chunks) & set(_chunks(quality)):
            reasons.append(f"{station}: prediction drift in chunk(s) {_span(chunks)} — "
                           "follows the data-quality alert(s) above")
        else:
            reasons.append(f"{station}: prediction drift (early warning) in chunk(s) "
                           f"{_span(chunks)}")
            status = status if status != "ok" else "drift"
    return StationVerdict(station, retrain, status, reasons)


def _span(chunks: list[str]) -> str:
    if len(chunks) <= 3:
        return ", ".join(chunks)
    return f"{chunks[0]} … {chunks[-1]} ({len(chunks)} chunks)"


# --------------------------------------------------------------------------- whole report


@dataclass
class MonitorResult:
    """Everything the monitor stage reports; :meth:`summary` is ``monitor.json``."""

    production: Production
    labelled: pd.DataFrame
    performance: pd.DataFrame
    performance_by_horizon: pd.DataFrame
    performance_alerts: pd.DataFrame
    reliability: pd.DataFrame
    drift: pd.DataFrame
    prediction_drift: pd.DataFrame
    quality: pd.DataFrame
    feedback: pd.DataFrame
    verdicts: dict[str, StationVerdict]
    reference: Reference
    threshold: float

    @property
    def retrain_recommended(self) -> bool:
        return any(v.retrain_recommended for v in self.verdicts.values())

    def alerts(self) -> dict[str, list[dict]]:
        """Every alert raised, by kind, as plain records (station, chunk, what, value)."""
        def records(frame, columns):
            if frame is None or not len(frame):
                return []
            return frame[columns].to_dict("records")

        drift = self.drift[self.drift["alert"]] if len(self.drift) else self.drift
        p_drift = (self.prediction_drift[self.prediction_drift["alert"]]
                   if len(self.prediction_drift) else self.prediction_drift)
        perf = (self.performance_alerts[self.performance_alerts["alert"]]
                if len(self.performance_alerts) else self.performance_alerts)
        return {
            "data_quality": records(self.quality, ["station_id", "sensor", "chunk", "kind",
                                                   "detail"]),
            "drift": records(drift, ["station_id", "chunk", "feature", "distance",
                                     "threshold"]),
            "prediction_drift": records(p_drift, ["station_id", "chunk", "distance",
                                                  "threshold"]),
            "performance": records(perf, ["station_id", "chunk", "window_excess",
                                          "threshold"]),
        }

    def summary(self) -> dict:
        if self.production.empty:
            return {"status": NO_TRAFFIC, "retrain_recommended": False, "reasons": [],
                    "stations": {}, "production": {"observations": 0, "predictions": 0},
                    "reference": self.reference.summary()}
        p = self.production
        times = p.observations["time"] if len(p.observations) else p.predictions["time"]
        overall = (_scores(self.labelled["clear"], self.labelled["p_clear"], None,
                           self.threshold) if len(self.labelled) else {})
        if len(self.performance) and "bss" in self.performance:
            base_brier = (self.performance["brier"] / (1 - self.performance["bss"]))
            overall["bss"] = 1 - overall["brier"] / float(
                np.average(base_brier, weights=self.performance["rows"]))
        alerts = self.alerts()
        by_station = {}
        for station, verdict in sorted(self.verdicts.items()):
            part = self.performance[self.performance["station_id"] == station] \
                if len(self.performance) else self.performance
            by_station[station] = {
                **verdict.as_dict(),
                "labelled_predictions": int(part["rows"].sum()) if len(part) else 0,
                "alerts": {kind: sum(1 for a in items if a["station_id"] == station)
                           for kind, items in alerts.items()},
            }
        reasons = [r for v in sorted(self.verdicts.values(), key=lambda v: v.station_id)
                   for r in v.reasons]
        statuses = {v.status for v in self.verdicts.values()}
        status = next((s for s in ("degraded", "data_quality", "drift") if s in statuses),
                      "ok")
        return {
            "status": status,
            "retrain_recommended": self.retrain_recommended,
            "reasons": reasons,
            "production": {
                "stations": int(p.observations["station_id"].nunique())
                if len(p.observations) else 0,
                "observations": int(len(p.observations)),
                "predictions": int(p.predictions["prediction_id"].nunique())
                if "prediction_id" in p.predictions else 0,
                "labelled_predictions": int(len(self.labelled)),
                "feedback": int(len(p.feedback)),
                "first_hour": times.min().isoformat(), "last_hour": times.max().isoformat(),
                "chunks": int(len(self.performance["chunk"].unique()))
                if len(self.performance) else 0,
            },
            "served_threshold": self.threshold,
            "performance": overall,
            "performance_by_horizon": {
                int(r["horizon_h"]): {k: r[k] for k in ("rows", "brier", "bss", "brier_excess")
                                      if k in r}
                for r in self.performance_by_horizon.to_dict("records")},
            "stations": by_station,
            "alerts": alerts,
            "reference": self.reference.summary(),
        }


def served_features(production: Production) -> pd.DataFrame:
    """One row per station and served hour with the model inputs (taken from the
    predictions' first horizon: every horizon of an hour shares its per-hour features)."""
    predictions = production.predictions
    if predictions.empty:
        return predictions
    first = predictions.sort_values(["station_id", "time", "horizon_h"], kind="stable")
    return first.drop_duplicates(["station_id", "time"]).reset_index(drop=True)


def run(production: Production, reference: Reference, label: LabelSettings,
        threshold: float, settings: MonitorSettings) -> MonitorResult:
    """The whole monitoring report for one snapshot (see the module docstring)."""
    labelled = labelled_predictions(production, label)
    cp = reference.cp_table
    by_chunk = performance(labelled, threshold, settings, cp)
    by_horizon = performance(labelled, threshold, settings, cp, by=("horizon_h",))
    perf_alerts = performance_alerts(by_chunk, reference, settings)
    features = served_features(production)
    drift = feature_drift(features, reference, settings) if len(features) else pd.DataFrame()
    p_drift = (prediction_drift(production.predictions, reference, settings)
               if len(production.predictions) else pd.DataFrame())
    quality = quality_alerts(production.observations, reference, settings)
    agreement = feedback_agreement(production, label, threshold, settings)
    quality = pd.concat([quality, feedback_alerts(agreement, settings)], ignore_index=True) \
        if len(agreement) else quality
    stations = sorted(set(production.observations.get("station_id", pd.Series(dtype=str)))
                      | set(production.predictions.get("station_id", pd.Series(dtype=str))))
    verdicts = {s: station_verdict(s, perf_alerts, drift, p_drift, quality) for s in stations}
    reliability_table = (evaluate.reliability(labelled["clear"], labelled["p_clear"],
                                     settings.reliability_bins)
                         if len(labelled) else pd.DataFrame())
    return MonitorResult(production, labelled, by_chunk, by_horizon, perf_alerts,
                         reliability_table, drift, p_drift, quality, agreement, verdicts,
                         reference, threshold)


def reference_from_processed(observations: pd.DataFrame, rows: pd.DataFrame, bundle,
                             settings) -> Reference:
    """The reference of :func:`build_reference` from the prepare stage's outputs and the
    champion bundle: the stations the champion was trained on (every split but ``unseen``),
    all their hours for drift, their validation and test months for performance, and
    calibrated persistence fitted on their training months as the BSS baseline.

    Parameters
    ----------
    observations, rows : ``data/processed/observations.parquet`` and ``rows.parquet``
    bundle : the champion's :class:`starry_guide.artifacts.bundle.Bundle`
    settings : the project's :class:`starry_guide.config.Settings`
    """
    from starry_guide.core import features as feats
    from starry_guide.core import inference
    from starry_guide.core.models import CalibratedPersistenceClassifier

    known = sorted(set(rows.loc[rows["split"] != "unseen", "station_id"]))
    obs = observations[observations["station_id"].isin(known)]
    obs = obs.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    station = obs["station_id"].to_numpy()
    # the one inference chain the service and batch scoring use, on every complete hour
    result = inference.infer(
        {name: obs[name].to_numpy(dtype=float) for name in feats.INPUT_COLUMNS},
        astro.epoch_seconds(obs["time"]), feats.segment_starts(station, obs["segment"].to_numpy()),
        bundle, bundle.feature_settings, bundle.horizons, station_ids=station)
    at = result.issued
    hourly = pd.DataFrame({"station_id": station[at], "time": obs["time"].to_numpy()[at],
                           "segment": obs["segment"].to_numpy()[at], **result.hourly})
    hourly_p = pd.DataFrame({
        "station_id": station[at].repeat(len(bundle.horizons)),
        "time": pd.DatetimeIndex(hourly["time"]).repeat(len(bundle.horizons)),
        "p_clear": result.p_clear.reshape(-1)})
    held_out = rows[rows["split"].isin(["validation", "held_out"])]
    held_out = held_out.assign(p_clear=bundle.predict(held_out))[
        ["station_id", "time", "clear", "p_clear"]]
    train = rows[rows["split"] == "train"]
    prior = settings.train.params_for("calibrated_persistence").get("prior_strength", 1.0)
    baseline = CalibratedPersistenceClassifier(prior).fit(train[bundle.features],
                                                          train["clear"])
    return build_reference(hourly, hourly_p, held_out, obs, settings.monitor, baseline)


def served_threshold(card: dict) -> float:
    """The P(clear) cut-off the champion was evaluated with (its model card's held-out scores;
    0.5 when the card has none)."""
    scores = card.get("scores", {})
    for split in ("held_out", "validation"):
        value = scores.get(split, {}).get("threshold")
        if value is not None:
            return float(value)
    return 0.5


# --------------------------------------------------------------------------- figures


def _empty_figure(title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2))
    ax.text(0.5, 0.5, NO_TRAFFIC, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def plot_performance(result: MonitorResult):
    """Realised vs promised Brier score per chunk, and the trailing Brier excess against its
    reference threshold, one line per station; alerted chunks marked."""
    import matplotlib.pyplot as plt

    title = "Realised performance over time"
    if not len(result.performance):
        return _empty_figure(title)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for station, part in result.performance.groupby("station_id"):
        when = pd.to_datetime(part["chunk"])
        line, = top.plot(when, part["brier"], marker=".", label=f"{station}: realised")
        top.plot(when, part["expected_brier"], linestyle=":", color=line.get_color(),
                 label=f"{station}: promised")
    alerts = result.performance_alerts
    for station, part in alerts.groupby("station_id"):
        when = pd.to_datetime(part["chunk"])
        line, = bottom.plot(when, part["window_excess"], marker=".", label=station)
        bottom.plot(when, part["threshold"], linestyle="--", color=line.get_color(), alpha=0.6)
        hit = part["alert"].to_numpy(dtype=bool)
        bottom.scatter(when[hit], part["window_excess"][hit], color="red", zorder=3, s=30)
    top.set(ylabel="Brier score", title=title)
    top.legend(fontsize="x-small", ncol=2)
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set(ylabel="Brier excess (trailing mean)", xlabel="chunk (week starting)")
    bottom.legend(fontsize="x-small", title="dashed: threshold; red: alert",
                  title_fontsize="x-small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_drift(result: MonitorResult, station: str | None = None):
    """Feature drift over time: each feature's JS distance as a multiple of its threshold
    (above 1 = above the threshold), one row per feature, one column per chunk."""
    import matplotlib.pyplot as plt

    title = "Feature drift over time (distance / threshold)"
    drift = result.drift
    if not len(drift):
        return _empty_figure(title)
    station = station or sorted(drift["station_id"].unique())[0]
    part = drift[drift["station_id"] == station]
    ratio = (part["distance"] / part["threshold"]).to_numpy()
    table = part.assign(ratio=ratio).pivot(index="feature", columns="chunk", values="ratio")
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(table) + 1.5))
    image = ax.imshow(table.to_numpy(), aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=2)
    ax.set_yticks(range(len(table)), table.index, fontsize="x-small")
    step = max(1, len(table.columns) // 12)
    ax.set_xticks(range(0, len(table.columns), step), table.columns[::step], rotation=45,
                  ha="right", fontsize="x-small")
    fig.colorbar(image, ax=ax, label="distance / threshold")
    ax.set_title(f"{title}: {station}")
    fig.tight_layout()
    return fig


def plot_quality(result: MonitorResult):
    """Missing-value share per chunk and sensor for each station (grid of received hours)."""
    import matplotlib.pyplot as plt

    title = "Missing values per sensor over time"
    obs = result.production.observations
    if not len(obs):
        return _empty_figure(title)
    grid = hourly_grid(obs)
    grid["chunk"] = chunk_start(grid["time"]).to_numpy()
    stations = sorted(grid["station_id"].unique())
    fig, axes = plt.subplots(len(stations), 1, figsize=(9, 2.5 * len(stations)), squeeze=False)
    for ax, station in zip(axes[:, 0], stations, strict=True):
        part = grid[grid["station_id"] == station]
        shares = part[list(WEATHER_COLUMNS)].isna().groupby(part["chunk"]).mean()
        ax.plot(pd.to_datetime(shares.index), shares.mean(axis=1), color="black",
                linestyle=":", label="mean over sensors")
        for sensor in shares.columns:
            if shares[sensor].max() > 0:
                ax.plot(pd.to_datetime(shares.index), shares[sensor], marker=".", label=sensor)
        stuck = result.quality[(result.quality["station_id"] == station)
                               & (result.quality["kind"] == "stuck")] \
            if len(result.quality) else result.quality
        for chunk in pd.unique(stuck["chunk"]) if len(stuck) else []:
            ax.axvspan(pd.Timestamp(chunk), pd.Timestamp(chunk) + pd.Timedelta(days=7),
                       color="red", alpha=0.1)
        ax.set(ylabel="missing share", ylim=(-0.02, 1.02), title=f"{title}: {station} "
               "(red: stuck-sensor alert)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_reliability(result: MonitorResult):
    """Observed clear rate against served P(clear) over all labelled production traffic."""
    import matplotlib.pyplot as plt

    title = "Reliability on production traffic"
    if not len(result.reliability):
        return _empty_figure(title)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.plot(result.reliability["predicted"], result.reliability["observed"], marker="o")
    ax.set(xlabel="served P(clear)", ylabel="observed clear rate", title=title,
           xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    return fig
