"""Input profiles of station files: which model inputs a file carries, and so which profile
(:mod:`starry_guide.core.profiles`) its forecasts use — what ``starry validate`` prints."""

from __future__ import annotations

import pandas as pd

from starry_guide.core import profiles


def file_coverage(frame: pd.DataFrame) -> dict:
    """A station frame's coverage: ``missing_inputs`` — the optional model inputs with no
    value in the whole file (absent, or dropped by the quality policy) — and
    ``input_profile``, the profile that describes the file."""
    names = (profiles.REQUIRED_INPUT, *profiles.OPTIONAL_INPUTS)
    arrays = {c: frame[c].to_numpy(dtype=float) for c in names if c in frame.columns}
    missing = profiles.missing_inputs(arrays)
    return {"missing_inputs": missing,
            "input_profile": profiles.detect_profile(arrays, missing)}


def describe(coverage: dict) -> list[str]:
    """``starry validate``'s lines for a file's coverage."""
    missing = coverage["missing_inputs"]
    shape = profiles.profile(coverage["input_profile"])
    lines = [f"  model inputs missing: {', '.join(missing) if missing else 'none'}",
             f"  input profile: {shape.name} ({shape.description})"]
    if missing:
        lines.append("  forecasts from this file fall back to the sub-model trained without "
                     "the missing inputs (never worse than calibrated persistence by design; "
                     "see the docs' Forecast skill, Input profiles)")
    return lines
