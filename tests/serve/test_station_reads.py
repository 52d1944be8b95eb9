"""Station reads computed once (serve/reads.py): validators and 304s in process over the
real app and bundle (SQLite and PostgreSQL stores), then invalidation by a new observation
accepted by another worker of a real `starry serve --workers 2`, and by another server on
one PostgreSQL store."""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import fresh_postgres_database
from tests.support.server import start_server, wait_for_workers

TOKEN = "feeder-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLACE = {"latitude": 36.1, "longitude": -79.95, "elevation_m": 273, "name": "Greensboro"}


def hours(observations: pd.DataFrame, start: int = 3000, n: int = 10) -> list[dict]:
    part = observations[observations["station_id"] == "greensboro_nc"].iloc[start:start + n]
    return [{"time": row["time"].isoformat(),
             **{c: (None if pd.isna(row[c]) else float(row[c])) for c in WEATHER_COLUMNS}}
            for _, row in part.iterrows()]


def max_age(response) -> int:
    match = re.fullmatch(r"public, max-age=(\d+)", response.headers["cache-control"])
    assert match, response.headers["cache-control"]
    return int(match.group(1))


@pytest.fixture()
def client(bundle_dir, store_url, monkeypatch, observations):
    monkeypatch.setenv("STARRY_FEED_TOKEN", TOKEN)
    monkeypatch.delenv("STARRY_FEED_TOKEN_FILE", raising=False)
    # the server's clock 20 minutes after the tenth hour sent below: its next hour is due
    # in 40 minutes
    tenth = pd.Timestamp(hours(observations)[-1]["time"]).tz_convert("UTC")
    monkeypatch.setenv("STARRY_CLOCK_START", (tenth + pd.Timedelta(minutes=20)).isoformat())
    monkeypatch.delenv("STARRY_CLOCK_ANCHOR", raising=False)
    service = Service(load_bundle(bundle_dir), Store(store_url))
    with TestClient(create_app(service)) as c:
        c.service = service
        c.reads = c.app.state.reads
        yield c
    service.store.close()


