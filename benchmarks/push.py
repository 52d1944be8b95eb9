"""Web Push at scale: 10,000 due subscriptions on 100 stations, delivered through a loopback
push service, against baselines in the same run.

A real ``starry serve`` (one worker, SQLite store, the decider on, test clock
``STARRY_CLOCK_START`` at 17:40 in Greensboro on 6 December 2026 so that the night lies
ahead) and, in this process, the loopback push service of the tests
(tests/support/push_service.py): every message is checked as a browser and push service
would — VAPID JWT verified against the server's public key, body decrypted (aes128gcm) with
the subscriber's private key.

1. 100 stations near Greensboro are registered and fed seven overcast hours (no clear window
   tonight); 10,000 subscriptions (100 per station, each with its own P-256 key pair and auth
   secret) are written to the store.
2. **The run**: the feeder posts seven clear hours to each of the 100 stations, 4 at a time;
   each accepted batch pokes the decider, which plans the station's night, claims its 100
   pushes and sends them. Measured: the time from the first observation batch posted to
   the last push received (target: under 60 s for all 10,000), pushes/s between the first
   and the last push, the server's peak resident memory (``VmHWM``) before and after.
3. Baselines, same run, same machine: the same 100 clear batches posted to a server with no
   subscription (the feed's own cost), and 2,000 pushes encrypted and posted by the
   package's sender straight from this process to the loopback service (16 threads: the
   delivery's own ceiling on this machine, with no planning and no store).
4. Subscribing through the API: 200 ``POST /v1/push/subscriptions``, one client.

    uv run python benchmarks/push.py [--bundle models/champion/bundle]

Results: ``benchmarks/results/push.json`` (quoted on the Serving and App pages of the docs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from starry_guide.serve import launch  # noqa: E402
from tests.support.push_service import PushService  # noqa: E402

CLOCK = "2026-12-06T22:40:00Z"
STATIONS = 100
PER_STATION = 100
FEEDERS = 4


def greensboro_hours() -> pd.DataFrame:
    """Greensboro's real hours (pvlib's TMY3 file), assessed as the pipeline does."""
    from starry_guide import config
    from starry_guide.core import quality
    from starry_guide.ingest import stations

    settings = config.load_settings(ROOT)
    entry = next(k for k, b in stations.BUILTIN_STATIONS.items()
                 if b.origin == "pvlib" and "greensboro" in k)
    data = stations.read_station(entry, settings.paths.raw_dir, settings.data.reference_year)
    frame = quality.assess(data, settings.label, settings.data.min_usable_night_hours)[0]
    return frame.reset_index(drop=True)


def steady(g: pd.DataFrame, opaque: float, month: int, last: dt.datetime) -> list[dict]:
    """Seven consecutive real hours all with this opaque cover, stamped to end at ``last``."""
    from starry_guide.core.schema import WEATHER_COLUMNS

    same = (g["opaque_cloud_tenths"] == opaque).astype(int).rolling(7).sum()
    end = next(i for i in same[same == 7].index if g["time"][i].month >= month)
    return [{"time": (last - dt.timedelta(hours=end - i)).isoformat(),
             **{c: (None if g[c][i] != g[c][i] else float(g[c][i])) for c in WEATHER_COLUMNS}}
            for i in range(end - 6, end + 1)]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class Run:
    """A server with 100 stations fed overcast hours."""

    def __init__(self, bundle: Path, folder: Path, hours: pd.DataFrame):
        self.token = secrets.token_urlsafe(32)
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.store = folder / "store.sqlite"
        self.server = launch.start(
            bundle, self.store, "--rate-per-s", "0", cwd=ROOT,
            env={"STARRY_FEED_TOKEN": self.token, "STARRY_CLOCK_START": CLOCK,
                 "STARRY_PUSH_ALLOW_PRIVATE": "1", "STARRY_NUDGE_INTERVAL_S": "3600"},
            log=folder / "server.log")
        self.url = self.server.url
        plan = httpx.get(f"{self.url}/v1/night", params={"lat": 36.1, "lon": -79.95},
                         timeout=60).json()
        dusk = pd.Timestamp(plan["summary"]["astronomical_dusk"]["utc"])
        last = dusk.floor("h").to_pydatetime() - dt.timedelta(hours=8)
        self.cloudy = steady(hours, 10, 11, last)
        self.clear = steady(hours, 0, 10, last + dt.timedelta(hours=7))
        self.stations = [f"st{i:03d}" for i in range(STATIONS)]
        with httpx.Client(timeout=120, headers=self.headers) as client:
            for i, station in enumerate(self.stations):
                client.put(f"{self.url}/v1/stations/{station}", json={
                    "latitude": 36.1 + (i % 10) * 0.01, "longitude": -79.95 + (i // 10) * 0.01,
                    "elevation_m": 273.0, "name": f"Station {i}"}).raise_for_status()
                client.post(f"{self.url}/v1/stations/{station}/observations",
                            json={"observations": self.cloudy}).raise_for_status()

    def post_clear(self) -> tuple[float, float]:
        """Post the clear hours to every station, FEEDERS at a time; (first post's start,
        last answer) as time.time()."""
        def post(station: str) -> None:
            with httpx.Client(timeout=300, headers=self.headers) as client:
                client.post(f"{self.url}/v1/stations/{station}/observations",
                            json={"observations": self.clear}).raise_for_status()

        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(FEEDERS) as pool:
            list(pool.map(post, self.stations))
        return start, time.time()

    def stop(self) -> None:
        self.server.stop()


def write_subscriptions(store: Path, push: PushService, stations: list[str]) -> list:
    """PER_STATION subscriptions per station, straight into the store (their creation is
    not what is measured; step 4 times the API)."""
    from starry_guide.serve.push.subscriptions import push_subscriptions
    from starry_guide.serve.store.database import Store

    opened = Store(store, maintenance=False)
    subscribers, rows = [], []
    now = dt.datetime.now(dt.UTC)
    for station in stations:
        for _ in range(PER_STATION):
            sub = push.subscriber()
            keys = sub.subscription()["keys"]
            subscribers.append(sub)
            rows.append({"subscription_id": uuid.uuid4().hex, "secret_sha256": "0" * 64,
                         "endpoint": sub.endpoint, "p256dh": keys["p256dh"],
                         "auth": keys["auth"], "station_id": station, "min_probability": 0.5,
                         "min_minutes": 30, "time_zone": "America/New_York",
                         "quiet_start": None, "quiet_end": None, "created_at": now,
                         "last_seen_at": now})
    with opened.write() as db:
        db.execute(push_subscriptions.insert(), rows)
    opened.close()
    return subscribers


def sender_baseline(key_file: Path, push: PushService, count: int = 2000) -> dict:
    from starry_guide.serve.push.sender import Sender
    from starry_guide.serve.push.vapid import Keys

    keys = Keys.load(key_file)
    push.expected_key = keys.public_key
    subscribers = [push.subscriber() for _ in range(200)]
    sender = Sender(keys, private_allowed=True)
    payload = {"station": "st000", "night": "2026-12-06", "start": "2026-12-06T23:45:00Z",
               "end": "2026-12-07T03:00:00Z", "mean_p_clear": 0.81,
               "title": "Clear window tonight at Station 0", "body": "18:45–22:00, 81 % clear."}
    before = len(push.messages)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda i: sender.send(subscribers[i % 200].subscription(),
                                                       payload, ttl=3600, topic="t"),
                                 range(count)))
    elapsed = time.perf_counter() - start
    sender.close()
    assert all(o.delivered for o in outcomes) and len(push.messages) - before == count
    return {"pushes": count, "seconds": round(elapsed, 2),
            "pushes_per_s": round(count / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "models" / "champion" / "bundle"))
    args = parser.parse_args()
    bundle = Path(args.bundle)
    if not (bundle / "model.onnx").exists():
        raise SystemExit(f"{bundle}: no bundle; run `make repro` or pass --bundle")
    hours = greensboro_hours()
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                f"{platform.python_version()}",
                     "load_average_1min_before": round(os.getloadavg()[0], 1),
                     "stations": STATIONS, "subscriptions": STATIONS * PER_STATION}
    with tempfile.TemporaryDirectory(prefix="starry-push-bench-") as tmp:
        tmp = Path(tmp)
        # baseline: the feed alone (no subscriptions)
        (tmp / "feed").mkdir()
        run = Run(bundle, tmp / "feed", hours)
        first, last = run.post_clear()
        run.stop()
        results["baseline_feed_only"] = {"batches": STATIONS,
                                         "seconds": round(last - first, 2)}
        # baseline: the sender alone, no server
        with PushService() as push:
            results["baseline_sender_only"] = sender_baseline(tmp / "baseline.pem", push)

        (tmp / "push").mkdir()
        run = Run(bundle, tmp / "push", hours)
        try:
            key = httpx.get(f"{run.url}/v1/push/key").json()["key"]
            with PushService(key) as push:
                subscribers = write_subscriptions(run.store, push, run.stations)
                rss_before = peak_rss_mb(run.server.process.pid)
                first, answered = run.post_clear()
                messages = push.wait_for(len(subscribers), seconds=600)
                rss_after = peak_rss_mb(run.server.process.pid)
                received = sorted(m.received for m in messages)
                assert push.rejected == [], push.rejected[:3]
                assert len({m.token for m in messages}) == len(subscribers)  # one each
                results["run"] = {
                    "pushes": len(messages),
                    "first_batch_to_last_push_s": round(received[-1] - first, 2),
                    "last_batch_answered_to_last_push_s": round(received[-1] - answered, 2),
                    "batches_posted_s": round(answered - first, 2),
                    "first_batch_to_first_push_s": round(received[0] - first, 2),
                    "pushes_per_s": round(len(messages) / max(1e-9, received[-1]
                                                              - received[0]), 1),
                    "server_peak_rss_mb_before": rss_before,
                    "server_peak_rss_mb_after": rss_after,
                    "within_60_s": received[-1] - first <= 60}
                # subscribing through the API, one client
                with httpx.Client(timeout=60) as client:
                    sample = [push.subscriber() for _ in range(200)]
                    start = time.perf_counter()
                    for sub in sample:
                        client.post(f"{run.url}/v1/push/subscriptions", json={
                            "subscription": sub.subscription(), "station": "st000",
                            "timezone": "America/New_York"}).raise_for_status()
                    elapsed = time.perf_counter() - start
                results["api_subscribe"] = {"requests": len(sample),
                                            "per_s": round(len(sample) / elapsed, 1)}
        finally:
            run.stop()
    results["load_average_1min_after"] = round(os.getloadavg()[0], 1)
    out = ROOT / "benchmarks" / "results" / "push.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
