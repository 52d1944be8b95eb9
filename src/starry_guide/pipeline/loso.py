"""Leave one station out (LOSO): what a user at a new place gets — the headline evaluation.

For every station in turn, a candidate's recipe and the calibrated-persistence baseline are
refit on the *other* stations (their training and validation months; held-out months are
never fit on), and both score every row of the station they never saw. Skill is reported
pooled, per station, per horizon and per (station, horizon), and separately on the held-out
months only (rows no design decision looked at).

:func:`adaptation` then simulates a new station's first weeks: after ``n`` labelled nights,
the station's own forecasts are recalibrated (a two-parameter logistic map of the model's
logit, shrunk toward "no change") and scored on later nights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.base import BaseEstimator, clone

from starry_guide.config import Settings
from starry_guide.core import evaluate, models
from starry_guide.core.features import feature_columns
from starry_guide.pipeline.parallel import parallel


@dataclass
class LosoResult:
    """Per-row out-of-station predictions of one candidate and of the baseline.

    ``rows`` is read, never changed: :meth:`pooled` and :meth:`summary` are computed once
    (each scores every row; the notebook and the metrics file ask for them repeatedly)."""

    candidate: str
    rows: pd.DataFrame  # station_id, horizon_h, split, night, clear, label_origin, p, p_baseline
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def bss_table(self, by: list[str], held_out_only: bool = False) -> pd.DataFrame:
        """BSS vs calibrated persistence, Brier of both, and rows, grouped by ``by``."""
        frame = self.rows[self.rows["split"] == "held_out"] if held_out_only else self.rows
        se = frame.assign(model=(frame["p"] - frame["clear"]) ** 2,
                          baseline=(frame["p_baseline"] - frame["clear"]) ** 2)
        table = se.groupby(by)[["model", "baseline"]].mean()
        table["bss"] = 1 - table["model"] / table["baseline"]
        table["rows"] = se.groupby(by).size()
        return table.rename(columns={"model": "brier", "baseline": "brier_baseline"})

    def pooled(self, held_out_only: bool = False) -> dict[str, float]:
        key = ("pooled", held_out_only)
        if key not in self._memo:
            frame = self.rows[self.rows["split"] == "held_out"] if held_out_only else self.rows
            self._memo[key] = evaluate.scores(frame["clear"].to_numpy(), frame["p"].to_numpy(),
                                              0.5, frame["p_baseline"].to_numpy())
        return dict(self._memo[key])

    def summary(self) -> dict:
        """JSON-ready: pooled, by station, by horizon, by station and horizon."""
        if "summary" not in self._memo:
            self._memo["summary"] = self._summary()
        return copy.deepcopy(self._memo["summary"])

    def _summary(self) -> dict:
        def rounded(table: pd.DataFrame) -> dict:
            return {str(k): _r(v) for k, v in table["bss"].items()}

        grid = self.bss_table(["station_id", "horizon_h"])["bss"].unstack("horizon_h")
        return {
            "candidate": self.candidate,
            "pooled": self.pooled(),
            "pooled_held_out_months": (self.pooled(held_out_only=True)  # none in design
                                       if (self.rows["split"] == "held_out").any() else None),
            "bss_by_station": rounded(self.bss_table(["station_id"])),
            "bss_by_horizon": rounded(self.bss_table(["horizon_h"])),
            # the files' producers filled some label hours (TMY source flags): the same
            # comparison on the hours reported as observed, and on the filled ones
            "bss_by_label_origin": rounded(self.bss_table(["label_origin"])),
            "bss_by_station_and_horizon": {
                station: {str(h): _r(v) for h, v in per.items()}
                for station, per in grid.iterrows()},
            "worst_station_horizon_bss": _r(float(grid.min().min())),
        }


def _r(value: float) -> float:
    return float(f"{value:.6g}")


def leave_one_station_out(rows: pd.DataFrame, model: BaseEstimator, settings: Settings,
                          candidate: str, design: bool = False,
                          workers: int | None = None) -> LosoResult:
    """Refit ``model``'s recipe (a clone) and the baseline without each station; predict that
    station's rows. ``rows`` carry ``split`` (from :func:`starry_guide.core.splits.assign_splits`).

    With ``design`` (the numbers to make choices on): fit on the other stations' training
    months only and score the station's validation months only — no held-out month is
    fitted or scored, and no validation month is fitted. ``workers``: as
    :func:`leave_one_station_out_by_profile`."""
    return leave_one_station_out_by_profile({"full": rows}, model, settings, candidate,
                                            design, workers)["full"]


def leave_one_station_out_by_profile(profile_rows: dict[str, pd.DataFrame],
                                     model: BaseEstimator, settings: Settings, candidate: str,
                                     design: bool = False,
                                     workers: int | None = None) -> dict[str, LosoResult]:
    """:func:`leave_one_station_out` scored under input profiles, fitting once per station.

    ``profile_rows`` maps a profile name to the same model rows with that profile's inputs
    (:func:`starry_guide.pipeline.profiles.profile_rows`; ``"full"`` required). The recipe is
    fit on the other stations' *full* rows — as the pipeline trains it — and scores the
    held-out station's rows of every profile; calibrated persistence, the baseline, is fit on
    the other stations' rows *of that profile* (persistence on the fields the source has),
    so each profile's BSS compares like with like. The stations' refits run in ``workers``
    threads (default: params.yaml ``workers``; :func:`starry_guide.pipeline.parallel.parallel`);
    the result does not depend on their number. Returns one :class:`LosoResult` per
    profile."""
    from starry_guide.pipeline.training import BASELINE, month_blocks, predict_clear

    if "full" not in profile_rows:
        raise ValueError("leave one station out by profile: the 'full' rows are required "
                         "(the recipe is fit on them)")
    columns = feature_columns(settings.features)

    def research(frame: pd.DataFrame) -> pd.DataFrame:
        # the research stations only (production rows are later data)
        return frame[frame["source"] == "research"] if "source" in frame.columns else frame

    rows = research(profile_rows["full"])
    others = {name: research(frame) for name, frame in profile_rows.items() if name != "full"}
    for name, frame in others.items():
        if len(frame) != len(rows) or not (frame.index == rows.index).all():
            raise ValueError(f"profile {name!r}: its rows are not the full rows' (re-build "
                             "them with starry_guide.pipeline.profiles.profile_rows)")
    month = rows["segment"] % 100
    learnable = rows["split"].isin(["train", "validation", "unseen"]) & \
        ~month.isin(settings.split.held_out_months)
    scored = pd.Series(True, index=rows.index)
    if design:
        learnable &= ~month.isin(settings.split.validation_months)
        scored = month.isin(settings.split.validation_months)
    stations = sorted(rows["station_id"].unique())
    fit_masks = [learnable & (rows["station_id"] != station) for station in stations]
    held_masks = [scored & (rows["station_id"] == station) for station in stations]
    frames = {"full": rows, **others}
    # the recipe's refits are independent: one task per left-out station, in station order
    # (joblib returns results in task order, so nothing depends on the worker count)
    tasks = (delayed(_fit_and_predict)(
        clone(model), rows.loc[fit_at, columns], rows.loc[fit_at, "clear"],
        month_blocks(rows[fit_at]),
        {name: frame.loc[held_at, columns] for name, frame in frames.items()})
        for fit_at, held_at in zip(fit_masks, held_masks, strict=True))
    predictions = parallel(settings.workers if workers is None else workers)(tasks)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in profile_rows}
    for fit_at, held_at, p_model in zip(fit_masks, held_masks, predictions, strict=True):
        held = rows[held_at]
        ids = {
            "station_id": held["station_id"].to_numpy(),
            "horizon_h": held["horizon_h"].to_numpy().astype(int),
            "split": held["split"].astype(str).to_numpy(),
            "night": evaluate.night_ids(held),
            "target_time": held["target_time"].array,  # keeps its dtype (to_numpy: objects)
            "clear": held["clear"].to_numpy().astype(int),
            "label_origin": (held["target_label_origin"].astype(str).to_numpy()
                             if "target_label_origin" in held else "unknown"),
        }
        for name, frame in frames.items():
            # calibrated persistence is a table of counts (milliseconds): fit here
            baseline = models.build_candidate(BASELINE, settings.train.params_for(BASELINE),
                                              settings.seed,
                                              settings.label.clear_max_opaque_tenths)
            baseline.fit(frame.loc[fit_at, columns], frame.loc[fit_at, "clear"])
            parts[name].append(pd.DataFrame({
                **ids,
                "p": p_model[name],
                "p_baseline": predict_clear(baseline, frame.loc[held_at, columns]),
            }))
    return {name: LosoResult(candidate, pd.concat(parts[name], ignore_index=True))
            for name in profile_rows}


def _fit_and_predict(model: BaseEstimator, X_fit: pd.DataFrame, y_fit: pd.Series,
                     groups: np.ndarray, X_held: dict[str, pd.DataFrame]
                     ) -> dict[str, np.ndarray]:
    """One leave-one-station-out refit (a joblib task): fit ``model`` on the other
    stations' rows, return P(clear) of the left-out station's rows under each profile."""
    from starry_guide.pipeline.training import predict_clear

    fitted = models.fit(model, X_fit, y_fit, groups)
    return {name: predict_clear(fitted, X) for name, X in X_held.items()}


def profile_table(results: dict[str, LosoResult]) -> dict[str, dict]:
    """JSON-ready, per profile: pooled BSS vs calibrated persistence with both Brier scores,
    the same per station, and the worst station — the forecast-skill page's profile table."""
    table = {}
    for name, result in results.items():
        frame = result.rows
        brier = float(((frame["p"] - frame["clear"]) ** 2).mean())
        brier_base = float(((frame["p_baseline"] - frame["clear"]) ** 2).mean())
        by_station = result.bss_table(["station_id"])
        table[name] = {
            "candidate": result.candidate,
            "rows": int(len(frame)),
            "bss": _r(1 - brier / brier_base),
            "brier": _r(brier),
            "brier_baseline": _r(brier_base),
            "bss_by_station": {str(k): _r(v) for k, v in by_station["bss"].items()},
            "brier_by_station": {str(k): _r(v) for k, v in by_station["brier"].items()},
            "brier_baseline_by_station": {str(k): _r(v)
                                          for k, v in by_station["brier_baseline"].items()},
            "worst_station_bss": _r(float(by_station["bss"].min())),
        }
    return table


