"""Drift between a reference sample (the training features) and a current one.

Per feature: the population stability index (PSI, on the reference's quantile bins) and,
for numeric features, the two-sample Kolmogorov-Smirnov test. On top: the share of drifted
features, drift of the predicted P(clear), and performance on current vs reference rows.
The verdict ``retrain_recommended`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from starry_guide.config import DriftSettings

_EPS = 1e-4  # floor for empty bins: PSI is a log ratio


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``.

    Bins are the reference's quantiles (so each holds about 1/bins of it); missing values get
    a bin of their own, so a feature that goes missing counts as drift.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref_ok) == 0 and len(cur_ok) == 0:
        return 0.0
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(
        ref_ok) else np.array([])

    def shares(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, ok, side="right"),
                             minlength=len(edges) + 1).astype(float)
        counts = np.append(counts, len(values) - len(ok))  # the missing bin
        return np.maximum(counts / max(len(values), 1), _EPS)

    p, q = shares(ref, ref_ok), shares(cur, cur_ok)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and p-value on the observed (non-missing) values; NaNs if
    either side is empty."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
                  settings: DriftSettings) -> pd.DataFrame:
    """PSI, KS statistic and p-value, and a ``drifted`` flag per feature.

    A feature drifted when its PSI exceeds the threshold, or when the KS test is significant
    *and* its statistic is large enough to matter: with tens of thousands of hours, KS finds
    differences far too small to affect a model.
    """
    records = []
    for column in columns:
        ref, cur = reference[column].to_numpy(), current[column].to_numpy()
        value_psi = psi(ref, cur, settings.psi_bins)
        statistic, p = ks_test(ref, cur)
        ks_drift = (np.isfinite(p) and p < settings.ks_alpha
                    and statistic > settings.ks_min_statistic)
        records.append({"feature": column, "psi": round(value_psi, 6),
                        "ks_statistic": round(statistic, 6) if np.isfinite(statistic) else None,
                        "ks_pvalue": float(f"{p:.6g}") if np.isfinite(p) else None,
                        "drifted": bool(value_psi > settings.psi_threshold or ks_drift)})
    return pd.DataFrame.from_records(records).set_index("feature")


@dataclass
class Verdict:
    retrain_recommended: bool
    reasons: list[str] = field(default_factory=list)


def verdict(drifted_share: float, prediction_psi: float, brier_reference: float,
            brier_current: float, settings: DriftSettings) -> Verdict:
    """Recommend retraining when too many features drifted, the predictions' distribution
    moved, or the Brier score degraded beyond the thresholds in ``params.yaml``."""
    reasons = []
    if drifted_share > settings.drifted_share_threshold:
        reasons.append(f"{drifted_share:.0%} of features drifted "
                       f"(threshold {settings.drifted_share_threshold:.0%})")
    if prediction_psi > settings.psi_threshold:
        reasons.append(f"prediction PSI {prediction_psi:.3f} > {settings.psi_threshold}")
    degradation = brier_current - brier_reference
    if degradation > settings.brier_degradation_threshold:
        reasons.append(f"Brier worse by {degradation:.4f} on current data "
                       f"(threshold {settings.brier_degradation_threshold})")
    return Verdict(bool(reasons), reasons)
