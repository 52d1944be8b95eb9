"""A real `starry serve` on a real PostgreSQL that is stopped and started again: while the
database is away every endpoint that needs it answers 503 with ``Retry-After`` and a JSON
problem (never 500, never a hang), ``/healthz`` says 503 so a balancer takes the host out,
and the server uses the restarted database again by itself, with every acknowledged
prediction in it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from starry_guide.serve.store.database import Store
from tests.serve.conftest import request_body
from tests.support.postgres import running_postgres
from tests.support.server import ROOT, start_server

TOKEN = "fault-test-feeder-token-0123456789"
#: a request must be answered within the store's deadline; this margin covers a loaded machine
HANG = Store.DEADLINE_S + 20


@pytest.fixture()
def database():
    with running_postgres() as server:
        yield server


def _store_requests(body: dict, prediction_id: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, JSON body) of every endpoint kind that reads or writes the store."""
    hour = body["observations"][-1]
    return [
        ("POST", "/v1/nowcast", body),
        ("POST", "/v1/night", {"station": body["station"], "date": "tonight",
                               "observations": body["observations"]}),
        ("POST", "/v1/feedback", {"prediction_id": prediction_id, "observed": "clear"}),
        ("GET", "/v1/stations", None),
        ("GET", "/v1/stations/fault_station/nowcast", None),
        ("GET", "/v1/stations/fault_station/night", None),
        ("PUT", "/v1/stations/fault_station", body["station"]),
        ("POST", "/v1/stations/fault_station/observations", {"observations": [hour]}),
        ("GET", "/healthz", None),
    ]


def test_a_database_restart_is_answered_503_then_recovered(database, tmp_path, observations):
    body = request_body(observations)
    server = start_server(ROOT / "models" / "champion" / "bundle", tmp_path,
                          "--rate-per-s", "0", store=database.url, workers=1,
                          env={"STARRY_FEED_TOKEN": TOKEN})
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=HANG,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            station = client.put("/v1/stations/fault_station", json=body["station"])
            assert station.status_code in (200, 201), station.text
            fed = client.post("/v1/stations/fault_station/observations",
                              json={"observations": body["observations"]})
            assert fed.status_code == 200, fed.text
            for _ in range(3):
                answer = client.post("/v1/nowcast", json=body)
                assert answer.status_code == 200, answer.text
                acknowledged.append(answer.json()["prediction_id"])

            database.stop("fast")  # a restart's first half: sessions are ended
            for method, path, payload in _store_requests(body, acknowledged[0]):
                start = time.monotonic()
                response = client.request(method, path, json=payload)
                took = time.monotonic() - start
                where = f"{method} {path} while the database is down"
                assert response.status_code == 503, f"{where}: {response.status_code} " \
                                                    f"{response.text[:300]}"
                assert int(response.headers["Retry-After"]) >= 1, where
                assert response.headers["content-type"].startswith("application/json"), where
                reply = response.json()
                if path == "/healthz":
                    assert reply["status"] == "unavailable", reply
                else:
                    assert reply["detail"][0]["type"] == "store_unavailable", reply
                assert took < HANG, f"{where}: answered after {took:.1f} s"
                print(f"{where}: 503 in {took:.2f} s")

            database.start()
            back = time.monotonic()
            while True:
                answer = client.post("/v1/nowcast", json=body)
                if answer.status_code == 200:
                    break
                assert answer.status_code == 503, answer.text
                assert time.monotonic() - back < 10, "not recovered 10 s after the restart"
                time.sleep(0.2)
            recovered = time.monotonic() - back
            acknowledged.append(answer.json()["prediction_id"])
            print(f"recovered {recovered:.2f} s after the database accepted connections")
            for method, path, payload in _store_requests(body, acknowledged[0]):
                response = client.request(method, path, json=payload)
                assert response.status_code < 500, f"{method} {path} after the restart: " \
                                                   f"{response.status_code} {response.text}"
            assert client.get("/healthz").json()["status"] == "ok"
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]
    store = Store(database.url, maintenance=False)
    try:
        missing = [p for p in acknowledged if not store.has_prediction(p)]
    finally:
        store.close()
    assert missing == [], f"acknowledged predictions missing from the store: {missing}"


def test_an_unreachable_database_fails_fast_with_store_unavailable(tmp_path):
    """The store's own methods: a refused connection raises StoreUnavailable (not
    SQLAlchemy's OperationalError) within the connect deadline."""
    from starry_guide.serve.store.database import StoreUnavailable

    with running_postgres() as database:
        store = Store(database.url, maintenance=False)
        try:
            store.ping()
            database.stop("immediate")
            for call in (store.ping, store.stations, lambda: store.has_prediction("x"),
                         lambda: store.upsert_station("s", 1.0, 2.0)):
                start = time.monotonic()
                with pytest.raises(StoreUnavailable, match="unavailable"):
                    call()
                assert time.monotonic() - start < HANG
            database.start()
            store.ping()  # the pool reconnects by itself
            assert store.stations() == []
        finally:
            store.close()
    assert Path(database.root).exists() is False


def test_an_event_stream_outlives_a_database_restart(database, tmp_path, observations):
    """An open ``/events`` stream is not dropped while the database restarts: it keeps
    polling, and sends the nowcast of an hour fed after the database returned."""
    import json

    body = request_body(observations, hours=11)
    first, last = body["observations"][:-1], body["observations"][-1:]
    server = start_server(ROOT / "models" / "champion" / "bundle", tmp_path,
                          "--rate-per-s", "0", store=database.url, workers=1,
                          env={"STARRY_FEED_TOKEN": TOKEN, "STARRY_EVENTS_POLL_S": "0.2",
                               "STARRY_EVENTS_HEARTBEAT_S": "1"})
    feeder = {"Authorization": f"Bearer {TOKEN}"}
    try:
        httpx.put(f"{server.url}/v1/stations/live", headers=feeder, json=body["station"])
        assert httpx.post(f"{server.url}/v1/stations/live/observations", headers=feeder,
                          json={"observations": first}).status_code == 200
        seen = []
        with httpx.stream("GET", f"{server.url}/v1/stations/live/events",
                          timeout=HANG) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    seen.append(json.loads(line[len("data:"):]))
                    break
            database.stop("fast")
            time.sleep(2)  # several polls fail meanwhile
            database.start()
            deadline = time.monotonic() + 10
            while True:
                fed = httpx.post(f"{server.url}/v1/stations/live/observations",
                                 headers=feeder, json={"observations": last}, timeout=HANG)
                if fed.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert fed.status_code == 200, fed.text
            for line in lines:
                if line.startswith("data:"):
                    event = json.loads(line[len("data:"):])
                    if event.get("issued_for") != seen[0]["issued_for"]:
                        seen.append(event)
                        break
    finally:
        server.stop()
    assert seen[0]["issued_for"] == first[-1]["time"].replace("+00:00", "Z")
    assert seen[-1]["issued_for"] == last[0]["time"].replace("+00:00", "Z"), seen
