"""The verdict per station (``retrain_recommended`` with reasons) and the whole
monitoring run (:func:`run` -> :class:`MonitorResult`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from starry_guide.config import LabelSettings, MonitorSettings
from starry_guide.core import evaluate
from starry_guide.monitor.checks import (
    coverage_alerts,
    feature_drift,
    feedback_agreement,
    feedback_alerts,
    labelled_predictions,
    performance,
    performance_alerts,
    prediction_drift,
    quality_alerts,
    realised_scores,
)
from starry_guide.monitor.reference_period import Production, Reference
from starry_guide.monitor.statistics import NO_TRAFFIC, feature_sensors

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
        overall = (realised_scores(self.labelled["clear"], self.labelled["p_clear"], None,
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
    # a field that disappears (or appears) changes which sub-model forecasts: watched too
    coverage = coverage_alerts(production.observations, settings)
    if len(coverage):
        quality = pd.concat([quality, coverage], ignore_index=True)
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