def test_station_nowcast_is_computed_once_and_revalidated(client, observations):
    assert client.put("/v1/stations/kgso", headers=AUTH, json=PLACE).status_code == 201
    assert client.post("/v1/stations/kgso/observations", headers=AUTH,
                       json={"observations": hours(observations)}).status_code == 200
    predictions = client.service.store.count("predictions")
    first = client.get("/v1/stations/kgso/nowcast")
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    # the last change is the ingest: Last-Modified is no later than now, and within a minute
    modified = email.utils.parsedate_to_datetime(first.headers["last-modified"])
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - modified < dt.timedelta(minutes=1)
    # the next hour is due 40 minutes after the server's clock (a few seconds of test pass)
    assert 2340 <= max_age(first) <= 2400
    assert first.json()["issued_for"] == pd.Timestamp(
        hours(observations)[-1]["time"]).tz_convert("UTC").isoformat().replace("+00:00", "Z")

    computed = client.reads.computed
    again = client.get("/v1/stations/kgso/nowcast")
    assert again.json() == first.json() and again.headers["etag"] == etag
    # the second read was answered by the shortcut (no routing), with the route's headers
    assert ("/v1/stations/kgso/nowcast", b"") in client.reads.shortcuts
    for header in ("content-type", "content-length", "last-modified"):
        assert again.headers[header] == first.headers[header], header
    assert client.reads.computed == computed  # served as computed, not recomputed
    assert client.service.store.count("predictions") == predictions  # nothing new recorded

    cached = client.get("/v1/stations/kgso/nowcast", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag and "max-age" in cached.headers["cache-control"]
    listed = client.get("/v1/stations/kgso/nowcast",
                        headers={"If-None-Match": f'"other", {etag.removeprefix("W/")}'})
    assert listed.status_code == 304  # weak comparison, in a list of tags
    other = client.get("/v1/stations/kgso/nowcast", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.json() == first.json()

    # a new hour: a new answer, a new tag; the old tag no longer matches
    new_hour = hours(observations, start=3010, n=1)
    ingest = client.post("/v1/stations/kgso/observations", headers=AUTH,
                         json={"observations": new_hour})
    assert ingest.status_code == 200 and ingest.json()["nowcast_updated"]
    renewed = client.get("/v1/stations/kgso/nowcast", headers={"If-None-Match": etag})
    assert renewed.status_code == 200 and renewed.headers["etag"] != etag
    # the answer the ingest computed is the one served, with its prediction id
    assert renewed.json()["prediction_id"] == ingest.json()["nowcast"]["prediction_id"]
    assert renewed.json()["issued_for"] > first.json()["issued_for"]
    # the next hour is now due 1 h 40 min after the clock: capped at an hour
    assert max_age(renewed) == 3600

    # a correction inside the features' window changes the answer too
    cover = new_hour[0]["opaque_cloud_tenths"] or 0
    corrected = dict(new_hour[0], opaque_cloud_tenths=cover + 1 if cover < 10 else 0)
    fix = client.post("/v1/stations/kgso/observations", headers=AUTH,
                      json={"observations": [corrected]})
    assert fix.json()["corrected"] == 1
    after_fix = client.get("/v1/stations/kgso/nowcast",
                           headers={"If-None-Match": renewed.headers["etag"]})
    assert after_fix.status_code == 200
    assert after_fix.json()["prediction_id"] == fix.json()["nowcast"]["prediction_id"]


def test_station_night_and_place_night_carry_validators(client, observations):
    assert client.get("/v1/stations/nowhere/night").status_code == 404
    assert client.put("/v1/stations/kgso", headers=AUTH, json=PLACE).status_code == 201
    # no observations yet: a plan from climatology, cacheable too
    bare = client.get("/v1/stations/kgso/night")
    assert bare.status_code == 200 and bare.json()["prediction_id"] is None
    assert client.get("/v1/stations/kgso/nowcast").status_code == 409
    client.post("/v1/stations/kgso/observations", headers=AUTH,
                json={"observations": hours(observations)})
    plan = client.get("/v1/stations/kgso/night")
    assert plan.status_code == 200 and plan.headers["etag"] != bare.headers["etag"]
    nowcast = client.get("/v1/stations/kgso/nowcast").json()
    assert plan.json()["prediction_id"] == nowcast["prediction_id"]
    assert client.get("/v1/stations/kgso/night", headers={
        "If-None-Match": plan.headers["etag"]}).status_code == 304
    brighter = client.get("/v1/stations/kgso/night", params={"dark_sky_mag": 19})
    assert brighter.headers["etag"] != plan.headers["etag"]
    assert brighter.json()["darkness"] != plan.json()["darkness"] or \
        brighter.json()["timeline"] != plan.json()["timeline"]

    # a place's plan: the place rounded as the store keeps places (2 decimals), so two
    # requests 200 m apart share one plan
    near = client.get("/v1/night", params={"lat": 36.1012, "lon": -79.9488})
    close = client.get("/v1/night", params={"lat": 36.0996, "lon": -79.9504})
    assert near.status_code == close.status_code == 200
    assert near.headers["etag"] == close.headers["etag"] and near.json() == close.json()
    assert (near.json()["place"]["latitude"], near.json()["place"]["longitude"]) == \
        (36.1, -79.95)
    assert 0 < max_age(near) <= 3600
    assert client.get("/v1/night", params={"lat": 36.1, "lon": -79.95}, headers={
        "If-None-Match": near.headers["etag"]}).status_code == 304
    elsewhere = client.get("/v1/night", params={"lat": 36.2, "lon": -79.95})
    assert elsewhere.headers["etag"] != near.headers["etag"]
    # bad input is still refused field by field, never cached
    bad = client.get("/v1/night", params={"lat": 95, "lon": 0})
    assert bad.status_code == 422 and "lat" in bad.text


# ---------------------------------------------------------------- across processes


def _socket_owner(pids: list[int], server_port: int, client_port: int) -> int:
    """The worker process holding the server end of our connection (from /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port):
                inode = fields[9]
    assert inode is not None, "the connection is not in /proc/net/tcp"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().name == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker of {pids} holds socket {inode}")


class Connection:
    """One keep-alive HTTP connection (so every request reaches the same worker)."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.connect()
        self.port = port

    @property
    def client_port(self) -> int:
        return self.connection.sock.getsockname()[1]

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, dict | None]:
        self.connection.request(method, path, None if body is None else json.dumps(body),
                                {"Content-Type": "application/json", **(headers or {})})
        response = self.connection.getresponse()
        raw = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                json.loads(raw) if raw else None)

    def close(self) -> None:
        self.connection.close()


def connections_to_each_worker(port: int, pids: list[int]) -> dict[int, Connection]:
    """A connection to every worker (the kernel spreads new connections between them)."""
    found: dict[int, Connection] = {}
    for _ in range(200):
        if len(found) == len(pids):
            return found
        connection = Connection(port)
        connection.request("GET", "/healthz")  # accepted and answered: its worker holds it
        owner = _socket_owner(pids, port, connection.client_port)
        if owner in found:
            connection.close()
        else:
            found[owner] = connection
    raise AssertionError(f"200 connections reached only workers {sorted(found)} of {pids}")


