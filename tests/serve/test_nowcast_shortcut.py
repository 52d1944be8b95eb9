"""``POST /v1/nowcast``'s shortcut (serve/nowcast_shortcut.py) against the route it stands in
for: two real uvicorn servers on one SQLite store — ``starry serve`` (with the shortcut) and
the same app without it (tests/support/routed_app.py) — are sent the same valid and invalid
bodies and must answer alike, byte for byte, and store the same rows; then the request
guard's limits in front of the shortcut (rate, size, content type) on a third server."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from starry_guide.config import load_settings
from starry_guide.serve.process import SETTINGS_VARIABLE
from tests.serve.conftest import request_body
from tests.support.server import free_port, start_server, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"rate_per_s": 1000.0, "rate_burst": 1000}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def servers(bundle_dir, tmp_path_factory):
    """(the shortcut's URL, the route's URL, the shared store's path)."""
    folder = tmp_path_factory.mktemp("shortcut")
    store = folder / "store.sqlite"
    shortcut = start_server(bundle_dir, folder, "--rate-per-s", "1000", "--rate-burst", "1000",
                            "--no-nudge", store=store)
    settings = dataclasses.replace(load_settings(ROOT).serve, **LIMITS)
    port = free_port()
    log = folder / "routed.log"
    env = {**os.environ, "STARRY_BUNDLE": str(bundle_dir), "STARRY_STORE_URL": f"sqlite:///{store}",
           SETTINGS_VARIABLE: json.dumps(dataclasses.asdict(settings)), "STARRY_NUDGE": "0"}
    with log.open("wb") as out:
        routed = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.support.routed_app:app", "--factory",
             "--port", str(port), "--log-level", "warning", "--no-access-log",
             "--http", "starry_guide.serve.http.protocol:GuardedHttpToolsProtocol"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", routed, log=log)
        yield shortcut.url, f"http://127.0.0.1:{port}", store
    finally:
        routed.terminate()
        routed.wait(timeout=20)
        shortcut.stop()


def shortcut_counts(url: str) -> dict[str, float]:
    """``starry_nowcast_shortcut_total`` by outcome (those above 0), from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {outcome: float(value) for outcome, value in re.findall(
        r'^starry_nowcast_shortcut_total\{outcome="(\w+)"\} (\S+)$', text, re.MULTILINE)
        if float(value) > 0}


def changed(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in {*before, *after}
            if after.get(k, 0.0) != before.get(k, 0.0)}


def stored(store: Path, prediction_id: str) -> dict:
    """A prediction's rows in the store, without its id and the time it was written."""
    with sqlite3.connect(store) as db:
        db.row_factory = sqlite3.Row
        head = db.execute("SELECT * FROM predictions WHERE prediction_id = ?",
                          (prediction_id,)).fetchone()
        horizons = db.execute(
            "SELECT horizon_h, target_time, p_clear, target_sun_elevation_deg "
            "FROM prediction_horizons WHERE prediction_id = ? ORDER BY horizon_h",
            (prediction_id,)).fetchall()
        features = db.execute("SELECT features FROM prediction_inputs WHERE prediction_id = ?",
                              (prediction_id,)).fetchone()
    assert head is not None and features is not None, prediction_id
    return {**{k: head[k] for k in head.keys() if k not in ("prediction_id", "created_at")},
            "horizons": [tuple(row) for row in horizons], "features": features[0]}


def valid_bodies(observations) -> list[dict]:
    with_gaps_in_fields = request_body(observations, "miami_fl", start=2000, hours=30)
    for hour in with_gaps_in_fields["observations"][-7:]:  # a METAR-like station's hours
        hour.pop("precipitable_water_cm", None)
        hour["visibility_km"] = None
    dew_above_air = request_body(observations, start=5000)
    last = dew_above_air["observations"][-1]
    last["temp_dew_c"] = last["temp_air_c"] + 3  # repaired to missing on the way in
    return [request_body(observations), with_gaps_in_fields, dew_above_air,
            request_body(observations, "greensboro_nc", start=7000, hours=240)]


def test_valid_bodies_get_the_routes_answer_and_store_the_same_rows(servers, observations):
    shortcut, routed, store = servers
    before = shortcut_counts(shortcut)
    bodies = valid_bodies(observations)
    for body in bodies:
        payload = json.dumps(body).encode()
        fast = httpx.post(f"{shortcut}/v1/nowcast", content=payload, headers=JSON, timeout=30)
        slow = httpx.post(f"{routed}/v1/nowcast", content=payload, headers=JSON, timeout=30)
        assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
        for header in ("content-type", "content-length"):
            assert fast.headers[header] == slow.headers[header], header
        fast_answer, slow_answer = fast.json(), slow.json()
        fast_id, slow_id = fast_answer.pop("prediction_id"), slow_answer.pop("prediction_id")
        assert fast_id != slow_id
        assert fast_answer == slow_answer
        # byte for byte (the shortcut serialises with orjson, the route with pydantic-core)
        assert fast.content.replace(fast_id.encode(), slow_id.encode()) == slow.content
        # the same rows, recorded before the answer
        assert stored(store, fast.json()["prediction_id"]) == \
            stored(store, slow.json()["prediction_id"])
    # the shortcut answered them itself; the route's server has no shortcut
    assert changed(before, shortcut_counts(shortcut)) == {"answered": len(bodies)}
    assert shortcut_counts(routed) == {}


def bad_bodies(observations) -> dict[str, bytes]:
    body = request_body(observations)

    def edited(change) -> bytes:
        copy = json.loads(json.dumps(body))
        change(copy)
        return json.dumps(copy).encode()

    return {
        "unknown field": edited(lambda b: b.update(extra=1)),
        "latitude out of range": edited(lambda b: b["station"].update(latitude=95)),
        "humidity out of range": edited(lambda b: b["observations"][3].update(
            relative_humidity=140)),
        "string as number": edited(lambda b: b["observations"][2].update(temp_air_c="3.9")),
        "boolean as number": edited(lambda b: b["station"].update(longitude=True)),
        "time without offset": edited(lambda b: b["observations"][0].update(
            time="2001-05-06T10:00:00")),
        "no station": edited(lambda b: b.pop("station")),
        "observations not a list": edited(lambda b: b.update(observations={"a": 1})),
        "241 observations": json.dumps(request_body(observations, hours=241)).encode(),
        "empty body": b"",
        "empty object": b"{}",
        "array": b"[1, 2]",
        "null": b"null",
        "not JSON": b'{"station": ',
        "NaN": edited(lambda b: b["station"].update(latitude=0)).replace(
            b'"latitude": 0', b'"latitude": NaN'),
        # valid for the model, refused by the service: its handlers answer
        "too few hours": edited(lambda b: b.update(observations=b["observations"][:3])),
        "a gap": edited(lambda b: b["observations"].pop(4)),
        "off the hour": edited(lambda b: b["observations"][-1].update(
            time=b["observations"][-1]["time"].replace(":00:00", ":30:00"))),
        "outside the ephemeris": edited(lambda b: [
            o.update(time=f"2070-01-01T{i:02d}:00:00+00:00")
            for i, o in enumerate(b["observations"])]),
    }


def test_invalid_bodies_get_the_routes_answers_byte_for_byte(servers, observations):
    shortcut, routed, _ = servers
    before = shortcut_counts(shortcut)
    bodies = bad_bodies(observations)
    for name, payload in bodies.items():
        fast = httpx.post(f"{shortcut}/v1/nowcast", content=payload, headers=JSON, timeout=30)
        slow = httpx.post(f"{routed}/v1/nowcast", content=payload, headers=JSON, timeout=30)
        assert 400 <= fast.status_code < 500, (name, fast.status_code, fast.text)
        assert (fast.status_code, fast.headers["content-type"], fast.content) == \
            (slow.status_code, slow.headers["content-type"], slow.content), name
    counts = changed(before, shortcut_counts(shortcut))
    # the guard answers what is not JSON; the service refuses the four hour-sequence cases;
    # the app validates the rest again
    assert counts == {"error": 4, "passed": len(bodies) - 4 - 2}, counts


def test_other_methods_and_paths_go_through_the_app(servers, observations):
    shortcut, routed, _ = servers
    before = shortcut_counts(shortcut)
    payload = json.dumps(request_body(observations)).encode()
    for method, path in (("GET", "/v1/nowcast"), ("PUT", "/v1/nowcast"),
                         ("POST", "/v1/nowcast/"), ("POST", "/v1/nowcasts")):
        fast = httpx.request(method, f"{shortcut}{path}", content=payload, headers=JSON,
                             timeout=30)
        slow = httpx.request(method, f"{routed}{path}", content=payload, headers=JSON,
                             timeout=30)
        assert fast.status_code != 200, (method, path)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), \
            (method, path)
    assert changed(before, shortcut_counts(shortcut)) == {}


