"""Station adaptation: a per-station recalibration learned from the station's own labelled
production nights.

A model pooled over many places cannot know that *this* station's sky changed (or always
differed): the features do not — must not — identify a station. What a station's own
labelled history can teach cheaply and safely is a recalibration of the model's logit,
``P(clear) = sigmoid(a + b * logit(p))``, with a Gaussian prior that pulls ``(a, b)`` toward
``(0, 1)`` (no change) with the weight of ``shrinkage`` rows: a handful of nights barely move
it, weeks of a sky that clouds over every night move it a lot. It is what "retraining" can do
for one station between two research releases, and it is fitted by the select stage for
every candidate on the production rows that train (never on the recent window the gate
judges on), exported in the bundle's model card and applied by the service to that station's
nowcasts.

Pure functions; maps are plain dicts ``{station_id: {"a", "b", "nights", "rows"}}`` so they
travel in JSON.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
from scipy.optimize import minimize

#: prior weight (in rows) pulling a station's map toward no change
DEFAULT_SHRINKAGE = 200.0


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def fit_recalibration(p: np.ndarray, y: np.ndarray,
                      shrinkage: float = DEFAULT_SHRINKAGE) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``y`` under ``sigmoid(a + b * logit(p))``
    minus the prior ``shrinkage * (a**2 + (b - 1)**2)``; ``(0, 1)`` without rows."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return 0.0, 1.0
    z = logit(p)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta
        q = np.clip(1 / (1 + np.exp(-(a + b * z))), 1e-9, 1 - 1e-9)
        nll = -np.sum(y * np.log(q) + (1 - y) * np.log(1 - q))
        r = q - y
        grad = np.array([r.sum() + 2 * shrinkage * a, (r * z).sum() + 2 * shrinkage * (b - 1)])
        return nll + shrinkage * (a ** 2 + (b - 1) ** 2), grad

    a, b = minimize(loss, np.array([0.0, 1.0]), jac=True, method="L-BFGS-B").x
    return float(a), float(b)


def apply_recalibration(p: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(a + b * logit(p))))


def fit_station_maps(rows: pd.DataFrame, p: np.ndarray, *, min_nights: int,
                     shrinkage: float = DEFAULT_SHRINKAGE) -> dict[str, dict]:
    """One map per station with at least ``min_nights`` labelled nights among ``rows``
    (columns ``station_id``, ``clear``, ``night``), fitted to the model's ``p`` on them.
    Values are rounded (to 6 significant digits), so the maps — and the content id that
    includes them — are the same on every machine."""
    maps = {}
    p = np.asarray(p, dtype=float)
    for station, index in rows.groupby("station_id", sort=True).indices.items():
        part = rows.iloc[index]
        nights = int(part["night"].nunique())
        if nights < min_nights:
            continue
        a, b = fit_recalibration(p[index], part["clear"].to_numpy(), shrinkage)
        maps[str(station)] = {"a": float(f"{a:.6g}"), "b": float(f"{b:.6g}"),
                              "nights": nights, "rows": int(len(part))}
    return maps


def apply_station_maps(p: np.ndarray, station_ids, maps: dict[str, dict]) -> np.ndarray:
    """``p`` with each row's station map applied (rows of stations without one unchanged)."""
    out = np.asarray(p, dtype=float).copy()
    if not maps:
        return out
    station_ids = np.asarray(station_ids, dtype=object)
    for station, m in maps.items():
        at = station_ids == station
        if at.any():
            out[at] = apply_recalibration(out[at], m["a"], m["b"])
    return out


def adapted_id(model_id: str, maps: dict[str, dict]) -> str:
    """The content id of a model with its station maps: the model's own id when it has
    none, else a hash of both (a different map is a different model)."""
    if not maps:
        return model_id
    text = model_id + json.dumps(maps, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
