"""Probabilistic and decision metrics, pooled and per horizon, plus their figures.

The plotting functions return Matplotlib figures and never choose a backend: in a notebook
kernel they render inline; elsewhere Matplotlib's default applies (Agg when headless).

The Brier skill score (BSS) compares a model's Brier score with the calibrated-persistence
baseline on the same rows: ``1 - brier / brier_reference``; above 0 beats the baseline.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn import metrics as skm

#: metrics where a larger value is better
GREATER_IS_BETTER = {"roc_auc", "bss", "accuracy", "precision", "recall", "f1"}


def _round(value: float) -> float:
    # stable JSON: the same model gives the same text on every run and machine
    return float(f"{value:.6g}") if np.isfinite(value) else float("nan")


def scores(y_true: np.ndarray, p_clear: np.ndarray, threshold: float,
           p_reference: np.ndarray | None = None) -> dict[str, float]:
    """Every metric for one set of rows.

    Parameters
    ----------
    y_true : 1 = clear at ``t + h``
    p_clear : predicted P(clear)
    threshold : P(clear) at or above which "clear" is predicted
    p_reference : the baseline's P(clear) on the same rows, for ``bss``
    """
    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(p_clear, dtype=float), 0.0, 1.0)
    brier = skm.brier_score_loss(y, p)
    out = {
        "rows": float(len(y)),
        "clear_rate": float(y.mean()),
        "brier": brier,
        "log_loss": skm.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]),
        "roc_auc": skm.roc_auc_score(y, p) if len(np.unique(y)) == 2 else float("nan"),
        **decision_scores(y, p >= threshold),
        "ece": expected_calibration_error(y, p),
        "threshold": threshold,
    }
    if p_reference is not None:
        reference = skm.brier_score_loss(y, np.clip(p_reference, 0.0, 1.0))
        out["bss"] = 1.0 - brier / reference if reference > 0 else float("nan")
    return {k: _round(float(v)) for k, v in out.items()}


def decision_scores(y_true: np.ndarray, decided_clear: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of yes/no "clear" decisions, from one count of
    the confusion matrix.

    The same numbers as scikit-learn's ``accuracy_score``, ``precision_score``,
    ``recall_score`` and ``f1_score`` (binary, ``zero_division=0``), bit for bit: each is one
    division of whole counts, computed as scikit-learn does (F1 = 2·TP / (actual + predicted
    positives)). Those four functions each re-validate and re-count hundreds of thousands of
    rows; :func:`scores` runs for every candidate, split, horizon and station.
    """
    y = np.asarray(y_true, dtype=int) == 1
    decided = np.asarray(decided_clear, dtype=bool)
    n = len(y)
    true_positive = int(np.count_nonzero(y & decided))
    predicted = int(np.count_nonzero(decided))
    actual = int(np.count_nonzero(y))
    correct = n - predicted - actual + 2 * true_positive  # TP + TN

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else 0.0

    return {
        "accuracy": ratio(float(correct), float(n)),
        "precision": ratio(float(true_positive), float(predicted)),
        "recall": ratio(float(true_positive), float(actual)),
        "f1": ratio(2.0 * true_positive, float(actual) + float(predicted)),
    }


def expected_calibration_error(y_true: np.ndarray, p_clear: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean forecast| over equal-width bins, weighted by bin size."""
    table = reliability(y_true, p_clear, bins)
    weights = table["rows"] / table["rows"].sum()
    return float((weights * (table["observed"] - table["predicted"]).abs()).sum())


def choose_threshold(y_true: np.ndarray, p_clear: np.ndarray, metric: str = "f1") -> float:
    """The P(clear) cut-off that maximises ``metric`` (``f1`` or ``accuracy``) on these rows,
    searched on a 0.01 grid; chosen on validation, then applied unchanged to test rows.

    Counted for the whole grid at once from the sorted probabilities (the same numbers as
    scikit-learn's ``f1_score`` / ``accuracy_score`` at each cut-off, ~100 times faster)."""
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"threshold metric {metric!r}: use 'f1' or 'accuracy'")
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_clear, dtype=float)
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    order = np.argsort(p, kind="stable")
    first = np.searchsorted(p[order], grid, side="left")  # rows below the cut-off
    clear_below = np.concatenate([[0], np.cumsum(y[order])])[first]
    n, positives = len(y), int(y.sum())
    predicted = n - first                   # p >= t
    true_positive = positives - clear_below
    if metric == "f1":
        denominator = predicted + positives
        values = np.divide(2.0 * true_positive, denominator,
                           out=np.zeros(len(grid)), where=denominator > 0)
    else:
        true_negative = first - clear_below
        values = (true_positive + true_negative) / max(n, 1)
    return float(grid[int(np.argmax(values))])


