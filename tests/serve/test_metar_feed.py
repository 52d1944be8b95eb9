"""`starry metar feed` and its data-API client against a loopback server that answers as the
Aviation Weather Center's ``/api/data/metar?ids=...&format=raw&hours=...`` does, built from
real archived reports (Atlanta's METARs and SPECIs, tests/data/metar/), then into a real
`starry serve`."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from starry_guide.ingest import metar
from starry_guide.tools import metar_feed
from tests.support.server import start_server

DATA = Path(__file__).resolve().parents[1] / "data" / "metar"
ROOT = Path(__file__).resolve().parents[2]
STARRY = [sys.executable, "-m", "starry_guide.cli"]
TOKEN = "metar-feed-test-token-0123456789"
#: the archive's "now": the end of the vendored ten days
NOW = dt.datetime(2020, 1, 11, 5, 0, tzinfo=dt.UTC)


def archived_reports() -> list[tuple[dt.datetime, str]]:
    reports = []
    for line in (DATA / "katl_2020-01-01_10_lcd_rem.txt").read_text().splitlines():
        day, hour, minute = int(line.split()[2][:2]), int(line.split()[2][2:4]), \
            int(line.split()[2][4:6])
        reports.append((dt.datetime(2020, 1, day, hour, minute, tzinfo=dt.UTC), line))
    return reports


class AwcLikeServer:
    """Answers ``GET /api/data/metar`` with the archive's reports of the last ``hours``
    before :data:`NOW`, one per line (``format=raw``); ``script`` lists status codes to
    answer first (429/503), each once."""

    def __init__(self, script: list[int] | None = None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        reports = archived_reports()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                outer.requests.append({"path": urlparse(self.path).path, **query,
                                       "agent": self.headers.get("User-Agent")})
                if outer.script:
                    status = outer.script.pop(0)
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    return
                if urlparse(self.path).path != "/api/data/metar" or \
                        query.get("format") != ["raw"]:
                    self.send_response(400)
                    self.end_headers()
                    return
                ids = set(query["ids"][0].split(","))
                since = NOW - dt.timedelta(hours=int(query["hours"][0]))
                lines = [text for when, text in reports
                         if since <= when <= NOW and text.split()[1] in ids]
                body = ("\n".join(reversed(lines)) + "\n").encode()  # newest first, as the API
                self.send_response(200 if lines else 204)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                if lines:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/data/metar"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class Clock:
    """Time that passes only when the client sleeps (the waits are recorded, not slept)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_client_backs_off_on_429_and_5xx_then_reads_the_reports():
    clock = Clock()
    with AwcLikeServer(script=[429, 503, 502]) as server:
        client = metar_feed.AwcClient(base_url=server.url, clock=clock, sleep=clock.sleep)
        text = client.fetch(["KATL"], 24)
    assert client.requests_sent == 4
    assert client.waits == [1.0, 4.0, 8.0]  # Retry-After, then exponential from 2 s
    assert len(text.splitlines()) >= 24 and all(" KATL " in line for line in text.splitlines())
    assert all(r["agent"] == metar_feed.USER_AGENT for r in server.requests)


def test_the_client_gives_up_after_its_tries_with_a_clear_error():
    clock = Clock()
    with AwcLikeServer(script=[503] * 5) as server:
        client = metar_feed.AwcClient(base_url=server.url, clock=clock, sleep=clock.sleep,
                                      max_tries=3)
        with pytest.raises(metar_feed.FeedError, match="answered 503 3 times; try again later"):
            client.fetch(["KATL"], 3)
    assert len(server.requests) == 3


def test_a_repeated_request_within_a_minute_is_served_from_the_cache():
    clock = Clock()
    with AwcLikeServer() as server:
        client = metar_feed.AwcClient(base_url=server.url, clock=clock, sleep=clock.sleep)
        first = client.fetch(["KATL"], 6)
        clock.now += 30
        again = client.fetch(["KATL"], 6)
        assert again == first and len(server.requests) == 1
        clock.now += 31  # a minute after the first: asked again
        client.fetch(["KATL"], 6)
        assert len(server.requests) == 2


