"""The one inference chain: raw hourly inputs -> repairs -> features -> model matrix ->
P(clear) -> the station's own recalibration.

The service (one request or a batch of them), batch scoring and the monitor's reference all
call :func:`infer`, so a served, a batch-scored and a monitored P(clear) for the same hours
are the same numbers (no train/serve skew: the repairs and features are training's own,
:func:`starry_guide.core.quality.repair_inputs` and :mod:`starry_guide.core.features`).

The model is anything with ``predict_matrix(float32 matrix) -> P(clear)`` and
``adapt(p, station_ids) -> p`` — :class:`starry_guide.artifacts.bundle.Bundle` is one; this
module loads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from starry_guide.config import FeatureSettings
from starry_guide.core import features, quality


class Model(Protocol):
    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray: ...

    def adapt(self, p: np.ndarray, station_ids) -> np.ndarray: ...


@dataclass(frozen=True)
class Inference:
    """P(clear) issued at some of the input hours.

    ``issued`` indexes the input rows a forecast was issued at; ``p_clear`` has one row per
    issued hour and one column per horizon; ``matrix`` is the model matrix (one row per
    issued hour and horizon, in that order); ``hourly`` the per-hour feature values at the
    issued hours (what the serving store logs as a prediction's inputs).
    """

    issued: np.ndarray
    seconds: np.ndarray
    p_clear: np.ndarray
    matrix: np.ndarray
    hourly: dict[str, np.ndarray]


def runs_of_hours(seconds: np.ndarray, station_ids: np.ndarray | None = None) -> np.ndarray:
    """True where a row starts a run of consecutive hours (a gap, or a new station): feature
    history never spans one. Rows must be in time order inside each station."""
    run_start = np.ones(len(seconds), dtype=bool)
    run_start[1:] = np.diff(seconds) != 3600
    if station_ids is not None and len(seconds):
        ids = np.asarray(station_ids, dtype=object)
        run_start[1:] |= ids[1:] != ids[:-1]
    return run_start


def infer(columns: Mapping[str, np.ndarray], seconds: np.ndarray, run_start: np.ndarray,
          model: Model, settings: FeatureSettings, horizons: tuple[int, ...],
          issue_at: np.ndarray | None = None, station_ids: np.ndarray | None = None
          ) -> Inference:
    """Forecasts from raw hourly inputs.

    Parameters
    ----------
    columns : :data:`starry_guide.core.features.INPUT_COLUMNS` as float arrays (NaN missing)
    seconds : UTC epoch seconds of each row; ``run_start`` as :func:`runs_of_hours`
    model : predicts from the model matrix and applies station maps (see module docstring)
    settings, horizons : the model's feature settings and forecast horizons
    issue_at : indices of the rows to forecast from (default: every row whose feature
        history is complete)
    station_ids : each row's registered station (None for a place): a station's own
        recalibration map, if the model has one, is applied to its forecasts
    """
    repaired = quality.repair_inputs(dict(columns))  # training's per-hour repairs
    hourly = features.hourly_feature_arrays(repaired, seconds, run_start, settings)
    complete = hourly["history_complete"]
    issued = (np.flatnonzero(complete) if issue_at is None
              else np.asarray(issue_at, dtype=np.int64))
    at_issue = {name: values[issued] for name, values in hourly.items()}
    at_issue["longitude"] = np.asarray(repaired["longitude"], dtype=float)[issued]
    matrix, _ = features.model_arrays(at_issue, seconds[issued], horizons, settings)
    p = np.asarray(model.predict_matrix(matrix), dtype=float).reshape(len(issued),
                                                                      len(horizons))
    if station_ids is not None and len(issued):
        p = model.adapt(p, np.asarray(station_ids, dtype=object)[issued])
    return Inference(issued, np.asarray(seconds)[issued], p, matrix, at_issue)
