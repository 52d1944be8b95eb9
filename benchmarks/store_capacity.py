"""Store capacity: prediction rows per second one PostgreSQL sustains through the project's
own write path (:meth:`starry_guide.serve.store.database.Store.log_predictions`: a
``predictions`` row, its 12 ``prediction_horizons`` rows and its ``prediction_inputs`` row,
committed durably — ``fsync=on``, ``synchronous_commit=on``).

A throw-away PostgreSQL 15 (Debian's, as in the tests) on this machine; closed-loop writer
threads for a few seconds per round, alternating rounds, the best of each kept:

- *baseline*: the floor of a durable commit — one tiny row (``INSERT INTO bench_floor``)
  per transaction, through the same engine and pool;
- *one per commit*: ``log_predictions`` of one prediction per transaction (no group commit),
  1, 4 and 8 writers;
- *group commit*: ``log_predictions`` of 16 and 64 predictions per transaction — what the
  API's writer thread does when requests arrive together — 1 and 4 writers.

    uv run python benchmarks/store_capacity.py        # or: make bench-store

Results: ``benchmarks/results/store_capacity.json`` (the Deployment page's capacity section).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from starry_guide.serve.store.database import Prediction, Store  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402

ROUNDS = 3
SECONDS = 3.0  # per measurement
HORIZONS = range(1, 13)


def feature_names() -> list[str]:
    spec = json.loads((ROOT / "models" / "champion" / "bundle" / "feature_spec.json")
                      .read_text())
    return [name for name in spec["features"] if not name.startswith("target_")]


def make_predictions(n: int, names: list[str], rng: np.random.Generator) -> list[Prediction]:
    """``n`` nowcasts shaped as the service records them (12 horizons, the hourly inputs)."""
    issued = dt.datetime(2001, 5, 6, 11, tzinfo=dt.UTC)
    out = []
    for _ in range(n):
        values = rng.random(len(names) + 24)
        out.append(Prediction(
            prediction_id=uuid.uuid4().hex, model_version="bench", kind="nowcast",
            latitude=36.1 + values[0], longitude=-79.95 + values[1], issued_for=issued,
            horizons=[(h, issued + dt.timedelta(hours=h), float(values[1 + h]))
                      for h in HORIZONS],
            station_id=None, features=dict(zip(names, values[24:].tolist(), strict=True)),
            target_sun_elevation_deg=(values[12:24] * 90 - 45).tolist()))
    return out


def closed_loop(write, writers: int, seconds: float) -> tuple[float, float]:
    """Calls of ``write(rng)`` per second by ``writers`` threads (each returns the rows it
    committed); returns committed units per second and the cores this (client) process
    used meanwhile — near 1, the Python side (one GIL) sets the pace, not the database."""
    done = [0] * writers
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        while time.perf_counter() < stop:
            done[k] += write(rng)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(writers)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return sum(done) / wall, (time.process_time() - cpu) / wall


def main() -> None:
    names = feature_names()
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                f"{platform.python_version()}",
                     "load_average_1min_before": round(os.getloadavg()[0], 1),
                     "database": "PostgreSQL 15 (Debian), fsync=on, synchronous_commit=on, "
                                 "same machine, loopback TCP",
                     "prediction": f"1 predictions row + {len(HORIZONS)} prediction_horizons "
                                   f"rows + 1 prediction_inputs row ({len(names)} features)",
                     "seconds_per_measurement": SECONDS, "rounds": ROUNDS}
    with running_postgres() as database:
        # the store as the API opens it (its pool: 5 + 10 overflow, more than the writers)
        store = Store(database.url, maintenance=False)
        with store.engine.begin() as db:
            db.exec_driver_sql("CREATE TABLE bench_floor (id text PRIMARY KEY)")

        def floor(rng) -> int:
            with store.engine.begin() as db:
                db.exec_driver_sql("INSERT INTO bench_floor VALUES (%s)", (uuid.uuid4().hex,))
            return 1

        templates = make_predictions(64, names, np.random.default_rng(0))

        def batch_writer(size: int):
            # built before: the clock measures the store's write path, not the row making
            def write(rng) -> int:
                store.log_predictions([dataclasses.replace(p, prediction_id=uuid.uuid4().hex)
                                       for p in templates[:size]])
                return size
            return write

        cases = {"baseline_commit_1_writer": (floor, 1),
                 "baseline_commit_4_writers": (floor, 4),
                 "baseline_commit_8_writers": (floor, 8),
                 "one_per_commit_1_writer": (batch_writer(1), 1),
                 "one_per_commit_4_writers": (batch_writer(1), 4),
                 "one_per_commit_8_writers": (batch_writer(1), 8),
                 "group_16_1_writer": (batch_writer(16), 1),
                 "group_64_1_writer": (batch_writer(64), 1),
                 "group_64_4_writers": (batch_writer(64), 4)}
        best: dict[str, float] = {}
        client_cores: dict[str, float] = {}
        for round_ in range(ROUNDS):
            for name, (write, writers) in cases.items():
                rate, cores = closed_loop(write, writers, SECONDS)
                if rate > best.get(name, 0.0):
                    best[name], client_cores[name] = rate, cores
                print(f"round {round_ + 1} {name}: {rate:,.0f}/s, client {cores:.2f} cores",
                      flush=True)
        predictions = store.count("predictions")
        store.close()
    results["commits_per_s"] = {k: round(v, 1) for k, v in best.items()
                                if k.startswith("baseline")}
    results["predictions_per_s"] = {k: round(v, 1) for k, v in best.items()
                                    if not k.startswith("baseline")}
    results["client_cores_used"] = {k: round(v, 2) for k, v in client_cores.items()}
    results["rows_per_prediction"] = 2 + len(HORIZONS)
    results["one_per_commit_vs_baseline_1_writer"] = round(
        best["one_per_commit_1_writer"] / best["baseline_commit_1_writer"], 3)
    results["predictions_written"] = predictions
    results["load_average_1min_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "benchmarks" / "results" / "store_capacity.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
