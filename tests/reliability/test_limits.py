"""Bounded resources and abuse limits on a real uvicorn process: bodies over the limit (chunked
or not) and slow bodies and headers are refused in bounded time; requests beyond the limit in
progress get 503 + Retry-After; writes beyond the per-client rate get 429; only
application/json bodies are accepted; CORS is off unless configured."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from tests.reliability.conftest import start_server

JSON = {"content-type": "application/json"}
TIMEOUT_S = 2  # the header and body deadlines of the `strict` server
FEED_TOKEN = "reliability-suite-feed-token"


@pytest.fixture(scope="module")
def strict(bundle_dir, tmp_path_factory):
    """Short deadlines and at most 2 requests in progress."""
    s = start_server(bundle_dir, tmp_path_factory.mktemp("strict"), "--rate-per-s", "0",
                     "--header-timeout-s", str(TIMEOUT_S), "--body-timeout-s", str(TIMEOUT_S),
                     "--max-in-flight", "2", env={"STARRY_FEED_TOKEN": FEED_TOKEN})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def limited(bundle_dir, tmp_path_factory):
    """A write rate of 1/s with bursts of 3, and CORS for two origins (option and env)."""
    s = start_server(bundle_dir, tmp_path_factory.mktemp("limited"), "--rate-per-s", "1",
                     "--rate-burst", "3", "--cors-origin", "https://app.example.org",
                     env={"STARRY_CORS_ORIGINS": "http://localhost:5173"})
    yield s
    s.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def read_reply(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def status_of(reply: bytes) -> int:
    return int(reply[9:12]) if reply.startswith(b"HTTP/1.1 ") else 0


def stored_predictions(store) -> int:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


# --- body size ---------------------------------------------------------------------------

def test_a_declared_oversized_body_is_refused_before_reading(strict):
    sock = connect(strict.port)
    start = time.monotonic()
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 50000000\r\n\r\n")
    reply = read_reply(sock)
    assert status_of(reply) == 413 and b"over the limit" in reply
    assert time.monotonic() - start < 2


def test_a_chunked_body_is_cut_off_at_the_limit_while_reading(strict):
    """50 MB offered in chunks: refused after about the limit (256 KiB), not read whole."""
    sock = connect(strict.port)
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    replies: list[bytes] = []
    reader = threading.Thread(target=lambda: replies.append(read_reply(sock)))
    reader.start()
    sent, start = 0, time.monotonic()
    try:
        while sent < 50_000_000 and reader.is_alive():
            sock.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    reader.join(timeout=30)
    elapsed = time.monotonic() - start
    sock.close()
    # the server stopped reading at the limit; what was sent beyond it sat in socket buffers
    assert sent < 20_000_000, sent
    assert elapsed < 10
    assert replies and (status_of(replies[0]) == 413 or replies[0] == b""), replies[0][:200]
    # and the server is fine for the next client
    assert httpx.get(f"{strict.url}/healthz").status_code == 200


def test_a_chunked_body_over_the_limit_gets_413_with_its_reason(strict):
    body = b"[" * 300_000
    response = httpx.post(f"{strict.url}/v1/nowcast", headers=JSON,
                          content=(body[i:i + 10_000] for i in range(0, len(body), 10_000)))
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"][0]["msg"]


# --- slow clients ------------------------------------------------------------------------

def test_a_half_sent_body_is_refused_after_the_body_deadline(strict):
    sock = connect(strict.port)
    start = time.monotonic()
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"station": ')
    reply = read_reply(sock)
    elapsed = time.monotonic() - start
    assert status_of(reply) == 408 and b"not complete" in reply, reply[:300]
    assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 3


def test_a_trickled_chunked_body_is_refused_after_the_body_deadline(strict):
    sock = connect(strict.port)
    start = time.monotonic()
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    replies: list[bytes] = []
    reader = threading.Thread(target=lambda: replies.append(read_reply(sock)))
    reader.start()
    try:
        while reader.is_alive() and time.monotonic() - start < 30:
            sock.sendall(b"1\r\n \r\n")  # one byte every 0.2 s: never finishes
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reader.join(timeout=30)
    assert status_of(replies[0]) == 408
    assert time.monotonic() - start < TIMEOUT_S + 3


def test_slow_headers_are_refused_after_the_header_deadline(strict):
    sock = connect(strict.port)
    start = time.monotonic()
    sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\n")
    replies: list[bytes] = []
    reader = threading.Thread(target=lambda: replies.append(read_reply(sock)))
    reader.start()
    try:
        for i in range(100):  # a header line every 0.3 s ("slowloris")
            if not reader.is_alive():
                break
            sock.sendall(b"X-Slow-%d: 1\r\n" % i)
            time.sleep(0.3)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reader.join(timeout=30)
    elapsed = time.monotonic() - start
    assert status_of(replies[0]) == 408, replies[0][:200]
    assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 3


def test_a_silent_connection_is_closed_after_the_header_deadline(strict):
    sock = connect(strict.port)
    start = time.monotonic()
    read_reply(sock)
    assert time.monotonic() - start < TIMEOUT_S + 3


def test_oversized_headers_get_431(strict):
    sock = connect(strict.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                 + b"".join(b"X-Big-%d: %s\r\n" % (i, b"y" * 8000) for i in range(10)) + b"\r\n")
    reply = read_reply(sock)
    assert status_of(reply) == 431


# --- content type ------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", None])
def test_only_json_bodies_are_accepted(strict, body, content_type):
    """A web page can POST text/plain, forms and multipart to any site without a CORS
    preflight: those must never be able to write to the store."""
    before = stored_predictions(strict.store)
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/nowcast", "/v1/night", "/v1/feedback"):
        response = httpx.post(f"{strict.url}{path}", content=json.dumps(body),
                              headers=headers)
        assert response.status_code == 415, (path, content_type, response.text)
        assert "application/json" in response.json()["detail"][0]["msg"]
    assert stored_predictions(strict.store) == before
    ok = httpx.post(f"{strict.url}/v1/nowcast", json=body,
                    headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


# --- concurrency -------------------------------------------------------------------------

def test_requests_beyond_the_limit_in_progress_get_503_with_retry_after(strict, body):
    payload = json.dumps(body).encode()
    holders = []
    for _ in range(2):  # two requests in progress, each waiting for the rest of its body
        sock = connect(strict.port)
        sock.sendall(b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(payload) + payload[:100])
        holders.append(sock)
    time.sleep(0.3)
    response = httpx.post(f"{strict.url}/v1/nowcast", json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    for sock in holders:  # the two finish normally
        sock.sendall(payload[100:])
        assert status_of(read_reply(sock, timeout=10)) == 200
        sock.close()
    time.sleep(0.2)
    assert httpx.post(f"{strict.url}/v1/nowcast", json=body).status_code == 200


def test_event_streams_do_not_hold_the_slots_of_requests_in_progress(strict, body):
    registered = httpx.put(f"{strict.url}/v1/stations/sse", headers={
        "authorization": f"Bearer {FEED_TOKEN}"}, json={"latitude": 36.1, "longitude": -79.9})
    assert registered.status_code in (200, 201), registered.text
    listeners = []
    for _ in range(3):  # more open streams than the 2 requests allowed in progress
        sock = connect(strict.port)
        sock.sendall(b"GET /v1/stations/sse/events HTTP/1.1\r\nHost: x\r\n"
                     b"Accept: text/event-stream\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert status_of(head) == 200 and b"text/event-stream" in head, head[:300]
        listeners.append(sock)
    try:
        assert httpx.post(f"{strict.url}/v1/nowcast", json=body).status_code == 200
    finally:
        for sock in listeners:
            sock.close()


# --- the protocol's writes (serve/http/protocol.py: a head is sent with its body) ----------

def test_a_head_with_no_body_after_it_is_sent_at_once(strict):
    # HEAD (the API answers 405, GET only): uvicorn writes the head and nothing follows it;
    # the head must not wait for a body
    sock = connect(strict.port)
    try:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert status_of(head) == 405 and b"allow: GET" in head, head
        assert head.endswith(b"\r\n\r\n")  # and nothing after it
    finally:
        sock.close()


def test_pipelined_requests_get_whole_answers_in_order(strict, body):
    payload = json.dumps(body).encode()
    post = (b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    sock = connect(strict.port)
    try:  # three requests in one write, the last closing the connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post
                     + b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = read_reply(sock)
    finally:
        sock.close()
    first, rest = replies.split(b"\r\n\r\n", 1)
    assert status_of(first) == 200
    length = int(next(line.split(b":")[1] for line in first.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    assert json.loads(rest[:length])["status"] == "ok"
    second, rest = rest[length:].split(b"\r\n\r\n", 1)
    assert status_of(second) == 200
    length = int(next(line.split(b":")[1] for line in second.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    assert len(json.loads(rest[:length])["forecasts"]) == 12
    third = rest[length:]
    assert status_of(third) == 405 and third.endswith(b"\r\n\r\n")


# --- rate limit and CORS -----------------------------------------------------------------

def test_writes_beyond_the_rate_get_429_and_reads_do_not_count(limited):
    url = f"{limited.url}/v1/feedback"
    feedback = {"prediction_id": "nope", "observed": "clear"}
    statuses = [httpx.post(url, json=feedback).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]  # the burst: answered (unknown id)
    refused = httpx.post(url, json=feedback)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "too many write requests" in refused.json()["detail"][0]["msg"]
    for _ in range(5):  # reads are not rate-limited
        assert httpx.get(f"{limited.url}/healthz").status_code == 200
    time.sleep(1.1)  # tokens come back at 1/s, at most 3 saved up
    again = [httpx.post(url, json=feedback).status_code for _ in range(6)]
    assert again[0] == 404 and 429 in again, again


PREFLIGHT = {"access-control-request-method": "POST",
             "access-control-request-headers": "content-type"}


@pytest.mark.parametrize("origin", ["https://app.example.org", "http://localhost:5173"])
def test_cors_allows_the_configured_origins(limited, origin):
    preflight = httpx.options(f"{limited.url}/v1/nowcast",
                              headers={"origin": origin, **PREFLIGHT})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    simple = httpx.get(f"{limited.url}/healthz", headers={"origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin


def test_cors_refuses_other_origins(limited):
    preflight = httpx.options(f"{limited.url}/v1/nowcast",
                              headers={"origin": "https://evil.example", **PREFLIGHT})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{limited.url}/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_is_off_by_default(server):
    preflight = httpx.options(f"{server.url}/v1/nowcast",
                              headers={"origin": "https://app.example.org", **PREFLIGHT})
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{server.url}/healthz", headers={"origin": "https://app.example.org"})
    assert "access-control-allow-origin" not in simple.headers
