"""The load host's client, run inside its network namespace by the topology tests.

``python -m tests.deployment.client load URL BODY OUT --seconds S --clients N`` sends steady
closed-loop traffic through the balancer — ``POST /v1/nowcast`` (a write: each answer carries
the prediction id the store committed) and ``GET /v1/stations/{id}/nowcast`` (a read) in
turn — and writes one JSON line per request to OUT: when it was sent and answered (epoch
seconds), method, path, status (0: no answer), the API host that answered (the balancer's
``X-Upstream``), ``Retry-After``, the prediction id, the error. No retries: the numbers are
what clients saw.

``python -m tests.deployment.client probe URL --status 200 --seconds S`` waits until ``URL``
answers ``status`` (exit 0) or gives up (exit 1).

``python -m tests.deployment.client setup URL BODY`` registers the load's station and feeds
it the body's hours (retried until the deployment answers).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import httpx

STATION = "load_station"
#: a client waits this long for an answer (longer than any deadline of the service)
TIMEOUT_S = 30.0
TOKEN_ENV = "STARRY_FEED_TOKEN"


def _record(method: str, path: str, sent: float, response: httpx.Response | None,
            error: str | None) -> dict:
    record = {"sent": sent, "answered": time.time(), "method": method, "path": path,
              "status": 0 if response is None else response.status_code, "error": error,
              "upstream": None, "retry_after": None, "prediction_id": None, "type": None}
    if response is not None:
        record["upstream"] = response.headers.get("x-upstream")
        record["retry_after"] = response.headers.get("retry-after")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if response.status_code == 200 and method == "POST":
                record["prediction_id"] = body.get("prediction_id")
            detail = body.get("detail")
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                record["type"] = detail[0].get("type")
    return record


def load(url: str, body: dict, seconds: float, clients: int, pause_s: float) -> list[dict]:
    """Closed-loop traffic for ``seconds``; every request's record."""
    records: list[dict] = []
    lock = threading.Lock()
    stop = time.time() + seconds
    requests = [("POST", "/v1/nowcast", body), ("GET", f"/v1/stations/{STATION}/nowcast", None)]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as http:
            i = k
            while time.time() < stop:
                method, path, payload = requests[i % len(requests)]
                i += 1
                sent = time.time()
                try:
                    response = http.request(method, path, json=payload)
                    record = _record(method, path, sent, response, None)
                except httpx.TransportError as exc:
                    record = _record(method, path, sent, None, f"{type(exc).__name__}: {exc}")
                with lock:
                    records.append(record)
                time.sleep(pause_s)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(records, key=lambda r: r["sent"])


def setup(url: str, body: dict, token: str, seconds: float = 60) -> None:
    """Register :data:`STATION` and feed it the body's hours (its stored nowcast is the read
    of the load)."""
    deadline = time.time() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=TIMEOUT_S, headers=headers) as http:
        for method, path, payload in (
                ("PUT", f"/v1/stations/{STATION}", body["station"]),
                ("POST", f"/v1/stations/{STATION}/observations",
                 {"observations": body["observations"]})):
            while True:
                try:
                    response = http.request(method, path, json=payload)
                    if response.status_code < 300:
                        break
                    problem = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    problem = str(exc)
                if time.time() > deadline:
                    raise SystemExit(f"setup {method} {path} failed: {problem}")
                time.sleep(0.5)


def probe(url: str, status: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == status:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("load")
    run.add_argument("url")
    run.add_argument("body")
    run.add_argument("out")
    run.add_argument("--seconds", type=float, default=20)
    run.add_argument("--clients", type=int, default=4)
    run.add_argument("--pause-s", type=float, default=0.02)
    ready = sub.add_parser("probe")
    ready.add_argument("url")
    ready.add_argument("--status", type=int, default=200)
    ready.add_argument("--seconds", type=float, default=60)
    prepare = sub.add_parser("setup")
    prepare.add_argument("url")
    prepare.add_argument("body")
    args = parser.parse_args(argv)
    if args.command == "probe":
        return 0 if probe(args.url, args.status, args.seconds) else 1
    with open(args.body) as f:
        body = json.load(f)
    if args.command == "setup":
        setup(args.url, body, os.environ[TOKEN_ENV])
        return 0
    records = load(args.url, body, args.seconds, args.clients, args.pause_s)
    with open(args.out, "w") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
