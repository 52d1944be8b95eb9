"""Crash-safe process model on real processes: `kill -9` of the `--workers` supervisor takes
its workers with it and a restart binds the same port; SIGTERM drains the requests in flight
and closes the store."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time

import httpx
import psutil

from tests.reliability.conftest import FAST, GRACEFUL, start_server


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_kill_9_of_the_supervisor_takes_its_workers_and_a_restart_binds(bundle_dir, tmp_path,
                                                                        body):
    first = start_server(bundle_dir, tmp_path, *FAST, workers=2)
    supervisor = psutil.Process(first.process.pid)
    deadline = time.time() + 60
    while len(workers := [p for p in supervisor.children(recursive=True)
                          if "spawn" in " ".join(p.cmdline())]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2, supervisor.children(recursive=True)
    assert httpx.post(f"{first.url}/v1/nowcast", json=body, timeout=30).status_code == 200

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    deadline = time.time() + 20
    while any(alive(w.pid) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(w.pid) for w in workers), "orphan workers still running"
    assert refuses_connections(first.port)  # nobody is serving on the port any more

    second = start_server(bundle_dir, tmp_path, *FAST, workers=2, port=first.port,
                          store=first.store)
    try:
        response = httpx.post(f"{second.url}/v1/nowcast", json=body, timeout=30)
        assert response.status_code == 200
        assert "Address already in use" not in second.log()
    finally:
        assert second.stop() in GRACEFUL
    assert refuses_connections(first.port)


def test_sigterm_drains_requests_in_flight_and_closes_the_store(bundle_dir, tmp_path, body):
    server = start_server(bundle_dir, tmp_path, *FAST, "--shutdown-timeout-s", "15")
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:200])
    time.sleep(0.5)  # the request is in flight, waiting for the rest of its body
    server.process.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    while not refuses_connections(server.port) and time.time() < deadline:
        time.sleep(0.1)
    assert refuses_connections(server.port)  # no new connections while draining
    sock.sendall(payload[200:])
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    prediction_id = json.loads(reply.split(b"\r\n\r\n", 1)[1])["prediction_id"]
    assert server.process.wait(timeout=20) in GRACEFUL, server.log()
    assert "Traceback" not in server.log()
    with sqlite3.connect(server.store) as db:
        stored = db.execute("SELECT COUNT(*) FROM predictions WHERE prediction_id = ?",
                            (prediction_id,)).fetchone()[0]
    assert stored == 1
    # closed cleanly: the last connection folded the WAL into the database and removed it
    wal = server.store.with_name(server.store.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
