"""Web Push nudges end to end: a real `starry serve` (uvicorn subprocess), a real store
(SQLite, and PostgreSQL with two servers of two workers each) and a loopback push service
that decrypts every message with the subscriber's private keys and verifies the VAPID
signature against the key the server serves (tests/support/push_service.py). The rules
themselves (cap, hysteresis, quiet hours) are also checked as pure functions."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.serve.app import create_app
from starry_guide.serve.planning.planner import counts
from starry_guide.serve.push import decider
from starry_guide.serve.push.endpoints import problem
from starry_guide.serve.push.sender import Sender
from starry_guide.serve.push.subscriptions import Delivered, Subscription
from starry_guide.serve.push.vapid import Keys
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store
from tests.serve.conftest import fresh_postgres_database
from tests.support.push_service import PushService
from tests.support.server import STARRY, start_server

ROOT = Path(__file__).resolve().parents[2]
FEED_TOKEN = "test-feed-token-0123456789"
FEEDER = {"Authorization": f"Bearer {FEED_TOKEN}"}
#: 17:40 in Greensboro on 6 December 2026, an hour before astronomical dusk (as the app's
#: live test): the night's windows lie ahead
CLOCK = "2026-12-06T22:40:00Z"
NIGHT = "2026-12-06"
GREENSBORO = {"latitude": 36.1, "longitude": -79.95}
ZONE = "America/New_York"


# ---------------------------------------------------------------- the rules, pure
def window(start: str, end: str, p: float = 0.8, nowcast: int = 60, minutes: int = 60) -> dict:
    return {"start": start, "end": end, "mean_p_clear": p, "nowcast_minutes": nowcast,
            "minutes": minutes}


def subscription(**changes) -> Subscription:
    values = dict(subscription_id="s", endpoint="https://push.example.org/x", p256dh="k",
                  auth="a", station_id="st", min_probability=0.5, min_minutes=60,
                  time_zone="UTC")
    return Subscription(**{**values, **changes})


NOW = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.UTC)
A = window("2026-12-06T23:00:00Z", "2026-12-07T01:00:00Z", minutes=120)
B = window("2026-12-07T05:00:00Z", "2026-12-07T07:00:00Z", minutes=120)


def delivered(w: dict) -> Delivered:
    return Delivered(decider.instant(w["start"]), decider.instant(w["end"]))


def test_the_due_window_follows_the_clear_window_rule_and_the_preferences():
    assert decider.due_window([A], subscription(), [], NOW) == A
    # climatology alone never nudges; too short, not clear enough, over: no push
    assert decider.due_window([{**A, "nowcast_minutes": 0}], subscription(), [], NOW) is None
    assert decider.due_window([A], subscription(min_minutes=180), [], NOW) is None
    assert decider.due_window([A], subscription(min_probability=0.9), [], NOW) is None
    assert decider.due_window([A], subscription(), [], decider.instant(A["end"])) is None
    # the decider reuses the events' rule, not a copy of it
    assert counts(A, 0.8) and not counts(A, 0.81)


def test_one_push_per_window_hysteresis_and_the_cap():
    # pushed once: the same window, or one shifted by a step as the plan refreshes, or one
    # that flickered shut and open again, is not pushed again
    shifted = {**A, "start": "2026-12-06T23:15:00Z", "end": "2026-12-07T01:30:00Z"}
    near = window("2026-12-07T01:45:00Z", "2026-12-07T03:00:00Z", minutes=75)
    assert decider.due_window([shifted], subscription(), [delivered(A)], NOW) is None
    assert decider.due_window([near], subscription(), [delivered(A)], NOW) is None
    # a distinct window later in the night is pushed, up to the cap
    assert decider.due_window([A, B], subscription(), [delivered(A)], NOW) == B
    assert decider.due_window([B], subscription(), [delivered(A)], NOW, max_per_night=1) is None
    assert decider.due_window([window("2026-12-07T09:00:00Z", "2026-12-07T10:00:00Z")],
                              subscription(), [delivered(A), delivered(B)], NOW) is None


def test_quiet_hours_in_the_subscribers_time_zone():
    quiet = subscription(time_zone=ZONE, quiet_start="17:00", quiet_end="19:30")
    at_1740 = dt.datetime(2026, 12, 6, 22, 40, tzinfo=dt.UTC)  # 17:40 in New York
    at_1945 = dt.datetime(2026, 12, 7, 0, 45, tzinfo=dt.UTC)
    assert decider.due_window([B], quiet, [], at_1740) is None
    assert decider.due_window([B], quiet, [], at_1945) == B
    over_midnight = ("23:00", "06:30")
    assert decider.in_quiet_hours(dt.datetime(2026, 12, 7, 5, tzinfo=dt.UTC), ZONE,
                                  *over_midnight)  # 00:00 local
    assert not decider.in_quiet_hours(dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC), ZONE,
                                      *over_midnight)  # 07:00 local
    assert not decider.in_quiet_hours(at_1740, ZONE, None, None)


def test_payload_headers_and_urgency():
    message = decider.payload("st", "Roof", dt.date(2026, 12, 6), A, ZONE, NOW)
    assert {"station", "night", "start", "end", "mean_p_clear", "title", "body"} <= set(message)
    assert message["title"] == "Clear window tonight at Roof"
    assert message["body"] == "18:00–20:00, 80 % clear."  # New York time
    assert decider.ttl_seconds(A, NOW) == 3600  # until the window starts
    assert not decider.starting_now(A, NOW)
    assert decider.starting_now(A, decider.instant(A["start"]) - dt.timedelta(minutes=5))
    topic = decider.topic("st", dt.date(2026, 12, 6))
    assert len(topic) <= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", topic)
    assert topic != decider.topic("st", dt.date(2026, 12, 7))


@pytest.mark.parametrize("endpoint, reason", [
    ("http://push.example.org/x", "https://"),
    ("https://127.0.0.1/x", "not a public address"),
    ("https://10.1.2.3/x", "not a public address"),
    ("https://169.254.169.254/latest/meta-data", "not a public address"),
    ("https://[::1]:8443/x", "not a public address"),
    ("https://[::ffff:192.168.0.1]/x", "not a public address"),
    ("https://localhost/x", "local name"),
    ("https://push.internal/x", "local name"),
    ("https://intranet/x", "local name"),
    ("https://user:pw@push.example.org/x", "user name"),
    ("file:///etc/passwd", "https://"),
    ("https://push.example.org/" + "x" * 2100, "at most 2048"),
])
def test_ssrf_endpoints_are_refused(endpoint, reason):
    assert reason in (problem(endpoint, private_allowed=False) or "")
    assert problem("https://fcm.googleapis.com/fcm/send/abc", private_allowed=False) is None


def test_the_sender_refuses_names_that_resolve_to_private_addresses_and_follows_no_redirect(
        tmp_path):
    keys = Keys.load(tmp_path / "vapid.pem")
    with PushService(keys.public_key) as service:
        guarded = Sender(keys, private_allowed=False)
        # `localhost.` (trailing dot, resolved by /etc/hosts) passes no name check: refused
        # at connection time, nothing reaches the loopback service
        sneaky = service.subscriber(origin=service.origin.replace("http://127.0.0.1",
                                                                  "https://localhost."))
        assert problem(sneaky.endpoint, private_allowed=False) is not None
        outcome = guarded.send(sneaky.subscription(), {"x": 1}, ttl=60)
        assert outcome.status is None and "refused" in outcome.error
        # allowed (tests only), a redirect is an answer, not followed
        open_sender = Sender(keys, private_allowed=True)
        target = service.subscriber()
        redirected = service.subscriber()
        service.answer(redirected, 307, {"Location": target.endpoint})
        assert open_sender.send(redirected.subscription(), {"x": 1}, ttl=60).status == 307
        assert service.messages == [] and service.rejected == []
        guarded.close()
        open_sender.close()


def test_the_vapid_key_is_created_private_and_kept(tmp_path):
    path = tmp_path / "keys" / "vapid.pem"
    first = Keys.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keys.load(path).public_key == first.public_key  # kept across restarts
    assert len(first.public_key) == 87  # base64url of a 65-byte uncompressed point
    path.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        Keys.load(path)


# ---------------------------------------------------------------- the API in process
@pytest.fixture()
def client(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("STARRY_PUSH_ALLOW_PRIVATE", raising=False)
    monkeypatch.setenv("STARRY_NUDGE", "0")
    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    service.store.upsert_station("roof", 36.1, -79.95, 273.0, "Roof")
    with TestClient(create_app(service)) as c:
        c.service = service
        yield c


def body(push: PushService, **changes) -> dict:
    sub = push.subscriber(origin="https://push.example.org")
    return {"subscription": sub.subscription(), "station": "roof", "min_probability": 0.6,
            "min_hours": 1, "timezone": ZONE, **changes}


def test_key_subscribe_and_unsubscribe(client, tmp_path):
    key = client.get("/v1/push/key").json()["key"]
    assert key == Keys.load(tmp_path / "store.sqlite.vapid.pem").public_key
    with PushService(key) as push:
        sent = body(push, station=None, latitude=36.2, longitude=-79.9)
        created = client.post("/v1/push/subscriptions", json=sent)
        assert created.status_code == 201, created.text
        made = created.json()
        assert made["station"] == "roof" and len(made["secret"]) >= 40
        # the same endpoint again: updated, a new secret
        again = client.post("/v1/push/subscriptions", json={**sent, "min_probability": 0.7})
        assert again.status_code == 200 and again.json()["id"] == made["id"]
        path = f"/v1/push/subscriptions/{made['id']}"
        assert client.delete(path).status_code == 401
        assert client.delete(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        old = {"Authorization": f"Bearer {made['secret']}"}
        assert client.delete(path, headers=old).status_code == 403  # replaced
        new = {"Authorization": f"Bearer {again.json()['secret']}"}
        assert client.delete(path, headers=new).status_code == 204
        assert client.delete(path, headers=new).status_code == 404
    metrics = client.get("/metrics").text
    assert 'starry_requests_total{endpoint="/v1/push/subscriptions",status="201"} 1.0' in metrics
    assert client.get("/healthz").json()["push"] is None  # STARRY_NUDGE=0: no decider here


@pytest.mark.parametrize("change, field, message", [
    (lambda b: b["subscription"]["keys"].update(p256dh="BAAA"), "p256dh", "65"),
    (lambda b: b["subscription"]["keys"].update(p256dh="B" + "A" * 86), "p256dh", "P-256"),
    (lambda b: b["subscription"]["keys"].update(auth="not base64!"), "auth", "base64url"),
    (lambda b: b["subscription"]["keys"].update(auth="AAAA"), "auth", "16"),
    (lambda b: b["subscription"].update(endpoint="http://push.example.org/x"), "endpoint",
     "https://"),
    (lambda b: b["subscription"].update(endpoint="https://127.0.0.1:9/x"), "endpoint",
     "not a public address"),
    (lambda b: b["subscription"].update(endpoint="https://169.254.169.254/x"), "endpoint",
     "not a public address"),
    (lambda b: b.update(timezone="Mars/Olympus"), "timezone", "IANA"),
    (lambda b: b.update(min_probability=1.5), "min_probability", "less than or equal to 1"),
    (lambda b: b.update(min_hours=0), "min_hours", "greater than 0"),
    (lambda b: b.update(quiet_hours={"start": "25:00", "end": "06:00"}), "start", "pattern"),
    (lambda b: b.update(station="nowhere"), "station", "not registered"),
    (lambda b: b.update(station=None, latitude=52.5, longitude=13.4), "latitude",
     "no station with live observations"),
    (lambda b: b.update(latitude=1.0), "body", "not both"),
])
def test_bad_subscriptions_are_refused_naming_the_field(client, change, field, message):
    with PushService("unused") as push:
        sent = body(push)
    change(sent)
    response = client.post("/v1/push/subscriptions", json=sent)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(field in [str(x) for x in d["loc"]] and message in d["msg"] for d in detail), \
        detail
    assert client.service.store.count("stations") == 1  # and nothing else changed


# ---------------------------------------------------------------- end to end
def steady_hours(observations: pd.DataFrame, opaque: float, month: int, last: dt.datetime
                 ) -> list[dict]:
    """Seven real consecutive hours of Greensboro's file with this opaque cover (from
    ``month`` on), stamped to end at ``last``."""
    from starry_guide.core.schema import WEATHER_COLUMNS

    g = observations[observations["station_id"] == "greensboro_nc"].reset_index(drop=True)
    same = (g["opaque_cloud_tenths"] == opaque).astype(int).rolling(7).sum()
    end = next(i for i in same[same == 7].index if g["time"][i].month >= month)
    return [{"time": (last - dt.timedelta(hours=end - i)).isoformat(),
             **{c: (None if g[c][i] != g[c][i] else float(g[c][i])) for c in WEATHER_COLUMNS}}
            for i in range(end - 6, end + 1)]


def feed_night(url: str, station: str, observations, clear: bool) -> dict:
    """Post seven hours (overcast, or clear an hour later) placed around tonight's dusk as
    the app's live test does; return the station's plan after."""
    plan = httpx.get(f"{url}/v1/night", params={**{"lat": 36.1, "lon": -79.95}}, timeout=30)
    dusk = pd.Timestamp(plan.json()["summary"]["astronomical_dusk"]["utc"])
    last = dusk.floor("h").to_pydatetime() - dt.timedelta(hours=8)
    hours = (steady_hours(observations, 0, 10, last + dt.timedelta(hours=7)) if clear
             else steady_hours(observations, 10, 11, last))
    response = httpx.post(f"{url}/v1/stations/{station}/observations", headers=FEEDER,
                          json={"observations": hours}, timeout=60)
    assert response.status_code == 200, response.text
    return httpx.get(f"{url}/v1/stations/{station}/night", timeout=30).json()


def subscribe(url: str, sub, **fields) -> dict:
    response = httpx.post(f"{url}/v1/push/subscriptions", json={
        "subscription": sub.subscription(), "timezone": ZONE, "min_probability": 0.5,
        "min_hours": 0.5, **fields}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def nudge_once(bundle_dir, store: str, at: str, env: dict) -> str:
    result = subprocess.run([*STARRY, "nudge", "--once", "--store", store, "--bundle",
                             str(bundle_dir), "--at", at], cwd=ROOT, capture_output=True,
                            text=True, timeout=180, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_until(check, seconds: float = 60, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


SERVER_ENV = {"STARRY_FEED_TOKEN": FEED_TOKEN, "STARRY_CLOCK_START": CLOCK,
              "STARRY_PUSH_ALLOW_PRIVATE": "1", "STARRY_NUDGE_INTERVAL_S": "3600"}


def test_one_push_per_window_across_runs_and_restarts_410_and_quiet_hours(
        bundle_dir, tmp_path, observations):
    store = tmp_path / "store.sqlite"
    server = start_server(bundle_dir, tmp_path, store=store, env=SERVER_ENV)
    try:
        url = server.url
        key = httpx.get(f"{url}/v1/push/key").json()["key"]
        with PushService(key) as push:
            assert httpx.put(f"{url}/v1/stations/roof", headers=FEEDER, json={
                **GREENSBORO, "elevation_m": 273.0, "name": "Roof"}).status_code == 201
            cloudy = feed_night(url, "roof", observations, clear=False)
            assert not any(counts(w) for w in cloudy["best_windows"])
            eager, quiet, gone, picky = (push.subscriber() for _ in range(4))
            subscribe(url, eager, station="roof")
            subscribe(url, quiet, latitude=36.0, longitude=-80.0,  # the nearest: roof
                      quiet_hours={"start": "17:00", "end": "19:30"})
            subscribe(url, gone, station="roof")
            push.answer(gone, 410)
            subscribe(url, picky, station="roof", min_probability=0.99)

            clear = feed_night(url, "roof", observations, clear=True)  # pokes the decider
            due = [w for w in clear["best_windows"] if counts(w) and w["minutes"] >= 30]
            assert due, clear["best_windows"]
            [message] = push.wait_for(1)
            assert message.token == eager.token and push.rejected == []
            sent = message.payload
            assert (sent["station"], sent["night"]) == ("roof", NIGHT)
            assert (sent["start"], sent["end"]) == (due[0]["start"], due[0]["end"])
            assert sent["mean_p_clear"] == pytest.approx(due[0]["mean_p_clear"], abs=1e-4)
            assert sent["title"].startswith("Clear window tonight at Roof")
            start = pd.Timestamp(sent["start"])
            ttl = int(message.headers["ttl"])  # until the window starts (server clock)
            assert abs(ttl - (start - pd.Timestamp(CLOCK)).total_seconds()) < 600
            assert message.headers["urgency"] == "normal"
            assert message.headers["topic"] == decider.topic("roof", dt.date(2026, 12, 6))
            # 410: the subscription is deleted; counted in /metrics
            wait_until(lambda: metric(
                url, 'starry_push_subscriptions_removed_total{reason="gone"}') == 1,
                what="the 410 subscription's removal")
            assert metric(url, "starry_push_sent_total") == 1
            health = httpx.get(f"{url}/healthz").json()["push"]
            assert health["state"] == "ok" and health["runs"] >= 1

            # another decider (cron's) pass, then a restart: nothing new for `eager`
            env = {"STARRY_PUSH_ALLOW_PRIVATE": "1"}
            out = nudge_once(bundle_dir, str(store), "2026-12-06T22:50:00Z", env)
            assert "sent 0" in out, out
            server.stop()
            server = start_server(bundle_dir, tmp_path, store=store, env=SERVER_ENV)
            wait_until(lambda: (httpx.get(f"{server.url}/healthz").json()["push"]["runs"]
                                or 0) >= 1, what="the restarted server's first pass")
            assert len(push.messages) == 1

            # after the quiet hours (19:30 New York) the window is still ahead: pushed
            after_quiet = "2026-12-07T00:45:00Z"
            out = nudge_once(bundle_dir, str(store), after_quiet, env)
            assert "sent 1" in out, out
            [late] = push.for_subscriber(quiet)
            expected = "high" if decider.starting_now(due[0], decider.instant(after_quiet)) \
                else "normal"
            assert late.headers["urgency"] == expected
            assert push.for_subscriber(picky) == [] and push.rejected == []
            assert len(push.for_subscriber(eager)) == 1
    finally:
        server.stop()


def test_two_servers_of_two_workers_on_postgresql_send_each_push_once(
        bundle_dir, tmp_path, observations, postgres_url):
    store = fresh_postgres_database(postgres_url)
    key_file = tmp_path / "shared-vapid.pem"
    env = {**SERVER_ENV, "STARRY_NUDGE_INTERVAL_S": "1",  # every worker decides each second
           "STARRY_VAPID_KEY_FILE": str(key_file)}
    servers = [start_server(bundle_dir, tmp_path / name, store=store, workers=2, env=env)
               for name in ("a", "b")]
    try:
        keys = {httpx.get(f"{s.url}/v1/push/key").json()["key"] for s in servers}
        assert len(keys) == 1  # one key for both hosts
        with PushService(keys.pop()) as push:
            url = servers[0].url
            httpx.put(f"{url}/v1/stations/roof", headers=FEEDER,
                      json={**GREENSBORO, "elevation_m": 273.0})
            feed_night(url, "roof", observations, clear=False)
            subscribers = [push.subscriber() for _ in range(24)]
            for i, sub in enumerate(subscribers):  # through either server
                subscribe(servers[i % 2].url, sub, station="roof")
            feed_night(servers[1].url, "roof", observations, clear=True)
            push.wait_for(len(subscribers))
            time.sleep(4)  # four deciders keep passing every second
            assert sorted(m.token for m in push.messages) == sorted(s.token for s in subscribers)
            assert push.rejected == []
            # the store's record: one push per subscription, every one settled as sent
            import sqlalchemy as sa

            engine = sa.create_engine(store)
            with engine.connect() as db:
                rows = db.execute(sa.text("SELECT subscription_id, status FROM "
                                          "push_deliveries")).all()
            engine.dispose()
            assert len(rows) == len(subscribers) == len({r[0] for r in rows})
            assert {r[1] for r in rows} == {"sent"}
    finally:
        for s in servers:
            s.stop()


# ---------------------------------------------------------------- the store's side
def test_claims_are_exclusive_and_unseen_subscriptions_expire(store_url):
    """Several deciders claiming one station at once (threads, each its own transaction):
    every push is claimed once, on SQLite (writer lock) and PostgreSQL (SKIP LOCKED)."""
    import concurrent.futures

    import sqlalchemy as sa

    from starry_guide.serve.push.subscriptions import PushStore, push_subscriptions

    store = Store(store_url, maintenance=False)
    try:
        push = PushStore(store)
        ids = [push.subscribe(endpoint=f"https://push.example.org/{i}", p256dh="k", auth="a",
                              station_id="roof", min_probability=0.5, min_minutes=30,
                              time_zone=ZONE, quiet_start=None, quiet_end=None)[0]
               for i in range(12)]
        night = dt.date(2026, 12, 6)

        def claim(_):
            return push.claim("roof", night, lambda sub, delivered: None if delivered else A)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            claimed = [c for batch in pool.map(claim, range(8)) for c in batch]
        assert sorted(c.subscription.subscription_id for c in claimed) == sorted(ids)
        push.settle([c.delivery_id for c in claimed[:6]], [c.delivery_id for c in claimed[6:]],
                    [])
        assert sorted(d["status"] for d in push.deliveries()) == ["sent"] * 6
        # the retried ones are claimed again; the sent ones are not
        again = claim(0)
        assert len(again) == 6 and {c.subscription.subscription_id for c in again} == \
            {c.subscription.subscription_id for c in claimed[6:]}
        # unseen for the expiry period: deleted with their record
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
        with store.write() as db:
            db.execute(push_subscriptions.update().where(
                push_subscriptions.c.subscription_id.in_(ids[:5])).values(last_seen_at=old))
        assert push.expire(dt.timedelta(days=30)) == 5
        assert push.count() == 7
        with store.engine.connect() as db:
            left = db.execute(sa.text("SELECT count(*) FROM push_deliveries")).scalar_one()
        assert left == len([d for d in push.deliveries()]) and all(
            d["subscription_id"] not in ids[:5] for d in push.deliveries())
    finally:
        store.close()


def test_nudge_cli_refuses_a_local_time_and_a_missing_once(tmp_path):
    local = subprocess.run([*STARRY, "nudge", "--once", "--at", "2026-12-06T23:00",
                            "--store", str(tmp_path / "s.sqlite")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert local.returncode == 1 and "UTC offset" in local.stderr
    missing = subprocess.run([*STARRY, "nudge", "--store", str(tmp_path / "s.sqlite")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "--once" in missing.stderr


def test_serve_no_nudge_serves_the_push_api_without_a_decider(bundle_dir, tmp_path):
    server = start_server(bundle_dir, tmp_path, "--no-nudge", env=SERVER_ENV)
    try:
        assert httpx.get(f"{server.url}/healthz").json()["push"] is None
        assert len(httpx.get(f"{server.url}/v1/push/key").json()["key"]) == 87
        key_file = tmp_path / "store.sqlite.vapid.pem"  # next to the SQLite store, private
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        server.stop()


def test_the_cap_holds_a_night_of_distinct_windows_and_a_new_night_counts_anew(
        bundle_dir, tmp_path, observations):
    """Real batches open distinct windows in one night (each nowcast covers 12 hours, so an
    afternoon batch's window ends soon after dusk and a night batch's opens more than the
    hysteresis later); `starry nudge --once` passes with a cap of 1 push a night
    (``STARRY_PUSH_MAX_PER_NIGHT``) send the first only, a pass with the default cap (2)
    shows the second was due and held back by the cap alone, and the next night counts anew."""
    import sqlalchemy as sa

    store = tmp_path / "store.sqlite"
    server = start_server(bundle_dir, tmp_path, "--no-nudge", store=store, env=SERVER_ENV)
    try:
        url = server.url
        key = httpx.get(f"{url}/v1/push/key").json()["key"]
        with PushService(key) as push:
            assert httpx.put(f"{url}/v1/stations/roof", headers=FEEDER, json={
                **GREENSBORO, "elevation_m": 273.0, "name": "Roof"}).status_code == 201
            reader = push.subscriber()
            subscribe(url, reader, station="roof")

            def clear_until(last: str, night: str = NIGHT) -> list[dict]:
                hours = steady_hours(observations, 0, 10, decider.instant(last))
                response = httpx.post(f"{url}/v1/stations/roof/observations",
                                      headers=FEEDER, json={"observations": hours},
                                      timeout=60)
                assert response.status_code == 200, response.text
                plan = httpx.get(f"{url}/v1/stations/roof/night", params={"date": night},
                                 timeout=30).json()
                return [w for w in plan["best_windows"] if counts(w) and w["minutes"] >= 30]

            capped = {"STARRY_PUSH_ALLOW_PRIVATE": "1", "STARRY_PUSH_MAX_PER_NIGHT": "1"}
            default = {"STARRY_PUSH_ALLOW_PRIVATE": "1"}
            # the afternoon's clear hours: a window from dusk until the nowcast ends
            [first] = clear_until("2026-12-06T13:00:00Z")
            assert "sent 1" in nudge_once(bundle_dir, str(store), CLOCK, capped)
            # clear again in the small hours: a second window, distinct from the first
            [second] = clear_until("2026-12-07T03:00:00Z")
            assert decider.instant(second["start"]) >= (decider.instant(first["end"])
                                                        + decider.HYSTERESIS)
            at = "2026-12-07T03:30:00Z"  # still the night of 6 December, before `second`
            for _ in range(2):  # capped: held back, pass after pass
                assert "sent 0" in nudge_once(bundle_dir, str(store), at, capped)
            assert [m.payload["start"] for m in push.for_subscriber(reader)] == \
                [first["start"]]
            # the default cap of 2 lets the same window through, once
            assert "sent 1" in nudge_once(bundle_dir, str(store), at, default)
            assert "sent 0" in nudge_once(bundle_dir, str(store), at, default)
            tonight = [(m.payload["night"], m.payload["start"], m.payload["end"])
                       for m in push.for_subscriber(reader)]
            assert tonight == [(NIGHT, first["start"], first["end"]),
                               (NIGHT, second["start"], second["end"])]

            # the next night: clear in its afternoon; the capped pass sends again
            [next_night] = clear_until("2026-12-07T13:00:00Z", "2026-12-07")
            assert "sent 1" in nudge_once(bundle_dir, str(store), "2026-12-07T22:40:00Z",
                                          capped)
            assert "sent 0" in nudge_once(bundle_dir, str(store), "2026-12-07T22:50:00Z",
                                          capped)
            messages = push.for_subscriber(reader)
            assert [(m.payload["night"], m.payload["start"]) for m in messages[2:]] == \
                [("2026-12-07", next_night["start"])]
            assert len(push.messages) == 3 and push.rejected == []

        # the store's record: two pushes sent on the first night, one on the next
        engine = sa.create_engine(f"sqlite:///{store}")
        with engine.connect() as db:
            rows = db.execute(sa.text("SELECT night, status FROM push_deliveries "
                                      "ORDER BY delivery_id")).all()
        engine.dispose()
        assert [(str(night), status) for night, status in rows] == [
            (NIGHT, "sent"), (NIGHT, "sent"), ("2026-12-07", "sent")]
    finally:
        server.stop()