def night_ids(rows: pd.DataFrame, longitude: pd.Series | None = None) -> np.ndarray:
    """An id per (station, night) of each row's target hour: local solar time shifted by 12 h,
    so one night (evening to morning) falls on one date. Bootstrap resamples whole nights:
    hours of a night are strongly correlated and must not be treated as independent."""
    lon = rows["longitude"] if longitude is None else longitude
    local = rows["target_time"] + pd.to_timedelta(lon.to_numpy() / 15.0 * 3600, unit="s")
    shifted = local - pd.Timedelta(hours=12)
    if shifted.dt.tz is not None:
        shifted = shifted.dt.tz_convert(None)  # the UTC wall clock, as a plain datetime
    day = shifted.to_numpy().astype("datetime64[D]")  # the date: floor to the day
    station = pd.factorize(rows["station_id"].astype(str))[0]
    # one number per (station, date), numbered in order of first appearance — the same ids
    # as factorising "station/YYYYMMDD" strings, without formatting a string per row
    key = station * 10.0**7 + (day.astype(np.int64) + 5 * 10**6)
    key[np.isnat(day)] = np.nan  # no date: no night (-1)
    return pd.factorize(key)[0]


def paired_bootstrap_brier(y_true: np.ndarray, p_new: np.ndarray, p_old: np.ndarray,
                           groups: np.ndarray, n_boot: int, seed: int,
                           level: float = 0.95) -> dict[str, float]:
    """Bootstrap CI of Brier(new) - Brier(old), resampling whole groups (nights) with
    replacement. Negative = the new model is better."""
    y = np.asarray(y_true, dtype=float)
    d = (np.asarray(p_new) - y) ** 2 - (np.asarray(p_old) - y) ** 2
    sums = np.bincount(groups, weights=d)
    counts = np.bincount(groups).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(sums), np.full(len(sums), 1 / len(sums)), size=n_boot)
    diffs = (draws @ sums) / (draws @ counts)
    alpha = (1 - level) / 2
    return {"brier_difference": float(d.mean()),
            "ci_low": float(np.quantile(diffs, alpha)),
            "ci_high": float(np.quantile(diffs, 1 - alpha)),
            "nights": float(len(sums)), "n_boot": float(n_boot)}


def skill_by_group(y_true: np.ndarray, p_clear: np.ndarray, p_reference: np.ndarray,
                   groups: np.ndarray | pd.Series) -> pd.DataFrame:
    """Brier of a forecast and of a reference, the skill score between them and the rows,
    per group (e.g. the label's origin: observed vs filled hours)."""
    y = np.asarray(y_true, dtype=float)
    frame = pd.DataFrame({"group": np.asarray(groups),
                          "brier": (np.asarray(p_clear, dtype=float) - y) ** 2,
                          "brier_reference": (np.asarray(p_reference, dtype=float) - y) ** 2})
    table = frame.groupby("group").agg(brier=("brier", "mean"),
                                       brier_reference=("brier_reference", "mean"),
                                       rows=("brier", "size"))
    table.insert(2, "bss", 1 - table["brier"] / table["brier_reference"])
    table.index.name = None
    return table


def scores_by_horizon(rows: pd.DataFrame, p_clear: np.ndarray, threshold: float,
                      p_reference: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`scores` for each ``horizon_h`` (one row per horizon)."""
    records = []
    p_clear = np.asarray(p_clear)
    for h, index in rows.groupby("horizon_h").indices.items():
        ref = None if p_reference is None else np.asarray(p_reference)[index]
        records.append({"horizon_h": int(h),
                        **scores(rows["clear"].to_numpy()[index], p_clear[index], threshold,
                                 ref)})
    return pd.DataFrame.from_records(records).set_index("horizon_h")


def reliability(y_true: np.ndarray, p_clear: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed clear rate against mean predicted P(clear), in equal-width bins."""
    p = np.clip(np.asarray(p_clear, dtype=float), 0, 1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "p": p, "y": np.asarray(y_true, dtype=float)})
    table = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"),
                                     rows=("y", "size"))
    return table.reset_index(drop=True).round(6)