def _ingest(connection: Connection, observations: list[dict]) -> dict:
    status, _, body = connection.request("POST", "/v1/stations/kgso/observations",
                                         {"observations": observations}, AUTH)
    assert status == 200, body
    return body


def test_a_new_observation_through_one_worker_is_read_by_the_other(bundle_dir, tmp_path,
                                                                     observations):
    server = start_server(bundle_dir, tmp_path, workers=2, env={"STARRY_FEED_TOKEN": TOKEN})
    try:
        pids = wait_for_workers(server.url, server.process, 2)
        a, b = connections_to_each_worker(server.port, pids).values()
        status, _, _ = a.request("PUT", "/v1/stations/kgso", PLACE, AUTH)
        assert status == 201
        _ingest(a, hours(observations))
        # both workers compute (or find) the same answer under the same tag
        reads = {}
        for name, connection in (("a", a), ("b", b)):
            for path in ("/v1/stations/kgso/nowcast", "/v1/stations/kgso/night"):
                status, headers, body = connection.request("GET", path)
                assert status == 200, body
                reads[name, path] = headers["etag"], body
        for path in ("/v1/stations/kgso/nowcast", "/v1/stations/kgso/night"):
            assert reads["a", path][0] == reads["b", path][0]
            status, _, _ = b.request("GET", path, headers={"If-None-Match":
                                                           reads["b", path][0]})
            assert status == 304
        old_nowcast = reads["b", "/v1/stations/kgso/nowcast"][1]

        # worker A accepts the next hour; B's next read (its cache warm) sees it
        accepted = _ingest(a, hours(observations, start=3010, n=1))
        status, headers, body = b.request("GET", "/v1/stations/kgso/nowcast", headers={
            "If-None-Match": reads["b", "/v1/stations/kgso/nowcast"][0]})
        assert status == 200, "worker B answered 304 with the hour before"
        assert body["issued_for"] > old_nowcast["issued_for"]
        assert body["prediction_id"] == accepted["nowcast"]["prediction_id"]
        status, _, plan = b.request("GET", "/v1/stations/kgso/night", headers={
            "If-None-Match": reads["b", "/v1/stations/kgso/night"][0]})
        assert status == 200 and plan["prediction_id"] == accepted["nowcast"]["prediction_id"]

        # and the other way round
        accepted = _ingest(b, hours(observations, start=3011, n=1))
        status, _, body = a.request("GET", "/v1/stations/kgso/nowcast")
        assert status == 200 and body["prediction_id"] == accepted["nowcast"]["prediction_id"]
        a.close()
        b.close()
    finally:
        server.stop()


def test_two_servers_on_one_postgresql_store_agree(bundle_dir, tmp_path, observations,
                                                   postgres_url):
    url = fresh_postgres_database(postgres_url)
    env = {"STARRY_FEED_TOKEN": TOKEN}
    first = start_server(bundle_dir, tmp_path / "host-a", store=url, env=env)
    try:
        second = start_server(bundle_dir, tmp_path / "host-b", store=url, env=env)
        try:
            a, b = Connection(first.port), Connection(second.port)
            assert a.request("PUT", "/v1/stations/kgso", PLACE, AUTH)[0] == 201
            _ingest(a, hours(observations))
            _, a_headers, a_body = a.request("GET", "/v1/stations/kgso/nowcast")
            status, b_headers, b_body = b.request("GET", "/v1/stations/kgso/nowcast")
            assert status == 200 and b_body == a_body  # the stored prediction, on both
            assert b_headers["etag"] == a_headers["etag"]
            assert b.request("GET", "/v1/stations/kgso/nowcast",
                             headers={"If-None-Match": b_headers["etag"]})[0] == 304

            accepted = _ingest(a, hours(observations, start=3010, n=1))
            status, headers, body = b.request("GET", "/v1/stations/kgso/nowcast",
                                              headers={"If-None-Match": b_headers["etag"]})
            assert status == 200, "host B answered 304 with the hour before"
            assert body["prediction_id"] == accepted["nowcast"]["prediction_id"]
            assert headers["etag"] != b_headers["etag"]
            # a place moved on host A is planned at its new place on host B
            _, _, night_before = b.request("GET", "/v1/stations/kgso/night")
            assert a.request("PUT", "/v1/stations/kgso", {**PLACE, "latitude": 40.0},
                             AUTH)[0] == 200
            _, _, night_after = b.request("GET", "/v1/stations/kgso/night")
            assert night_before["place"]["latitude"] == 36.1
            assert night_after["place"]["latitude"] == 40.0
            a.close()
            b.close()
        finally:
            second.stop()
    finally:
        first.stop()
