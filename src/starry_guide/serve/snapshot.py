"""A snapshot of the serving store as files — what monitoring (and training on production
data) reads: ``starry store snapshot [--store URL] [--out data/production]``. The files'
schema and their reader are :mod:`starry_guide.artifacts.snapshot`; this module writes them.

Deterministic: rows sorted by their keys, columns in a fixed order with fixed types (also
when a table is empty), no absolute paths and no time of the snapshot itself, so the same
store content always gives byte-identical files (and ``dvc repro`` re-runs monitoring
exactly when production data changed). Written to a temporary folder first, then moved
into place: a failed snapshot leaves the previous one intact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from starry_guide.artifacts.snapshot import FILES, MANIFEST, SCHEMAS
from starry_guide.serve.store import database as serving


def _rows(db: sa.Connection, query) -> list[dict[str, Any]]:
    return [dict(row) for row in db.execute(query).mappings()]


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names}
                                 for row in rows], schema=schema)


def read_tables(store: serving.Store, clear_max_opaque_tenths: float) -> dict[str, pa.Table]:
    """The store's content as Arrow tables (see the module docstring), in one read
    transaction so they are consistent with each other."""
    s = serving
    # one snapshot of the data for all tables: SQLite's read transaction is one already;
    # PostgreSQL's default (READ COMMITTED) sees each statement's own moment
    options = ({"isolation_level": "REPEATABLE READ"} if store.dialect == "postgresql"
               else {})
    with store.engine.connect().execution_options(**options) as db, db.begin():
        stations = _rows(db, sa.select(s.stations).order_by(s.stations.c.station_id))
        observations = _rows(db, sa.select(s.observations).order_by(
            s.observations.c.station_id, s.observations.c.time))
        labelled = s.Store.labelled_horizons(clear_max_opaque_tenths).subquery()
        predictions = _rows(db, sa.select(labelled).order_by(
            labelled.c.issued_for, labelled.c.station_id.is_(None), labelled.c.station_id,
            labelled.c.prediction_id, labelled.c.horizon_h))
        inputs = _rows(db, sa.select(s.prediction_inputs).order_by(
            s.prediction_inputs.c.prediction_id))
        feedback = _rows(db, sa.select(s.feedback).order_by(s.feedback.c.prediction_id))
    for row in predictions:
        row["clear"] = None if row["clear"] is None else bool(row["clear"])
    features = [{"prediction_id": row["prediction_id"], **json.loads(row["features"])}
                for row in inputs]
    names = sorted({k for row in features for k in row} - {"prediction_id"})
    feature_schema = pa.schema([("prediction_id", pa.string()),
                                *((name, pa.float64()) for name in names)])
    return {
        "stations": _table(stations, SCHEMAS["stations"]),
        "observations": _table(observations, SCHEMAS["observations"]),
        "predictions": _table(predictions, SCHEMAS["predictions"]),
        "prediction_features": _table(features, feature_schema),
        "feedback": _table(feedback, SCHEMAS["feedback"]),
    }


def _range(table: pa.Table, column: str) -> list[str | None]:
    if table.num_rows == 0:
        return [None, None]
    values = table.column(column).to_pylist()
    return [min(values).isoformat(), max(values).isoformat()]


def write_snapshot(store: serving.Store, out: Path | str,
                   clear_max_opaque_tenths: float) -> dict[str, Any]:
    """Write the snapshot files and ``manifest.json`` into ``out`` (replacing the previous
    snapshot's files only once all new ones are written). Returns the manifest."""
    out = Path(out)
    tables = read_tables(store, clear_max_opaque_tenths)
    manifest = {
        "schema_revision": serving.current_revision(store.engine),
        "clear_max_opaque_tenths": clear_max_opaque_tenths,
        "files": {f"{name}.parquet": {"rows": tables[name].num_rows} for name in FILES},
        "time_range": {"observations": _range(tables["observations"], "time"),
                       "predictions": _range(tables["predictions"], "issued_for")},
    }
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".snapshot-") as tmp:
        for name in FILES:
            # no pandas metadata, no statistics timestamps: bytes depend on the data only
            pq.write_table(tables[name], Path(tmp) / f"{name}.parquet", compression="zstd")
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2,
                                                            sort_keys=True) + "\n")
        for path in sorted(Path(tmp).iterdir()):
            shutil.move(path, out / path.name)
    return manifest
