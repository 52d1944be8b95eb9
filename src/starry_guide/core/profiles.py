"""Input profiles: which optional fields a source carries, and how coarsely.

A station file, a METAR feed or an API client may lack fields the model can use
(precipitable water, ceiling, visibility, ...). An :class:`InputProfile` names such a source
shape; :func:`apply_profile` turns full observations into what that source would have
carried (the evaluation under profiles does this to the built-in stations), and
:func:`missing_inputs` / :func:`detect_profile` read the coverage of real inputs (a file, a
request's hours), which ``starry validate``, the nowcast answers and the monitor report.

Pure definitions and array arithmetic, so the model (:mod:`starry_guide.core.models`), the
one inference chain and every edge share them; the frame-level helpers for ingestion are
:mod:`starry_guide.ingest.profiles`.

The profiles (``metar_like`` follows the METAR contract of :mod:`starry_guide.ingest.metar`):

* ``full`` — every field as the training files carry it;
* ``no_precipitable_water`` — no precipitable water (ASHRAE IWEC files, any surface report);
* ``metar_like`` — cover in METAR categories (0, FEW, SCT, BKN, OVC as tenths of sky at the
  midpoint of their okta range), no precipitable water, visibility capped at 10 statute
  miles (16.09 km, the US reporting cap), ceiling unknown above 3,650 m (what an automatic
  ceilometer sees);
* ``cover_only`` — sky cover and nothing else (astronomy is always known).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: the one input a forecast cannot do without: the opaque cover (persistence reads it)
REQUIRED_INPUT = "opaque_cloud_tenths"
#: every other weather input; a source may lack any of them (order: as the API lists them)
OPTIONAL_INPUTS: tuple[str, ...] = (
    "total_cloud_tenths", "temp_air_c", "temp_dew_c", "relative_humidity", "pressure_hpa",
    "wind_speed_ms", "wind_direction_deg", "visibility_km", "ceiling_m",
    "precipitable_water_cm",
)
#: METAR cover categories as tenths of sky: the midpoint of each okta range x 10/8
#: (0 oktas: 0; FEW 1-2: 1.875; SCT 3-4: 4.375; BKN 5-7: 7.5; OVC 8: 10)
METAR_COVER_TENTHS = (0.0, 1.875, 4.375, 7.5, 10.0)
#: a METAR's visibility cap: 10 statute miles
METAR_VISIBILITY_CAP_KM = 16.09
#: an automatic ceilometer sees cloud up to 12,000 ft; above, the ceiling is unknown
METAR_CEILING_SEEN_TO_M = 3650.0
#: the cover columns a profile may quantise
COVER_INPUTS = ("opaque_cloud_tenths", "total_cloud_tenths")

#: which model features each optional input feeds (a feature is NaN when its input is)
FEATURES_OF_INPUT: dict[str, tuple[str, ...]] = {
    "total_cloud_tenths": ("total_cloud_tenths",),
    "temp_air_c": ("temp_air_c", "dew_point_spread_c", "temp_change_{n}h",
                   "dew_point_spread_change_{n}h"),
    "temp_dew_c": ("dew_point_spread_c", "dew_point_spread_change_{n}h"),
    "relative_humidity": ("relative_humidity", "humidity_change_{n}h"),
    "pressure_hpa": ("pressure_change_{n}h",),
    "wind_speed_ms": ("wind_speed_ms", "wind_u_ms", "wind_v_ms"),
    "wind_direction_deg": ("wind_u_ms", "wind_v_ms"),
    "visibility_km": ("visibility_km",),
    "ceiling_m": ("ceiling_m",),
    "precipitable_water_cm": ("precipitable_water_cm",),
}


@dataclass(frozen=True)
class InputProfile:
    """What a kind of source carries.

    Parameters
    ----------
    name : the profile's id (reports, the API's ``input_profile``)
    description : one line for people
    absent : optional inputs the source never carries
    cover_categories : cover quantised to METAR categories (:data:`METAR_COVER_TENTHS`)
    visibility_cap_km : visibility reported at most this (None: uncapped)
    ceiling_seen_to_m : a ceiling above this is unknown (None: seen at any height)
    """

    name: str
    description: str
    absent: tuple[str, ...] = ()
    cover_categories: bool = False
    visibility_cap_km: float | None = None
    ceiling_seen_to_m: float | None = None


FULL = InputProfile("full", "every field the training files carry")
NO_PRECIPITABLE_WATER = InputProfile(
    "no_precipitable_water", "no precipitable water (IWEC files, surface reports)",
    absent=("precipitable_water_cm",))
METAR_LIKE = InputProfile(
    "metar_like", "an airport METAR: cover in categories (0, FEW, SCT, BKN, OVC), no "
    "precipitable water, visibility capped at 10 SM, ceiling unknown above 3,650 m",
    absent=("precipitable_water_cm",), cover_categories=True,
    visibility_cap_km=METAR_VISIBILITY_CAP_KM, ceiling_seen_to_m=METAR_CEILING_SEEN_TO_M)
COVER_ONLY = InputProfile(
    "cover_only", "sky cover only",
    absent=tuple(c for c in OPTIONAL_INPUTS if c != "total_cloud_tenths"))

#: the profiles every evaluation reports, richest first
PROFILES: dict[str, InputProfile] = {p.name: p for p in (FULL, NO_PRECIPITABLE_WATER,
                                                         METAR_LIKE, COVER_ONLY)}


def profile(name: str) -> InputProfile:
    """The profile called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown input profile {name!r}; choose from "
                         f"{', '.join(PROFILES)}") from None


