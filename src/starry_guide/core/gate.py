"""The champion gate's statistics: pure functions of predictions, labels and night ids.

Whether a challenger may replace the champion is decided here; the words that explain the
decision are :mod:`starry_guide.pipeline.champion`'s. A challenger passes when its Brier
improvement over the champion is significant on at least one test (the validation months,
and, when they exist, the most recent production window and new places) and it is
significantly worse on none, and no horizon falls below calibrated persistence on the
validation months. Each test is a paired bootstrap over whole nights
(:func:`starry_guide.core.evaluate.paired_bootstrap_brier`); trying ``k`` challengers on ``m``
tests, each is judged at the Bonferroni level :func:`bonferroni_level`.
"""

from __future__ import annotations

import numpy as np

from starry_guide.core import evaluate


def bonferroni_level(confidence: float, challengers: int, tests: int) -> float:
    """The confidence each of ``challengers`` x ``tests`` comparisons is judged at, so that
    the chance any passes by luck stays ``1 - confidence``."""
    return 1 - (1 - confidence) / (max(challengers, 1) * tests)


def comparison(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, nights: np.ndarray, *,
               n_boot: int, confidence: float, seed: int) -> dict:
    """Brier(new) - Brier(old) with its ``confidence`` CI (paired bootstrap over whole
    nights), and whether new is significantly ``better`` (CI below 0) or ``worse`` (above)."""
    boot = evaluate.paired_bootstrap_brier(np.asarray(y, dtype=float), p_new, p_old, nights,
                                           n_boot, seed, confidence)
    return {**boot, "confidence": confidence, "better": bool(boot["ci_high"] < 0),
            "worse": bool(boot["ci_low"] > 0)}


def skill_by_horizon(y: np.ndarray, p: np.ndarray, p_baseline: np.ndarray,
                     horizons: np.ndarray) -> dict[int, float]:
    """Brier skill of ``p`` against ``p_baseline`` at each horizon (0 where the baseline is
    perfect)."""
    y = np.asarray(y, dtype=float)
    skill = {}
    for h in np.unique(horizons):
        at = horizons == h
        ref = np.mean((p_baseline[at] - y[at]) ** 2)
        skill[int(h)] = float(1 - np.mean((p[at] - y[at]) ** 2) / ref) if ref > 0 else 0.0
    return skill


def validation_gate(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray,
                    p_baseline: np.ndarray, horizons: np.ndarray, nights: np.ndarray, *,
                    n_boot: int, confidence: float, horizon_tolerance: float,
                    seed: int) -> dict:
    """The validation months' test: :func:`comparison` plus the skill against calibrated
    persistence per horizon and the horizons below ``-horizon_tolerance``; ``passed`` when
    the improvement is significant and no horizon loses."""
    result = comparison(y, p_new, p_old, nights, n_boot=n_boot, confidence=confidence,
                        seed=seed)
    skill = skill_by_horizon(y, p_new, p_baseline, horizons)
    losing = sorted(h for h, v in skill.items() if v < -horizon_tolerance)
    return {**result, "bss_by_horizon": skill, "losing_horizons": losing,
            "passed": result["better"] and not losing}


def passes(validation: dict, held_out: list[dict]) -> bool:
    """The decision with further tests: significantly better on any test, significantly
    worse on none, and no horizon below calibrated persistence on validation."""
    tests = [validation, *held_out]
    return (any(t["better"] for t in tests) and not any(t["worse"] for t in tests)
            and not validation["losing_horizons"])


def profile_floor(y: np.ndarray, p: np.ndarray, p_baseline: np.ndarray,
                  tolerance: float) -> dict:
    """Pooled Brier skill of ``p`` against calibrated persistence on the fields an input
    profile carries (``p_baseline``), and whether it falls below ``-tolerance``: a model
    that a missing field makes worse than persistence is not promoted, however much better
    it is elsewhere."""
    y = np.asarray(y, dtype=float)
    ref = float(np.mean((np.asarray(p_baseline) - y) ** 2))
    bss = float(1 - np.mean((np.asarray(p) - y) ** 2) / ref) if ref > 0 else 0.0
    return {"bss": bss, "below": bool(bss < -tolerance)}
