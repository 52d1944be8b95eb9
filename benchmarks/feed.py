"""Feed benchmarks: how fast the observation feed ingests, and what it costs the nowcasts.

A real ``starry serve`` (one worker, the SQLite store in WAL mode, ``synchronous=FULL``)
with a feeder token; real hours of the bundled stations, one registered station per feeder.

1. Ingestion rate, observations/s, closed loop (each feeder sends its next request when the
   previous one is answered):
   - *hour by hour*: one observation per request, as a live feeder sends them — every
     request stores the hour, computes the station's nowcast and records it as a prediction;
     1 and 8 feeders (stations) at once;
   - *backfill*: 168 hours (a week) per request, 1 feeder — one nowcast per request.
2. Cost to nowcast latency: ``POST /v1/nowcast`` at 10 clients (benchmarks/loadgen.py)
   alone, and while 1 feeder posts hour by hour as fast as it is answered, and while 1
   feeder posts 20 hours/s (paced) — alternating rounds, the best of each kept.

    uv run python benchmarks/feed.py [--bundle models/champion/bundle]

Results: ``benchmarks/results/feed.json`` (quoted on the Serving page of the docs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import loadgen  # noqa: E402
from benchmarks.loadgen import encode_post  # noqa: E402
from starry_guide.serve import launch  # noqa: E402
from tests.serve.conftest import request_body  # noqa: E402

ROUNDS = 3
SECONDS = 3.0  # per round


def hours(observations: pd.DataFrame, station: str) -> list[dict]:
    from starry_guide.core.schema import WEATHER_COLUMNS

    columns = list(WEATHER_COLUMNS)
    part = observations[observations["station_id"] == station].sort_values("time")
    return [{"time": t.isoformat(),
             **{c: (None if pd.isna(v) else float(v)) for c, v in zip(columns, row,
                                                                      strict=True)}}
            for t, row in zip(part["time"], part[columns].to_numpy(), strict=True)]


def encode(method: str, path: str, body: dict, port: int, token: str) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


async def _feeder(port: int, requests: list[bytes], stop: float, per_request: int,
                  interval: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        next_send = time.perf_counter()
        for request in requests:
            if time.perf_counter() >= stop:
                break
            if interval:
                await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
                next_send += interval
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            if int(head[9:12]) != 200:
                raise RuntimeError(f"HTTP {head[9:12]!r}: {body[:300]!r}")
            counts.append(per_request)
    finally:
        writer.close()


def feed(port: int, streams: list[list[bytes]], seconds: float, per_request: int = 1,
         interval: float = 0.0) -> dict:
    """Feeders (one connection each, its own station) posting their requests in order."""
    counts: list[int] = []

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_feeder(port, s, start + seconds, per_request, interval,
                                       counts) for s in streams))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {"observations_per_s": round(sum(counts) / elapsed, 1),
            "requests_per_s": round(len(counts) / elapsed, 1)}


class Server:
    def __init__(self, bundle: Path, tmp: str):
        self.token = secrets.token_urlsafe(32)
        # the nowcast load comes from one address: the write-rate limit raised so that it is
        # never refused, but its bucket checked on every request (as in benchmarks/serving.py)
        self.server = launch.start(bundle, f"{tmp}/store.sqlite", "--rate-per-s", "1000000",
                                   "--rate-burst", "1000000", cwd=ROOT,
                                   env={"STARRY_FEED_TOKEN": self.token})
        self.process, self.port, self.url = (self.server.process, self.server.port,
                                             self.server.url)

    def register(self, station_id: str) -> None:
        response = httpx.put(f"{self.url}/v1/stations/{station_id}",
                             json={"latitude": 36.1, "longitude": -79.95},
                             headers={"Authorization": f"Bearer {self.token}"})
        response.raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "models" / "champion" / "bundle"))
    parser.add_argument("--observations",
                        default=str(ROOT / "data" / "processed" / "observations.parquet"))
    args = parser.parse_args()
    bundle = Path(args.bundle)
    if not (bundle / "model.onnx").exists():
        raise SystemExit(f"{bundle}: no bundle; run `make repro` or pass --bundle")
    observations = pd.read_parquet(args.observations)
    stations = sorted(observations["station_id"].unique())
    year = {s: hours(observations, s) for s in stations}
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                f"{platform.python_version()}",
                     # other work on the machine moves every number: say how much there was
                     "load_average_1min_before": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="starry-feed-bench-") as tmp:
        server = Server(bundle, tmp)
        try:
            port, token, used = server.port, server.token, 0

            def streams(n: int, per_request: int) -> list[list[bytes]]:
                """n feeders, each a fresh station, each its year of hours in requests."""
                nonlocal used
                out = []
                for _ in range(n):
                    station_id = f"bench{used}"
                    used += 1
                    server.register(station_id)
                    source = year[stations[used % len(stations)]]
                    out.append([encode("POST", f"/v1/stations/{station_id}/observations",
                                       {"observations": source[i:i + per_request]}, port,
                                       token)
                                for i in range(0, len(source), per_request)])
                return out

            ingestion = {}
            for name, n, per_request in (("hour_by_hour_1_feeder", 1, 1),
                                         ("hour_by_hour_8_feeders", 8, 1),
                                         ("backfill_168_hours_per_request", 1, 168)):
                best = None
                for _ in range(ROUNDS):
                    run = feed(port, streams(n, per_request), SECONDS, per_request)
                    if best is None or run["observations_per_s"] > best["observations_per_s"]:
                        best = run
                ingestion[name] = best
            results["ingestion"] = ingestion

            body = request_body(observations, station=stations[0])
            nowcast = encode_post("/v1/nowcast", body, port)
            rounds: dict[str, list[dict]] = {"alone": [], "with_feeder_max": [],
                                             "with_feeder_20_per_s": []}
            for _ in range(ROUNDS):
                rounds["alone"].append(loadgen.closed_loop(port, nowcast, 10, SECONDS))
                for name, interval in (("with_feeder_max", 0.0),
                                       ("with_feeder_20_per_s", 0.05)):
                    stream = streams(1, 1)
                    outcome: dict = {}

                    def background(stream=stream, interval=interval, outcome=outcome) -> None:
                        outcome.update(feed(port, stream, SECONDS + 0.5, 1, interval))

                    thread = threading.Thread(target=background)
                    thread.start()
                    time.sleep(0.25)
                    run = loadgen.closed_loop(port, nowcast, 10, SECONDS, warmup=0)
                    thread.join()
                    rounds[name].append({**run, "feed": outcome})
            latency = {name: max(runs, key=lambda r: r["requests_per_s"])
                       for name, runs in rounds.items()}
            alone = latency["alone"]
            for name in ("with_feeder_max", "with_feeder_20_per_s"):
                r = latency[name]
                r["p50_ms_added"] = round(r["p50_ms"] - alone["p50_ms"], 2)
                r["p99_ms_added"] = round(r["p99_ms"] - alone["p99_ms"], 2)
                r["requests_per_s_ratio"] = round(r["requests_per_s"]
                                                  / alone["requests_per_s"], 3)
            results["nowcast_10_clients"] = latency
            store = httpx.get(f"{server.url}/healthz").json()["store"]
            results["store_after"] = {"bytes": store["maintenance"]["bytes"],
                                      "wal_truncations":
                                          store["maintenance"]["wal_truncations"]}
        finally:
            server.stop()
    results["load_average_1min_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "benchmarks" / "results" / "feed.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
