"""First load of the web app in a real browser, against baselines in the same run.

A real `starry serve` (uvicorn) serves the bundle; headless Debian Chromium (Playwright) opens
the app cold — a fresh browser context each time, so nothing is cached — at a phone's
viewport, for a place given in the link (no geolocation prompt), and we measure:

* bytes: every response body the first load fetched (the page, its scripts and styles, the
  icon and manifest, the night plan), by kind, and the same compressed with gzip -6 (what a
  compressing proxy would send; the service itself sends them as they are);
* time: from navigation start to the plan drawn (the night strip in the DOM), median of
  ROUNDS cold loads; its parts: the page's own assets loaded (DOMContentLoaded) and the
  night plan's request;
* baselines, same server, same browser, same run: a cold load of ``/healthz`` as a document
  (the floor for any page from this server), and ``GET /v1/night`` alone over HTTP.

    uv run python benchmarks/app_load.py [--bundle models/champion/bundle]

Results: ``benchmarks/results/app_load.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from starry_guide.serve import launch  # noqa: E402
from tests.support.browser import chromium  # noqa: E402

ROUNDS = 7
PLACE = "lat=36.1&lon=-79.95"


def cold_load(browser, url: str) -> dict:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    bodies: dict[str, bytes] = {}
    page.on("response", lambda r: bodies.__setitem__(r.url, r.body()))
    page.goto(f"{url}/?{PLACE}")
    page.locator("#strip svg").wait_for()
    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const plan = performance.getEntriesByType('resource')
            .find(e => e.name.includes('/v1/night'));
        return {drawn_ms: performance.now(), dom_content_loaded_ms: nav.domContentLoadedEventEnd,
                plan_request_ms: plan ? plan.duration : null}; }""")
    context.close()
    return {**timing, "bodies": bodies}


def document_load(browser, url: str) -> float:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{url}/healthz")
    ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    context.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "models" / "champion" / "bundle"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = launch.start(Path(args.bundle), Path(tmp) / "store.sqlite", cwd=ROOT)
        url = server.url
        try:
            with chromium() as browser:
                cold_load(browser, url)  # warm the server (imports, ephemeris), not the browser
                loads, floors, api = [], [], []
                for _ in range(ROUNDS):  # alternate: the machine's noise hits all alike
                    loads.append(cold_load(browser, url))
                    floors.append(document_load(browser, url))
                    start = time.perf_counter()
                    httpx.get(f"{url}/v1/night?{PLACE}&date=tonight", timeout=30)
                    api.append(1000 * (time.perf_counter() - start))
        finally:
            server.stop()
    bodies = loads[-1]["bodies"]
    by_kind = {}
    for address, body in sorted(bodies.items()):
        path = address.split("/", 3)[-1]
        kind = "night plan (JSON)" if "v1/night" in path else f"/{path.split('?')[0]}"
        by_kind[kind] = {"bytes": len(body), "gzip_bytes": len(gzip.compress(body, 6))}
    total = sum(v["bytes"] for v in by_kind.values())
    assets = sum(v["bytes"] for k, v in by_kind.items() if k.startswith("/"))
    median = statistics.median
    results = {
        "machine": f"{os.cpu_count()}-core {platform.machine()}, Python "
                   f"{platform.python_version()}, headless Debian Chromium",
        "rounds": ROUNDS,
        "requests": len(bodies),
        "bytes_total": total,
        "bytes_app_assets": assets,
        "gzip_bytes_total": sum(v["gzip_bytes"] for v in by_kind.values()),
        "by_file": by_kind,
        "first_load_drawn_ms_median": round(median(x["drawn_ms"] for x in loads), 1),
        "first_load_dom_content_loaded_ms_median": round(
            median(x["dom_content_loaded_ms"] for x in loads), 1),
        "night_request_in_page_ms_median": round(
            median(x["plan_request_ms"] for x in loads if x["plan_request_ms"]), 1),
        "baseline_healthz_document_ms_median": round(median(floors), 1),
        "baseline_night_api_alone_ms_median": round(median(api), 1),
    }
    out = ROOT / "benchmarks" / "results" / "app_load.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "by_file"}, indent=2))


if __name__ == "__main__":
    main()