def test_a_failed_commit_fails_the_request_as_through_the_route(servers, observations):
    shortcut, routed, store = servers
    before = shortcut_counts(shortcut)
    with sqlite3.connect(store) as db:  # a table of the store is gone
        db.execute("ALTER TABLE prediction_horizons RENAME TO horizons_away")
    try:
        payload = json.dumps(request_body(observations, start=4000)).encode()
        fast = httpx.post(f"{shortcut}/v1/nowcast", content=payload, headers=JSON, timeout=30)
        slow = httpx.post(f"{routed}/v1/nowcast", content=payload, headers=JSON, timeout=30)
    finally:
        with sqlite3.connect(store) as db:
            db.execute("ALTER TABLE horizons_away RENAME TO prediction_horizons")
    # nothing answered unrecorded: the app's server-error handler, no traceback sent
    assert fast.status_code == slow.status_code == 500
    assert fast.content == slow.content and b"Traceback" not in fast.content
    assert changed(before, shortcut_counts(shortcut)) == {"error": 1}
    with sqlite3.connect(store) as db:
        predictions, = db.execute("SELECT COUNT(*) FROM predictions").fetchone()
        horizons, = db.execute("SELECT COUNT(*) FROM prediction_horizons").fetchone()
    assert horizons == 12 * predictions  # the failed transactions left no half