def quantise_cover(tenths: np.ndarray) -> np.ndarray:
    """Cover in tenths as a METAR reports it: oktas (tenths x 0.8, rounded) grouped into
    0 / FEW (1-2) / SCT (3-4) / BKN (5-7) / OVC (8), each category at its
    :data:`METAR_COVER_TENTHS` value; NaN stays NaN."""
    tenths = np.asarray(tenths, dtype=float)
    oktas = np.rint(np.clip(np.nan_to_num(tenths), 0.0, 10.0) * 0.8)
    category = np.select([oktas == 0, oktas <= 2, oktas <= 4, oktas <= 7], [0, 1, 2, 3], 4)
    return np.where(np.isnan(tenths), np.nan, np.asarray(METAR_COVER_TENTHS)[category])


def apply_profile(columns: Mapping[str, np.ndarray], shape: InputProfile
                  ) -> dict[str, np.ndarray]:
    """``columns`` (raw hourly inputs by name) as a source of ``shape`` would carry them:
    absent inputs become NaN, cover is quantised, visibility capped, a ceiling above what
    the sensor sees unknown. Columns not named by the profile pass through unchanged."""
    out = {name: np.asarray(values) for name, values in columns.items()}
    for name in shape.absent:
        if name in out:
            out[name] = np.full(len(out[name]), np.nan)
    if shape.cover_categories:
        for name in COVER_INPUTS:
            if name in out:
                out[name] = quantise_cover(out[name])
    if shape.visibility_cap_km is not None and "visibility_km" in out:
        out["visibility_km"] = np.minimum(np.asarray(out["visibility_km"], dtype=float),
                                          shape.visibility_cap_km)
    if shape.ceiling_seen_to_m is not None and "ceiling_m" in out:
        ceiling = np.asarray(out["ceiling_m"], dtype=float)
        with np.errstate(invalid="ignore"):
            out["ceiling_m"] = np.where(ceiling > shape.ceiling_seen_to_m, np.nan, ceiling)
    return out


def missing_inputs(columns: Mapping[str, np.ndarray]) -> list[str]:
    """The optional inputs with no value at all in ``columns`` (absent names count as
    missing), in :data:`OPTIONAL_INPUTS` order."""
    return [name for name in OPTIONAL_INPUTS if not _has_a_value(columns.get(name))]


def _has_a_value(values) -> bool:
    if values is None or len(values) == 0:
        return False
    if len(values) == 1:
        # one hour (every served nowcast tests its latest hour): a scalar test, since the
        # NumPy reductions below cost more on a one-value array than the forecast's own
        # feature pass (py-spy on POST /v1/nowcast)
        value = next(iter(values))  # the value, whatever a Series is indexed by
        return value is not None and not math.isnan(float(value))
    return bool(np.any(~np.isnan(np.asarray(values, dtype=float))))


def _is_categorical(values: np.ndarray) -> bool:
    known = values[~np.isnan(values)]
    return bool(len(known)) and bool(np.isin(known, METAR_COVER_TENTHS).all()) and bool(
        np.isin(known, (1.875, 4.375, 7.5)).any())


def detect_profile(columns: Mapping[str, np.ndarray],
                   missing: list[str] | None = None) -> str:
    """The name of the profile that describes ``columns`` (one file, or one request's
    hours): ``cover_only`` when no weather input besides cover has a value,
    ``metar_like`` when the cover takes METAR category values and precipitable water is
    missing, ``no_precipitable_water`` when that is missing, else ``full`` (a ``full`` source
    may still lack other fields: :func:`missing_inputs` lists them). ``missing`` overrides
    which inputs count as missing (default: :func:`missing_inputs` of ``columns``)."""
    missing = set(missing_inputs(columns) if missing is None else missing)
    if missing >= set(COVER_ONLY.absent):
        return COVER_ONLY.name
    cover = np.asarray(columns.get(REQUIRED_INPUT, np.array([])), dtype=float)
    if "precipitable_water_cm" in missing and _is_categorical(cover):
        return METAR_LIKE.name
    if "precipitable_water_cm" in missing:
        return NO_PRECIPITABLE_WATER.name
    return FULL.name


def features_of(inputs: tuple[str, ...] | list[str], tendency_h: int) -> list[str]:
    """The model features fed by ``inputs`` (see :data:`FEATURES_OF_INPUT`), in first-seen
    order; ``tendency_h`` names the tendency features."""
    seen: dict[str, None] = {}
    for name in inputs:
        for feature in FEATURES_OF_INPUT[name]:
            seen[feature.format(n=tendency_h)] = None
    return list(seen)


def coverage(columns: Mapping[str, np.ndarray]) -> dict:
    """What one forecast's inputs cover, for an answer: ``missing_inputs`` — the optional
    inputs the latest (issue) hour lacks, which decide the sub-model that forecasts — and
    ``input_profile``, the profile of the hours sent (:func:`detect_profile`)."""
    latest_hour = {name: columns[name][-1:] for name in OPTIONAL_INPUTS if name in columns}
    missing = missing_inputs(latest_hour)
    return {"missing_inputs": missing, "input_profile": detect_profile(columns, missing)}
