"""The serving store's snapshot as files (``data/production/``): its one schema, and its
reader. The writer is :mod:`starry_guide.serve.snapshot` (``starry store snapshot``); the
pipeline (production data for training) and the monitor read it through :func:`read_table`.

Deterministic: rows sorted by their keys, columns in a fixed order with fixed types (also
when a table is empty), no absolute paths and no time of the snapshot itself, so the same
store content always gives byte-identical files (and ``dvc repro`` re-runs monitoring
exactly when production data changed). Written to a temporary folder first, then moved
into place: a failed snapshot leaves the previous one intact.

Files and columns (stable; times are UTC, ``timestamp[us, tz=UTC]``)
-------------------------------------------------------------------
``stations.parquet`` (by ``station_id``)
    ``station_id``, ``latitude``, ``longitude``, ``elevation_m``, ``name``,
    ``registered_at``, ``updated_at``
``observations.parquet`` (latest revision; by ``station_id``, ``time``)
    ``station_id``, ``time``, the weather columns of
    :data:`starry_guide.core.schema.WEATHER_COLUMNS`, ``received_at``, ``revision``
``predictions.parquet`` (one row per prediction and horizon; by ``issued_for``,
``station_id``, ``prediction_id``, ``horizon_h``)
    ``prediction_id``, ``created_at``, ``model_version``, ``kind``, ``station_id``,
    ``latitude``, ``longitude``, ``issued_for``, ``horizon_h``, ``target_time``,
    ``target_sun_elevation_deg``, ``p_clear``, ``observed_opaque_cloud_tenths`` (the truth:
    the station's opaque cover at ``target_time``, null until observed), ``clear`` (bool,
    null when unknown: cover <= ``label.clear_max_opaque_tenths``)
``prediction_features.parquet`` (by ``prediction_id``)
    ``prediction_id`` and one float64 column per hourly feature at issue time (the model's
    inputs; columns sorted by name; null = missing)
``feedback.parquet`` (by ``prediction_id``)
    ``prediction_id``, ``received_at``, ``observed_at``, ``observed``
    (``clear``/``partly``/``cloudy``)
``manifest.json``
    ``schema_revision``, ``clear_max_opaque_tenths``, per file its ``rows``, and the time
    ranges (``observations``: first/last ``time``; ``predictions``: first/last
    ``issued_for``) — ISO 8601 or null.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from starry_guide.core.schema import WEATHER_COLUMNS

TIME = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "stations": pa.schema([
        ("station_id", pa.string()), ("latitude", pa.float64()), ("longitude", pa.float64()),
        ("elevation_m", pa.float64()), ("name", pa.string()), ("registered_at", TIME),
        ("updated_at", TIME)]),
    "observations": pa.schema([
        ("station_id", pa.string()), ("time", TIME),
        *((name, pa.float64()) for name in WEATHER_COLUMNS),
        ("received_at", TIME), ("revision", pa.int64())]),
    "predictions": pa.schema([
        ("prediction_id", pa.string()), ("created_at", TIME), ("model_version", pa.string()),
        ("kind", pa.string()), ("station_id", pa.string()), ("latitude", pa.float64()),
        ("longitude", pa.float64()), ("issued_for", TIME), ("horizon_h", pa.int64()),
        ("target_time", TIME), ("target_sun_elevation_deg", pa.float64()),
        ("p_clear", pa.float64()), ("observed_opaque_cloud_tenths", pa.float64()),
        ("clear", pa.bool_())]),
    "feedback": pa.schema([
        ("prediction_id", pa.string()), ("received_at", TIME), ("observed_at", TIME),
        ("observed", pa.string())]),
}
FILES = ("stations", "observations", "predictions", "prediction_features", "feedback")
MANIFEST = "manifest.json"


class SnapshotError(ValueError):
    """A snapshot file cannot be read; the message names the file and what to do."""


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """One table of the snapshot in ``folder`` (``name`` one of :data:`FILES`) as a data
    frame; empty when the file is absent (no snapshot, or a store without such rows).

    Raises
    ------
    SnapshotError
        the file exists but is not readable Parquet.
    """
    if name not in FILES:
        raise ValueError(f"{name!r} is not a snapshot table; one of {', '.join(FILES)}")
    path = Path(folder) / f"{name}.parquet"
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same story
        raise SnapshotError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: "
                            f"{exc}); take a new snapshot with `starry store snapshot --out "
                            f"{Path(folder)}`") from None


def read_manifest(folder: Path) -> dict:
    """The snapshot's ``manifest.json`` (empty when absent)."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
