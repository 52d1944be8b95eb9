"""End to end against a real uvicorn process over HTTP (`starry serve`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.serve.conftest import fresh_postgres_database, request_body
from tests.support.server import free_port, wait_for_workers, wait_until_healthy, worker_pids

STARRY = [sys.executable, "-m", "starry_guide.cli"]
FEED_TOKEN = "a-feeder-token-of-32-characters!"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[(1, "sqlite"), (2, "sqlite"), (2, "postgresql")],
                ids=["1-worker-sqlite", "2-workers-sqlite", "2-workers-postgresql"])
def server(bundle_dir, tmp_path_factory, request):
    # two worker processes share one store: its locking must lose nothing
    workers, backend = request.param
    if backend == "sqlite":
        log = f"sqlite:///{tmp_path_factory.mktemp('server') / 'store.sqlite'}"
    else:
        log = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port),
         "--store", log, "--workers", str(workers)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "STARRY_FEED_TOKEN": FEED_TOKEN})
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    yield url, log
    process.terminate()
    process.wait(timeout=10)


def test_nowcast_over_http(server, observations):
    url, _ = server
    response = httpx.post(f"{url}/v1/nowcast", json=request_body(observations), timeout=10)
    assert response.status_code == 200
    assert len(response.json()["forecasts"]) == 12
    assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "Starry Guide"


def test_concurrent_requests_all_reach_the_log(server, observations):
    url, log = server
    engine = sa.create_engine(log)
    with engine.connect() as db:
        before = db.exec_driver_sql("SELECT COUNT(*) FROM predictions").scalar()
    bodies = [request_body(observations, start=1000 + 13 * i) for i in range(60)]
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda b: client.post(f"{url}/v1/nowcast", json=b), bodies))
    assert all(r.status_code == 200 for r in responses)
    ids = {r.json()["prediction_id"] for r in responses}
    assert len(ids) == 60
    with engine.connect() as db:
        logged = {row[0] for row in db.exec_driver_sql("SELECT prediction_id FROM predictions")}
        rows = db.exec_driver_sql("SELECT COUNT(*) FROM prediction_horizons").scalar()
        if engine.dialect.name == "sqlite":
            assert db.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    assert ids <= logged
    assert len(logged) == before + 60 and rows == (before + 60) * 12


def test_refuses_to_start_on_a_corrupt_bundle(bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "feature_spec.json").write_text("{}")
    result = subprocess.run([*STARRY, "serve", "--bundle", str(copy), "--port",
                             str(free_port())], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "cannot start" in result.stderr and "feature_spec.json is corrupt" in result.stderr


def test_refuses_to_start_on_a_clock_start_without_a_utc_offset(bundle_dir, tmp_path):
    result = subprocess.run([*STARRY, "serve", "--bundle", str(bundle_dir), "--store",
                             str(tmp_path / "store.sqlite"), "--port", str(free_port())],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "STARRY_CLOCK_START": "2026-12-06 22:40"})
    assert result.returncode != 0
    assert "cannot start" in result.stderr and "STARRY_CLOCK_START" in result.stderr


def test_refuses_to_start_without_a_champion(tmp_path, monkeypatch):
    result = subprocess.run([*STARRY, "serve", "--port", str(free_port())], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ,
                                 "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode != 0
    assert "no champion yet" in result.stderr


def test_feed_auth_no_token_401_wrong_403_and_nothing_stored_without_it(server, observations):
    url, log = server
    station = f"s{free_port()}"  # a station of this test only (the server is shared)
    place = {"latitude": 36.1, "longitude": -79.95}
    feed = {"observations": request_body(observations, hours=3)["observations"]}
    wrong = {"Authorization": "Bearer a-feeder-token-of-32-characters?"}
    right = {"Authorization": f"Bearer {FEED_TOKEN}"}
    with httpx.Client(base_url=url, timeout=10) as client:
        for method, path, body in (("PUT", f"/v1/stations/{station}", place),
                                   ("POST", f"/v1/stations/{station}/observations", feed)):
            assert client.request(method, path, json=body).status_code == 401
            assert client.request(method, path, json=body,
                                  headers={"Authorization": "Basic eDp5"}).status_code == 401
            assert client.request(method, path, json=body, headers=wrong).status_code == 403
        assert station not in [s["station_id"] for s in client.get("/v1/stations").json()]
        assert client.put(f"/v1/stations/{station}", json=place, headers=right
                          ).status_code == 201
        path = f"/v1/stations/{station}/observations"
        assert client.post(path, json=feed).status_code == 401
        assert client.post(path, json=feed, headers=wrong).status_code == 403
        engine = sa.create_engine(log)
        with engine.connect() as db:
            stored = db.execute(sa.text("SELECT COUNT(*) FROM observations WHERE station_id = "
                                        ":s"), {"s": station}).scalar()
        assert stored == 0  # nothing reached the observations without the token
        accepted = client.post(path, json=feed, headers=right)
        assert accepted.status_code == 200 and accepted.json()["new"] == 3
        with engine.connect() as db:
            stored = db.execute(sa.text("SELECT COUNT(*) FROM observations WHERE station_id = "
                                        ":s"), {"s": station}).scalar()
        engine.dispose()
        assert stored == 3


def test_refuses_a_feed_token_file_others_can_read(bundle_dir, tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 40)
    token.chmod(0o644)
    result = subprocess.run([*STARRY, "serve", "--bundle", str(bundle_dir), "--port",
                             str(free_port()), "--store", str(tmp_path / "s.sqlite"),
                             "--feed-token-file", str(token)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "readable by others" in result.stderr and "chmod 600" in result.stderr


def test_store_snapshot_and_purge_commands(tmp_path):
    from starry_guide.serve.store.database import Prediction, Store

    t0 = __import__("datetime").datetime(2001, 1, 1, tzinfo=__import__("datetime").UTC)
    store = Store(tmp_path / "s.sqlite", maintenance=False)
    store.log_predictions([Prediction("p", "1", "nowcast", 1.0, 2.0, t0, [(1, t0, 0.5)])])
    store.close()
    out = tmp_path / "production"
    result = subprocess.run([*STARRY, "store", "snapshot", "--store", str(tmp_path / "s.sqlite"),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "predictions 1" in result.stdout
    assert (out / "manifest.json").exists() and (out / "predictions.parquet").exists()
    purge = subprocess.run([*STARRY, "store", "purge", "--older-than", "1", "--store",
                            str(tmp_path / "s.sqlite")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert purge.returncode == 0 and "predictions 0" in purge.stdout, purge.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_answered_prediction_survives_a_killed_worker(bundle_dir, tmp_path, observations,
                                                            backend, request):
    """Load on two workers; one is killed with SIGKILL mid-load. Every prediction answered
    200 — before, during and after — is in the store."""
    import signal
    import threading

    if backend == "sqlite":
        url_ = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url_ = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port), "--store", url_,
         "--workers", "2", "--rate-per-s", "0"],  # load from one address: no write-rate limit
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        workers = wait_for_workers(base, process, 2)
        bodies = [request_body(observations, start=500 + 11 * i) for i in range(40)]
        answered, failed = [], []
        stop = time.monotonic() + 10
        lock = threading.Lock()

        def load(k: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                i = k
                while time.monotonic() < stop:
                    i += 1
                    try:
                        response = client.post("/v1/nowcast", json=bodies[i % len(bodies)])
                    except httpx.TransportError as exc:
                        with lock:
                            failed.append(exc)
                        continue
                    with lock:
                        if response.status_code == 200:
                            answered.append(response.json()["prediction_id"])
                        else:
                            failed.append(response.status_code)

        threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(4)
        before_kill = len(answered)
        os.kill(workers[0], signal.SIGKILL)
        for thread in threads:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert before_kill > 0 and len(answered) > before_kill  # served after the kill too
    engine = sa.create_engine(url_)
    with engine.connect() as db:
        stored = {row[0] for row in db.exec_driver_sql("SELECT prediction_id FROM predictions")}
        horizons = db.exec_driver_sql("SELECT COUNT(*) FROM prediction_horizons").scalar()
    engine.dispose()
    missing = set(answered) - stored
    assert not missing, f"{len(missing)} answered predictions are not in the store"
    assert horizons == 12 * len(stored)


def test_supervisor_notices_a_worker_that_dies_while_it_is_pinged(bundle_dir, tmp_path):
    """A worker killed while the supervisor waits for its health-check answer is replaced at
    once, and SIGTERM still stops everything promptly (uvicorn's supervisor waited out the
    whole 60 s health-check timeout, deaf to signals)."""
    import signal

    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port), "--store",
         f"sqlite:///{tmp_path / 'store.sqlite'}", "--workers", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        frozen, other = wait_for_workers(base, process, 2)
        os.kill(frozen, signal.SIGSTOP)  # it cannot answer: the supervisor's next ping waits
        time.sleep(2)
        os.kill(frozen, signal.SIGKILL)  # dies while the supervisor waits for its answer
        deadline = time.time() + 20
        while time.time() < deadline:
            replacement = set(worker_pids(process.pid)) - {frozen, other}
            if replacement:
                break
            time.sleep(0.2)
        assert replacement, "no replacement worker 20 s after the worker died"
        wait_until_healthy(base, process, 60)
        process.terminate()
        stopping = time.monotonic()
        process.wait(timeout=30)
        assert time.monotonic() - stopping < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _read_response(sock) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


@pytest.mark.parametrize("connection", ["just-accepted", "keep-alive"])
def test_a_stopping_server_answers_a_request_already_on_its_way(bundle_dir, tmp_path, connection):
    """SIGTERM while a connection has no request under way — just accepted, or idle between
    keep-alive requests — and its request arrives a moment later: it is answered (and the
    connection closed), not reset."""
    import signal
    import socket

    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port), "--store",
         f"sqlite:///{tmp_path / 'store.sqlite'}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if connection == "keep-alive":
                sock.sendall(request)
                assert _read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.3)  # the server holds the connection, no request under way
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the server is stopping
            sock.sendall(request)
            head = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" in head.lower()
            assert sock.recv(1) == b""  # then closed
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_slow_client_does_not_hold_up_a_stopping_server(bundle_dir, tmp_path):
    """Headers trickling in when SIGTERM arrives: the connection gets the drain's second,
    not the 10 s header deadline or the graceful-shutdown timeout."""
    import signal
    import socket

    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port), "--store",
         f"sqlite:///{tmp_path / 'store.sqlite'}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers not complete
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            process.wait(timeout=30)
            assert time.monotonic() - stopping < 5
            try:  # closed without an answer: its request never came
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