def plot_station_horizon(result: LosoResult, title: str):
    """Heat map of LOSO BSS, station (rows) x horizon (columns), values written in."""
    import matplotlib.pyplot as plt

    grid = result.bss_table(["station_id", "horizon_h"])["bss"].unstack("horizon_h")
    pooled = result.bss_table(["station_id"])["bss"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(grid) + 1.6))
    limit = max(0.1, float(np.nanmax(np.abs(grid.to_numpy()))))
    image = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid.iat[i, j]:+.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(grid.shape[1]), [str(h) for h in grid.columns])
    ax.set_yticks(range(grid.shape[0]),
                  [f"{s} ({pooled[s]:+.3f})" for s in grid.index])
    ax.set(xlabel="horizon (hours ahead)", title=title)
    fig.colorbar(image, ax=ax, label="BSS vs calibrated persistence", shrink=0.8)
    fig.tight_layout()
    return fig


def recalibrate(p_fit: np.ndarray, y_fit: np.ndarray, p_apply: np.ndarray,
                shrinkage: float) -> np.ndarray:
    """Fit ``P(clear) = sigmoid(a + b * logit(p))`` on a station's labelled rows, with a
    Gaussian prior pulling ``(a, b)`` toward ``(0, 1)`` (no change) of weight ``shrinkage``
    (in rows), and apply it to ``p_apply`` — :mod:`starry_guide.core.adaptation`'s map, the one
    the service applies to a production station."""
    from starry_guide.core.adaptation import apply_recalibration, fit_recalibration

    if len(y_fit) == 0:
        return p_apply
    return apply_recalibration(p_apply, *fit_recalibration(p_fit, y_fit, shrinkage))


