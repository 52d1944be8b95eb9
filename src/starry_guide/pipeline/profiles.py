"""Model rows under input profiles: the built-in stations as a poorer source would carry them.

:func:`profile_rows` applies each :class:`~starry_guide.core.profiles.InputProfile` to the
research stations' observations and recomputes the features with the one feature function
(:func:`starry_guide.core.features.hourly_features`), keeping every row's label, split and
target columns: the same (station, hour, horizon) rows as ``rows.parquet``, only the inputs
poorer. The labels stay the observed opaque cover of the full record — a profile changes what
the model is given, never what happened.

The per-hour features are computed once per profile (a second or so for eight stations) and
gathered onto the model rows by position, instead of rebuilding and re-merging the supervised
rows (ten times slower); the values are identical (tested).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from starry_guide.config import Settings
from starry_guide.core import features, profiles
from starry_guide.core.profiles import InputProfile

#: the rows of ``rows.parquet`` that profiles apply to (production rows are later data)
RESEARCH = "research"


def apply_to_frame(observations: pd.DataFrame, shape: InputProfile) -> pd.DataFrame:
    """A copy of ``observations`` (canonical hourly frame) as ``shape`` would carry it."""
    names = [c for c in (*profiles.COVER_INPUTS, *profiles.OPTIONAL_INPUTS)
             if c in observations.columns]
    changed = profiles.apply_profile({c: observations[c].to_numpy(dtype=float)
                                      for c in names}, shape)
    return observations.assign(**changed)


def profile_rows(observations: pd.DataFrame, rows: pd.DataFrame, settings: Settings,
                 shapes: Iterable[InputProfile] | None = None) -> dict[str, pd.DataFrame]:
    """The research rows of ``rows`` (model rows with ``split``), recomputed under each
    profile (default: every one of :data:`starry_guide.core.profiles.PROFILES`), by name.

    Raises
    ------
    ValueError
        when a row's (station, hour) is not among ``observations`` — the rows were not
        built from them (re-run the prepare stage).
    """
    shapes = list(profiles.PROFILES.values()) if shapes is None else list(shapes)
    if "source" in rows.columns:
        rows = rows[rows["source"] == RESEARCH]
    rows = rows.reset_index(drop=True)
    obs = observations.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    key = pd.MultiIndex.from_arrays([obs["station_id"].astype(str), obs["time"]])
    position = key.get_indexer(pd.MultiIndex.from_arrays(
        [rows["station_id"].astype(str), rows["time"]]))
    if (position < 0).any():
        first = int(np.flatnonzero(position < 0)[0])
        raise ValueError(
            f"model row {first} ({rows['station_id'].iloc[first]}, "
            f"{rows['time'].iloc[first]}) has no observation in observations.parquet: the "
            "rows were built from other data; re-run `dvc repro prepare`")
    target = {"horizon_h", "target_sun_elevation_deg", "target_hour_sin", "target_hour_cos"}
    hourly_names = [c for c in features.feature_columns(settings.features) if c not in target]
    out = {}
    for shape in shapes:
        if shape.name == profiles.FULL.name:
            out[shape.name] = rows
            continue
        hourly = features.hourly_features(apply_to_frame(obs, shape), settings.features)
        # float32 as model_arrays builds the matrix, held as float64 as model_rows does
        values = {c: hourly[c].to_numpy(dtype=float)[position].astype(np.float32)
                  .astype(np.float64) for c in hourly_names}
        out[shape.name] = rows.assign(**values)
    return out
