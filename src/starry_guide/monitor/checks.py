"""The checks, per station and chunk: realised performance, feature and prediction
drift, data quality, feedback agreement — each with its alerts (thresholds from the
reference). Pure computation on data frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from starry_guide.config import LabelSettings, MonitorSettings
from starry_guide.core import astro, profiles, quality
from starry_guide.monitor.reference_period import P_EDGES, Production, Reference, chunk_groups
from starry_guide.monitor.statistics import (
    chunk_start,
    cover_category,
    histogram,
    js_distance,
    sustained,
)

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


def realised_scores(y: np.ndarray, p: np.ndarray, p_base: np.ndarray | None,
                    threshold: float) -> dict:
    """The realised-performance metrics of one group of labelled predictions (Brier, its
    promised value and excess, BSS against ``p_base``, accuracy/precision/recall at
    ``threshold``; NaN where a rate has no denominator)."""
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
                        **realised_scores(part["clear"].to_numpy(),
                                          part["p_clear"].to_numpy(),
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
    for (station, chunk), g in chunk_groups(features, settings):
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
    for (station, chunk), g in chunk_groups(predictions, settings):
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


def coverage_alerts(observations: pd.DataFrame, settings: MonitorSettings) -> pd.DataFrame:
    """Input-coverage changes per station and chunk: an optional model input
    (:data:`starry_guide.core.profiles.OPTIONAL_INPUTS`) that had a value in the station's
    previous judged chunk and has none in this one (it *disappeared*: the forecasts fall back
    to a sub-model without it), or the reverse (it *appeared*). Chunks with fewer received
    hours than ``min_chunk_hours`` are not judged. ``value`` is the number of inputs present
    now, ``threshold`` before; ``detail`` names the fields and the input profile before and
    after (:func:`starry_guide.core.profiles.detect_profile`)."""
    columns = ["station_id", "sensor", "chunk", "kind", "value", "threshold", "detail"]
    if observations.empty:
        return pd.DataFrame(columns=columns)
    rows = observations.assign(
        chunk=chunk_start(observations["time"], settings.chunk_days).to_numpy())
    records = []
    for station, g in rows.groupby("station_id", sort=True):
        before = None
        for chunk, part in g.groupby("chunk", sort=True):
            if part["time"].nunique() < settings.min_chunk_hours:
                continue
            arrays = {c: part[c].to_numpy(dtype=float) for c in
                      (profiles.REQUIRED_INPUT, *profiles.OPTIONAL_INPUTS) if c in part.columns}
            missing = profiles.missing_inputs(arrays)
            present = [c for c in profiles.OPTIONAL_INPUTS if c not in missing]
            shape = profiles.detect_profile(arrays, missing)
            if before is not None:
                was_present, was_shape = before
                for sensor in profiles.OPTIONAL_INPUTS:
                    gone, new = sensor in was_present and sensor not in present, \
                        sensor not in was_present and sensor in present
                    if gone or new:
                        records.append({
                            "station_id": station, "sensor": sensor, "chunk": chunk,
                            "kind": "coverage", "value": float(len(present)),
                            "threshold": float(len(was_present)),
                            "detail": f"{sensor} {'disappeared' if gone else 'appeared'} "
                                      f"(input profile {was_shape} -> {shape})"})
            before = (present, shape)
    return pd.DataFrame.from_records(records, columns=columns)


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
