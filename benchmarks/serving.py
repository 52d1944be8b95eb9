"""Serving benchmarks, each against a baseline measured in the same run.

1. API: requests/s and p50/p99 latency of POST /v1/nowcast (a real uvicorn process serving
   the champion bundle) at 1, 10 and 50 concurrent clients, side by side with a bare FastAPI
   endpoint returning a constant (benchmarks/bare_app.py) under the same load.
2. Batch: rows/s of `score_local` end to end (CSV in -> Parquet out) vs raw onnxruntime on an
   in-memory array of the same model rows.
3. The night planner: latency of one location-night (GET /v1/night logic, in process).
4. Dask: the same batch on a LocalCluster of 1 vs 2 workers.

    uv run python benchmarks/serving.py      # needs models/champion/bundle (make repro)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "champion" / "bundle"
sys.path.insert(0, str(ROOT))
from benchmarks import loadgen  # noqa: E402
from benchmarks.loadgen import encode_post  # noqa: E402
from tests.serve.conftest import request_body  # noqa: E402  (the tests' real-data request)

SECONDS_PER_LEVEL = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/nowcast", json={}, timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{args} did not start")


def api_benchmark(body: dict) -> dict:
    env_python = sys.executable
    tmp = tempfile.mkdtemp(prefix="starry-bench-")
    real_port, bare_port = free_port(), free_port()
    real = start([env_python, "-m", "starry_guide.cli", "serve", "--bundle", str(BUNDLE),
                  "--port", str(real_port), "--prediction-log", f"{tmp}/log.sqlite"], real_port)
    bare = start([env_python, "-m", "uvicorn", "benchmarks.bare_app:app", "--port",
                  str(bare_port), "--log-level", "warning"], bare_port)
    results = {}
    try:
        for clients in (1, 10, 50):
            results[clients] = {
                "nowcast": loadgen.closed_loop(real_port, encode_post("/v1/nowcast", body,
                                                                      real_port),
                                               clients, SECONDS_PER_LEVEL),
                "bare": loadgen.closed_loop(bare_port, encode_post("/v1/nowcast", body,
                                                                   bare_port),
                                            clients, SECONDS_PER_LEVEL),
            }
            r = results[clients]
            r["ratio_rps"] = round(r["nowcast"]["requests_per_s"] / r["bare"]["requests_per_s"], 3)
    finally:
        real.terminate()
        bare.terminate()
    return results


def batch_benchmark(observations: pd.DataFrame) -> dict:
    from starry_guide.serve import batch
    from starry_guide.serve.bundle import load_bundle
    from starry_guide.stations import WEATHER_COLUMNS

    bundle = load_bundle(BUNDLE)
    frame = observations[["station_id", "time", "latitude", "longitude", "elevation_m",
                          *WEATHER_COLUMNS]].copy()
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "obs.csv", Path(tmp) / "scores.parquet"
        frame.to_csv(source, index=False)
        t0 = time.perf_counter()
        checked, _ = batch.check_rows(batch.read_observations(source), str(source))
        scores = batch.score_local(checked, bundle, progress=False)
        batch.write_output(scores, target)
        end_to_end = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask_1 = batch.score_dask(checked, BUNDLE, n_workers=1)
        dask_1_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask_2 = batch.score_dask(checked, BUNDLE, n_workers=2)
        dask_2_s = time.perf_counter() - t0
    assert len(dask_1) == len(dask_2) == len(scores)
    X = np.random.default_rng(0).normal(size=(len(scores), len(bundle.features)))
    X = X.astype(np.float32)
    t0 = time.perf_counter()
    bundle.session.run(["p_clear"], {"features": X})
    raw = time.perf_counter() - t0
    return {"rows": len(scores),
            "end_to_end_rows_per_s": round(len(scores) / end_to_end),
            "raw_onnxruntime_rows_per_s": round(len(scores) / raw),
            "ratio": round(raw / end_to_end, 4),
            "dask_1_worker_s": round(dask_1_s, 2), "dask_2_workers_s": round(dask_2_s, 2)}


def night_benchmark() -> dict:
    from starry_guide.serve.api import NightRequest, Service, Station
    from starry_guide.serve.bundle import load_bundle
    from starry_guide.serve.predlog import PredictionLog

    with tempfile.TemporaryDirectory() as tmp:
        service = Service(load_bundle(BUNDLE), PredictionLog(Path(tmp) / "log.sqlite"))
        request = NightRequest(station=Station(latitude=36.1, longitude=-79.95),
                               date=dt.date(2026, 11, 27))
        asyncio.run(service.night(request))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            asyncio.run(service.night(request))
            times.append(time.perf_counter() - t0)
    return {"median_ms": round(statistics.median(times) * 1000, 1)}


def main() -> None:
    observations = pd.read_parquet(ROOT / "data" / "processed" / "observations.parquet")
    body = request_body(observations)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "api": api_benchmark(body),
        "batch": batch_benchmark(observations),
        "night": night_benchmark(),
    }
    out = ROOT / "benchmarks" / "results" / "serving.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
