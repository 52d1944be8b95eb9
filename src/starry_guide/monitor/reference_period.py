"""What monitoring reads: the store snapshot (:func:`load_production`, through
:mod:`starry_guide.artifacts.snapshot`) and the *reference* — what the champion was built
and evaluated on (:func:`build_reference`; :func:`reference_from_processed` computes it
through the one inference chain)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from starry_guide.artifacts import snapshot
from starry_guide.config import MonitorSettings, Settings
from starry_guide.core import astro, quality
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.monitor.statistics import (
    CALENDAR_FEATURES,
    chunk_start,
    decile_edges,
    histogram,
    js_distance,
    upper_threshold,
)

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


def chunk_groups(frame: pd.DataFrame, settings: MonitorSettings):
    """``frame`` grouped by station and chunk (the chunk's start), in that order."""
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
    groups = [g for _, g in chunk_groups(hourly, settings) if len(g) >= min_hours]
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
                   for _, g in chunk_groups(hourly_p, settings)
                   if len(g) >= min_hours]
    p = held_out["p_clear"].to_numpy(dtype=float)
    y = held_out["clear"].to_numpy(dtype=float)
    frame = held_out.assign(_excess=(p - y) ** 2 - p * (1 - p))
    excess = [g["_excess"].mean() for _, g in chunk_groups(frame, settings)
              if len(g) >= settings.min_labelled_rows]
    missing, stuck = {}, {}
    obs_groups = [g for _, g in chunk_groups(observations, settings) if len(g) >= min_hours]
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


def served_p_clear(observations: pd.DataFrame, bundle) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the service would have served at every hour of ``observations`` (the canonical
    frame, sorted by station and time; history never crosses a station or a segment), through
    the one inference chain (:func:`starry_guide.core.inference.infer`, station maps
    included): the hourly features at each complete hour, and P(clear) per hour and horizon
    (``station_id``, ``time``, ``p_clear``; the bundle's horizons in order within each hour).
    """
    from starry_guide.core import features as feats
    from starry_guide.core import inference

    station = observations["station_id"].to_numpy()
    result = inference.infer(
        {name: observations[name].to_numpy(dtype=float) for name in feats.INPUT_COLUMNS},
        astro.epoch_seconds(observations["time"]),
        feats.segment_starts(station, observations["segment"].to_numpy()),
        bundle, bundle.feature_settings, bundle.horizons, station_ids=station)
    at = result.issued
    hourly = pd.DataFrame({"station_id": station[at],
                           "time": observations["time"].to_numpy()[at],
                           "segment": observations["segment"].to_numpy()[at], **result.hourly})
    hourly_p = pd.DataFrame({
        "station_id": station[at].repeat(len(bundle.horizons)),
        "time": pd.DatetimeIndex(hourly["time"]).repeat(len(bundle.horizons)),
        "p_clear": result.p_clear.reshape(-1)})
    return hourly, hourly_p


def reference_from_processed(observations: pd.DataFrame, rows: pd.DataFrame, bundle,
                             settings: Settings) -> Reference:
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
    from starry_guide.core.models import CalibratedPersistenceClassifier

    known = sorted(set(rows.loc[rows["split"] != "unseen", "station_id"]))
    obs = observations[observations["station_id"].isin(known)]
    obs = obs.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    hourly, hourly_p = served_p_clear(obs, bundle)
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