def verification_by_horizon(y_true: np.ndarray, p_clear: np.ndarray, horizons: np.ndarray,
                            said: float = 0.7) -> pd.DataFrame:
    """"When we said at least ``said`` clear, how often was it clear?" — per horizon.

    One row per horizon: how many forecasts said P(clear) >= ``said``, the share of them that
    came true, the mean of those forecasts (what a calibrated model's share would be), and the
    clear rate over all rows of that horizon (what saying nothing would give).
    """
    frame = pd.DataFrame({"horizon_h": np.asarray(horizons, dtype=int),
                          "y": np.asarray(y_true, dtype=float),
                          "p": np.asarray(p_clear, dtype=float)})
    frame["said"] = frame["p"] >= said
    confident = frame[frame["said"]].groupby("horizon_h")
    table = pd.DataFrame({
        "forecasts": frame.groupby("horizon_h").size(),
        "said_clear": confident.size(),
        "came_true": confident["y"].mean(),
        "mean_forecast": confident["p"].mean(),
        "clear_rate": frame.groupby("horizon_h")["y"].mean(),
    })
    table["said_clear"] = table["said_clear"].fillna(0).astype(int)
    return table.rename_axis("horizon_h")


def plot_reliability(curves: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Reliability diagram: one line per model; the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, table in curves.items():
        ax.plot(table["predicted"], table["observed"], marker="o", label=name)
    ax.set(xlabel="predicted P(clear)", ylabel="observed clear rate", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def plot_roc(y_true: np.ndarray, probabilities: dict[str, np.ndarray], title: str) -> plt.Figure:
    """ROC curves, one per model, with their AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for name, p in probabilities.items():
        fpr, tpr, _ = skm.roc_curve(y_true, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y_true, p):.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def plot_by_horizon(table: pd.DataFrame, metric: str, title: str,
                    zero_line: bool = False) -> plt.Figure:
    """A metric against forecast horizon, one line per model (``table``: horizon x model)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    if zero_line:
        ax.axhline(0, color="grey", linestyle=":", linewidth=1)
    for name in table.columns:
        ax.plot(table.index, table[name], marker="o", label=name)
    ax.set(xlabel="horizon (hours ahead)", ylabel=metric, title=title)
    ax.set_xticks(list(table.index))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def population_stability_index(reference: np.ndarray, current: np.ndarray,
                               bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` on the reference's quantile bins; missing
    values get a bin of their own (empty bins floored at 1e-4: PSI is a log ratio)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref_ok) == 0 and len(cur_ok) == 0:
        return 0.0
    edges = (np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
             if len(ref_ok) else np.array([]))

    def shares(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, ok, side="right"),
                             minlength=len(edges) + 1).astype(float)
        counts = np.append(counts, len(values) - len(ok))
        return np.maximum(counts / max(len(values), 1), 1e-4)

    p, q = shares(ref, ref_ok), shares(cur, cur_ok)
    return float(np.sum((q - p) * np.log(q / p)))


def unseen_station_shift(reference: pd.DataFrame, unseen: pd.DataFrame,
                         columns: list[str], bins: int = 10) -> pd.DataFrame:
    """How different an unseen station's features are from the training stations' — a
    research comparison for generalisation (not monitoring: production traffic is judged by
    :mod:`starry_guide.monitor`). Per feature: PSI and the two-sample Kolmogorov-Smirnov
    statistic on the observed values, largest shift first."""
    from scipy import stats

    records = []
    for column in columns:
        ref = reference[column].to_numpy(dtype=float)
        cur = unseen[column].to_numpy(dtype=float)
        ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        ks = (float(stats.ks_2samp(ref_ok, cur_ok).statistic)
              if len(ref_ok) and len(cur_ok) else float("nan"))
        records.append({"feature": column,
                        "psi": _round(population_stability_index(ref, cur, bins)),
                        "ks_statistic": _round(ks),
                        "missing_reference": _round(float(np.isnan(ref).mean())),
                        "missing_unseen": _round(float(np.isnan(cur).mean()))})
    return (pd.DataFrame.from_records(records).set_index("feature")
            .sort_values("psi", ascending=False))


def plot_bars(values: pd.Series, xlabel: str, title: str,
              threshold: float | None = None) -> plt.Figure:
    """Horizontal bars, one per index entry, largest at the top (e.g. drift per feature);
    ``threshold`` draws a dotted reference line."""
    values = values.sort_values()
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.25 * len(values) + 1)))
    ax.barh([str(i) for i in values.index], values.to_numpy())
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle=":")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=xlabel, title=title)
    fig.tight_layout()
    return fig


def plot_grouped_bars(table: pd.DataFrame, ylabel: str, title: str) -> plt.Figure:
    """Grouped vertical bars: one group per row of ``table`` (e.g. a station), one bar per
    column (e.g. a model), with a line at 0."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(1, len(table.columns))
    x = np.arange(len(table.index))
    for i, name in enumerate(table.columns):
        ax.bar(x + i * width - 0.4 + width / 2, table[name].to_numpy(), width, label=name)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x, [str(i) for i in table.index])
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