def test_the_client_keeps_to_the_requests_per_minute():
    clock = Clock()
    with AwcLikeServer() as server:
        client = metar_feed.AwcClient(base_url=server.url, clock=clock, sleep=clock.sleep,
                                      max_per_minute=2)
        for hours in (1, 2, 3):
            client.fetch(["KATL"], hours)
    assert len(server.requests) == 3
    assert client.waits == [60.0]  # the third request waited for the minute to pass


def test_reports_from_the_api_go_through_the_contract():
    with AwcLikeServer() as server:
        conversion = metar_feed.read_source(server.url, until=NOW, ids=["KATL"], hours=48,
                                            client=metar_feed.AwcClient(base_url=server.url))
    frame = conversion.frame
    assert conversion.rejected == []
    assert 47 <= len(frame) <= 49 and (frame["station_id"] == "KATL").all()
    assert frame["time"].is_monotonic_increasing
    reference = metar.convert_text([("archive", (DATA / "katl_2020-01-01_10_lcd_rem.txt")
                                     .read_text())], NOW).frame.set_index("time")
    for _, row in frame.iterrows():
        assert row["report"] == reference.loc[row["time"], "report"]


def test_starry_metar_feed_posts_the_api_s_reports_into_the_service(bundle_dir, tmp_path):
    server = start_server(bundle_dir, tmp_path, env={"STARRY_FEED_TOKEN": TOKEN})
    try:
        with AwcLikeServer() as awc:
            result = subprocess.run(
                [*STARRY, "metar", "feed", "--source", awc.url, "--ids", "KATL", "--hours",
                 "72", "--until", NOW.isoformat(), "--url", server.url],
                cwd=ROOT, env={**os.environ, "STARRY_FEED_TOKEN": TOKEN}, capture_output=True,
                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        sent = int(result.stdout.split("sent ")[1].split()[0])
        assert 70 <= sent <= 73
        stations = httpx.get(f"{server.url}/v1/stations").json()
        katl = next(s for s in stations if s["station_id"] == "KATL")
        assert katl["latitude"] == pytest.approx(33.64, abs=0.01)
        nowcast = httpx.get(f"{server.url}/v1/stations/KATL/nowcast")
        assert nowcast.status_code == 200, nowcast.text
        body = nowcast.json()
        assert len(body["forecasts"]) == 12 and body["issued_for"].startswith("2020-01-11T05")
        # a wrong token is refused with a clear message, no traceback
        wrong = subprocess.run(
            [*STARRY, "metar", "feed", "--source", str(DATA / "klnk_2023-01-01_10_lcd_rem.txt"),
             "--until", "2023-01-11", "--url", server.url],
            cwd=ROOT, env={**os.environ, "STARRY_FEED_TOKEN": "wrong-token-0123456789"},
            capture_output=True, text=True, timeout=300)
        assert wrong.returncode == 1 and "refused the feeder token (403)" in wrong.stderr
        assert "Traceback" not in wrong.stderr
    finally:
        server.stop(timeout=30)


def test_feed_without_a_token_or_server_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STARRY_FEED_TOKEN"}
    no_token = subprocess.run([*STARRY, "metar", "feed", "--source", "x", "--url",
                               "http://127.0.0.1:9"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert no_token.returncode == 1 and "STARRY_FEED_TOKEN (--token-env) is not set" in \
        no_token.stderr
    no_server = subprocess.run(
        [*STARRY, "metar", "feed", "--source", str(DATA / "klnk_2023-01-01_10_lcd_rem.txt"),
         "--until", "2023-01-11", "--url", "http://127.0.0.1:9"],
        cwd=ROOT, env={**env, "STARRY_FEED_TOKEN": TOKEN}, capture_output=True, text=True,
        timeout=120)
    assert no_server.returncode == 1 and "cannot reach the server" in no_server.stderr