def requests_total(url: str, status: int) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf'^starry_requests_total\{{endpoint="/v1/nowcast",status="{status}"\}} '
                      r"(\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_the_request_guard_and_metrics_wrap_the_shortcut(bundle_dir, tmp_path, observations):
    # four writes allowed (then one per 100 s), refused ones included; bodies over 4 KiB refused
    server = start_server(bundle_dir, tmp_path, "--rate-per-s", "0.01", "--rate-burst", "4",
                          "--max-body-bytes", "4096", "--no-nudge")
    try:
        url = f"{server.url}/v1/nowcast"
        payload = json.dumps(request_body(observations)).encode()
        assert len(payload) < 4096
        too_big = json.dumps(request_body(observations, hours=60)).encode()
        assert len(too_big) > 4096
        assert httpx.post(url, content=too_big, headers=JSON).status_code == 413
        assert httpx.post(url, content=payload,
                          headers={"Content-Type": "text/plain"}).status_code == 415
        assert [httpx.post(url, content=payload, headers=JSON).status_code
                for _ in range(3)] == [200, 200, 429]
        limited = httpx.post(url, content=payload, headers=JSON)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # only the two answered ones reached the shortcut and the store
        assert shortcut_counts(server.url) == {"answered": 2.0}
        with sqlite3.connect(tmp_path / "store.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM predictions").fetchone() == (2,)
        assert {status: requests_total(server.url, status) for status in (200, 413, 415, 429)
                } == {200: 2.0, 413: 1.0, 415: 1.0, 429: 2.0}
    finally:
        server.stop()


def test_the_shortcuts_serialiser_writes_the_routes_bytes(bundle_dir, tmp_path, observations):
    """orjson (the shortcut) against pydantic-core's ``to_json`` (the route) on the answers of
    real forecasts from random hours of every bundled station, and on answers whose
    probabilities are random numbers of every magnitude a rounding to 6 decimals leaves."""
    import datetime as dt
    import random

    import numpy as np
    from pydantic_core import to_json

    from starry_guide.artifacts.bundle import load_bundle
    from starry_guide.serve.nowcast_shortcut import answer_json
    from starry_guide.serve.schemas import NowcastRequest
    from starry_guide.serve.service import Service, recent_hours
    from starry_guide.serve.store.database import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}", maintenance=False)
    service = Service(load_bundle(bundle_dir), store)
    generator = random.Random(23)
    try:
        requests = []
        for station in sorted(observations["station_id"].unique()):
            count = int((observations["station_id"] == station).sum())
            for _ in range(10):
                body = request_body(observations, station,
                                    start=generator.randrange(count - 10))
                request = NowcastRequest.model_validate(body)
                try:
                    requests.append(recent_hours(request.station, request.observations,
                                                 service.features.history_h))
                except Exception:  # noqa: BLE001 - a gap in the station's hours: skip it
                    continue
        assert len(requests) >= 20
        answers = service.forecast_many(requests)
        issued = dt.datetime(2026, 12, 7, 5, tzinfo=dt.UTC)
        for exponent in range(0, 8):
            answers.append({**answers[0], "issued_for": issued, "forecasts": [
                {"horizon_h": h, "target_time": issued + dt.timedelta(hours=h),
                 "p_clear": round(generator.random() * 10.0 ** -exponent, 6),
                 "target_is_night": generator.random() < 0.5} for h in range(1, 13)]})
        answers.append({**answers[0], "missing_inputs": ["visibility_km"],
                        "forecasts": [{**answers[0]["forecasts"][0], "p_clear": p}
                                      for p in (0.0, 1.0, 1e-06, 5e-05, 0.999999)]})
        for answer in answers:
            assert answer_json(answer) == to_json(answer), answer
        assert any(np.isclose(f["p_clear"], 0, atol=1e-4) for a in answers
                   for f in a["forecasts"])  # the small magnitudes were reached
    finally:
        store.close()