def adaptation(result: LosoResult, labelled_nights: tuple[int, ...] = (0, 7, 30, 90),
               starts: int = 4, shrinkage: float = 200.0) -> pd.DataFrame:
    """Skill at a new station after ``n`` labelled nights of its own.

    For each station and each of ``starts`` start dates spread over the year, the station's
    nights are taken in time order from that date: the first ``n`` are labelled (they
    recalibrate both the model and the baseline with :func:`recalibrate`), and every model is
    scored on the same later nights (those after the largest ``n``), so the columns compare
    like with like. Returns one row per ``n``: pooled BSS of the adapted model vs the
    calibrated-persistence baseline fit on the other stations (``bss_vs_baseline``) and vs
    the baseline adapted the same way (``bss_vs_adapted_baseline``), and the worst
    station's BSS vs the adapted baseline.
    """
    rows = result.rows.sort_values(["station_id", "target_time", "horizon_h"], kind="stable")
    horizon_max = max(labelled_nights)
    scores: dict[int, list[pd.DataFrame]] = {n: [] for n in labelled_nights}
    for station, part in rows.groupby("station_id", sort=True):
        nights = pd.unique(part["night"].to_numpy())
        for k in range(starts):
            start = k * len(nights) // starts
            order = np.roll(nights, -start)
            rank = pd.Series(np.arange(len(order)), index=order)
            position = rank.loc[part["night"].to_numpy()].to_numpy()
            later = position >= horizon_max
            for n in labelled_nights:
                labelled = position < n
                y_fit = part["clear"].to_numpy()[labelled]
                apply = part.loc[later]
                p = recalibrate(part["p"].to_numpy()[labelled], y_fit, apply["p"].to_numpy(),
                                shrinkage)
                p_base = recalibrate(part["p_baseline"].to_numpy()[labelled], y_fit,
                                     apply["p_baseline"].to_numpy(), shrinkage)
                scores[n].append(pd.DataFrame({
                    "station_id": station, "clear": apply["clear"].to_numpy(),
                    "se": (p - apply["clear"].to_numpy()) ** 2,
                    "se_base": (apply["p_baseline"].to_numpy() - apply["clear"].to_numpy()) ** 2,
                    "se_base_adapted": (p_base - apply["clear"].to_numpy()) ** 2}))
    records = []
    for n in labelled_nights:
        frame = pd.concat(scores[n], ignore_index=True)
        per_station = frame.groupby("station_id")[["se", "se_base_adapted"]].mean()
        records.append({
            "labelled_nights": n,
            "bss_vs_baseline": _r(1 - frame["se"].mean() / frame["se_base"].mean()),
            "bss_vs_adapted_baseline": _r(1 - frame["se"].mean()
                                          / frame["se_base_adapted"].mean()),
            "worst_station_bss_vs_adapted_baseline": _r(float(
                (1 - per_station["se"] / per_station["se_base_adapted"]).min())),
            "scored_rows": int(len(frame)),
        })
    return pd.DataFrame.from_records(records).set_index("labelled_nights")
