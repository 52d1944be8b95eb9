"""The web app in a real browser (Debian's Chromium through Playwright) against a real
`starry serve` (uvicorn subprocess) with a real bundle and store."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from starry_guide.serve.routes.events import window_changes
from tests.support.server import Server
from tests.support.server import start_server as support_start

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "assets"
GREENSBORO = {"latitude": 36.1, "longitude": -79.95}
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 860}
FEED_TOKEN = "test-feed-token-0123456789"
#: the servers' and the browsers' clock (STARRY_CLOCK_START, Playwright's page.clock): 17:40
#: in Greensboro on 6 December 2026, an hour before astronomical dusk, so that no test
#: depends on the day or hour it runs. That night the climatology alone gives a clear
#: window after moonset (04:05-10:50 UTC), beyond the nowcast's 12 hours: the live test
#: checks that it does not hide the window the nowcast opens.
CLOCK = "2026-12-06T22:40:00Z"
NIGHT = "2026-12-06"


def start_server(bundle_dir: Path, folder: Path, workers: int = 1) -> Server:
    return support_start(bundle_dir, folder, workers=workers,
                         env={"STARRY_FEED_TOKEN": FEED_TOKEN, "STARRY_EVENTS_POLL_S": "0.5",
                              "STARRY_EVENTS_HEARTBEAT_S": "1", "STARRY_CLOCK_START": CLOCK})


@pytest.fixture(scope="module")
def server(bundle_dir, tmp_path_factory):
    started = start_server(bundle_dir, tmp_path_factory.mktemp("app"))
    yield started.url
    started.stop()


class Page:
    """A browser page that records console errors, page errors and failed requests."""

    def __init__(self, browser, viewport=PHONE, timezone="America/New_York",
                 permissions=("geolocation",), clock: str = CLOCK):
        self.context = browser.new_context(
            viewport=viewport, locale="en-US", timezone_id=timezone,
            geolocation={**GREENSBORO}, permissions=list(permissions))
        self.page = self.context.new_page()
        self.page.clock.set_fixed_time(clock)  # the servers' clock (they started at CLOCK)
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"{r.status} {r.url}"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.context.close()


def shown_notifications(page, fields: str, timeout_s: float = 20) -> list:
    """The notifications the app's service worker shows (each as the JavaScript array
    ``fields`` of ``x``, e.g. ``"[x.title, x.body]"``), once there is one or after
    ``timeout_s``. Polled with ``page.evaluate``, which awaits the promise:
    ``wait_for_function``'s predicate is synchronous — a returned Promise is truthy, so it
    would not wait at all (microsoft/playwright#29132)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = page.evaluate("navigator.serviceWorker.ready.then(r => r.getNotifications())"
                              f".then(n => n.map(x => {fields}))")
        if shown or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(100)


def night(url: str, **params) -> dict:
    response = httpx.get(f"{url}/v1/night", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def hhmm(iso: str) -> str:
    return iso[11:16]  # local ISO times carry the place's own clock


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone-360x740", "desktop"])
def test_location_to_tonight_without_console_errors(server, browser, viewport):
    with Page(browser, viewport) as p:
        page = p.page
        page.goto(server)
        page.get_by_role("button", name="Use my location").click()
        page.wait_for_selector("#strip svg")
        expected = night(server, lat=36.1, lon=-79.95, date="tonight")
        assert expected["date"] == NIGHT  # the server's pinned clock
        best = page.locator("#best").inner_text()
        window = expected["best_windows"][0]
        assert f"{hhmm(window['start_local'])}–{hhmm(window['end_local'])}" in best
        assert f"{round(100 * window['mean_p_clear'])}\u00a0% clear" in best
        assert page.locator("#verdict").inner_text().strip()
        assert "America/New_York" in page.locator("#tz-note").inner_text()
        assert page.locator("#events dd").count() == 6
        # nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert page.locator("#place-label").inner_text().startswith("My location")
        assert not p.problems, p.problems


def test_typed_coordinates_are_remembered_and_far_places_are_labelled(server, browser):
    with Page(browser) as p:
        page = p.page
        page.goto(server)
        page.get_by_label("Latitude").fill("52.52")
        page.get_by_label("Longitude").fill("13.40")
        page.get_by_role("button", name="Show tonight").click()
        page.wait_for_selector("#strip svg, #notes:not([hidden])")
        assert "Europe/Berlin" in page.locator("#tz-note").inner_text()
        assert "no station within" in page.locator("#notes").inner_text()
        page.reload()
        page.wait_for_selector("#strip svg")
        assert page.locator("#place-label").inner_text() == "52.52°, 13.40°"
        assert not page.locator("#where").evaluate("d => d.open")
        # a bad value is refused with a message, nothing is fetched
        page.get_by_role("button", name=re.compile("Change place")).click()
        page.get_by_label("Latitude").fill("95")
        page.get_by_role("button", name="Show tonight").click()
        assert "latitude must be between -90 and 90" in page.locator("#coords-error").inner_text()
        assert not p.problems, p.problems


def _contrast(rgb_a: str, rgb_b: str) -> float:
    def luminance(rgb: str) -> float:
        values = [int(v) / 255 for v in re.findall(r"\d+", rgb)[:3]]
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in values]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    a, b = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_strip_keyboard_contrast_and_red_light_mode(server, browser):
    with Page(browser) as p:
        page = p.page
        page.goto(f"{server}/?lat=36.1&lon=-79.95")
        strip = page.locator("#strip svg")
        strip.wait_for()
        strip.focus()
        page.keyboard.press("Home")
        first = page.locator("#readout").inner_text()
        page.keyboard.press("ArrowRight")
        second = page.locator("#readout").inner_text()
        assert first != second and "% clear" in second and "mag/arcsec²" in second
        assert strip.get_attribute("aria-valuenow") == "1"
        # hovering shows the values too
        box = strip.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
        assert page.locator("#readout").inner_text() != second
        # contrast of text on cards: WCAG AAA (7:1) for the main text in the dark theme, AA
        # (4.5:1) for everything in both (pure red cannot reach 7:1 on black)
        for main in (7, 4.5):
            colours = page.evaluate("""() => {
                const s = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
                return [s('#best', 'color'), s('.card', 'backgroundColor'),
                        s('#tz-note', 'color'), s('#verdict', 'color')]; }""")
            text, card, muted, verdict = colours
            assert _contrast(text, card) >= main and _contrast(muted, card) >= 4.5
            assert _contrast(verdict, card) >= 4.5
            page.get_by_role("button", name="Red-light mode").click()
        assert not page.evaluate("document.documentElement.classList.contains('red')")
        page.get_by_role("button", name="Red-light mode").click()
        page.reload()
        page.locator("#strip svg").wait_for()
        assert page.evaluate("document.documentElement.classList.contains('red')")
        # in red-light mode no colour on the page has more green or blue than red
        text = page.evaluate("getComputedStyle(document.querySelector('#best')).color")
        r, g, b = (int(v) for v in re.findall(r"\d+", text)[:3])
        assert r > 3 * max(g, b)
        assert not p.problems, p.problems


def test_app_files_are_served_by_the_service(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in re.findall(r'(?:src|href)="(/app/[^"]+)"', page.text):
        response = httpx.get(server + asset)
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "no-cache"
    worker = httpx.get(server + "/sw.js")
    assert worker.headers["service-worker-allowed"] == "/"
    assert "javascript" in worker.headers["content-type"]
    # nothing in the app is fetched from another origin
    for name in ("index.html", "app.js", "strip.js", "app.css", "sw.js"):
        text = (ROOT / "src/starry_guide/serve/web/app" / name).read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name


@pytest.mark.parametrize("name, viewport", [("phone", PHONE), ("desktop", DESKTOP)])
def test_screenshots_for_the_docs(server, browser, name, viewport):
    """The App page's screenshots: Greensboro, a fixed night, the browser's clock set to
    that evening so that the picture is the same on every run."""
    with Page(browser, viewport) as p:
        page = p.page
        page.clock.set_fixed_time("2026-11-27T17:30:00-05:00")
        page.goto(f"{server}/?lat=36.1&lon=-79.95&date=2026-11-27")
        page.locator("#strip svg").wait_for()
        page.locator("#strip svg").focus()
        for _ in range(30):
            page.keyboard.press("ArrowRight")
        shot = page.screenshot()
        assert len(shot) > 10_000
        assert not p.problems, p.problems
    # replaced only when the picture changed: Chromium's text antialiasing varies by a few
    # pixels from run to run, which should not churn a committed file
    target = SCREENSHOTS / f"app-{name}.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if not target.exists() or _changed_pixels(target.read_bytes(), shot) > 1e-4:
        target.write_bytes(shot)


def _changed_pixels(old: bytes, new: bytes) -> float:
    """The fraction of pixels that differ between two PNG images (1.0 if sizes differ)."""
    import io

    from PIL import Image, ImageChops

    a, b = (Image.open(io.BytesIO(x)).convert("RGB") for x in (old, new))
    if a.size != b.size:
        return 1.0
    difference = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v else 0)
    return difference.histogram()[255] / (a.size[0] * a.size[1])


# ---------------------------------------------------------------- live: feed, SSE, nudge
def _hours(observations, opaque: float, start_month: int) -> list[dict]:
    """Seven real consecutive hours of Greensboro's file, all with this opaque cover."""
    from starry_guide.core.schema import WEATHER_COLUMNS

    g = observations[observations["station_id"] == "greensboro_nc"].reset_index(drop=True)
    same = (g["opaque_cloud_tenths"] == opaque).astype(int).rolling(7).sum()
    end = next(i for i in same[same == 7].index if g["time"][i].month >= start_month)
    return [{c: (None if g[c][i] != g[c][i] else float(g[c][i])) for c in WEATHER_COLUMNS}
            for i in range(end - 6, end + 1)]


def _stamped(hours: list[dict], last: dt.datetime) -> list[dict]:
    return [{"time": (last - dt.timedelta(hours=len(hours) - 1 - i)).isoformat(), **h}
            for i, h in enumerate(hours)]


@pytest.fixture(scope="module")
def live_server(bundle_dir, tmp_path_factory):
    """Two worker processes on one store: the browser's event stream and the feeder's
    posts may land on different processes."""
    folder = tmp_path_factory.mktemp("live")
    started = start_server(bundle_dir, folder, workers=2)
    yield started.url, folder / "store.sqlite"
    started.stop()


def test_live_update_nudge_and_feedback(live_server, browser, observations):
    url, store_file = live_server
    feeder = {"Authorization": f"Bearer {FEED_TOKEN}"}
    station = "greensboro-roof"
    assert httpx.put(f"{url}/v1/stations/{station}", headers=feeder, json={
        **GREENSBORO, "elevation_m": 273.0, "name": "Greensboro roof"}).status_code in (200, 201)
    # the station's hours are placed relative to tonight's astronomical dusk: overcast hours
    # up to 8 h before it (their nowcast reaches only the first hours of darkness), then
    # seven clear hours up to 1 h before it (their nowcast covers the darkness), none after
    # the clock (CLOCK: the servers' and the browser's)
    plan = night(url, lat=36.1, lon=-79.95, date="tonight")
    assert plan["date"] == NIGHT
    dusk = pd.Timestamp(plan["summary"]["astronomical_dusk"]["utc"])
    last = dusk.floor("h").to_pydatetime() - dt.timedelta(hours=8)
    assert last + dt.timedelta(hours=7) <= pd.Timestamp(CLOCK) < dusk
    cloudy = _stamped(_hours(observations, 10, 11), last)
    response = httpx.post(f"{url}/v1/stations/{station}/observations", headers=feeder,
                          json={"observations": cloudy}, timeout=30)
    assert response.status_code == 200, response.text
    before = httpx.get(f"{url}/v1/stations/{station}/night", params={"date": "tonight"},
                       timeout=30).json()
    assert before["date"] == NIGHT
    # the case this night is for: a clear window of climatology alone, beyond the nowcast
    assert any(w["mean_p_clear"] >= 0.5 and w["nowcast_minutes"] == 0
               for w in before["best_windows"]), before["best_windows"]

    with Page(browser, PHONE, permissions=["geolocation", "notifications"]) as p:
        page = p.page
        page.clock.set_fixed_time(CLOCK)  # tonight's windows lie ahead
        page.goto(f"{url}/?station={station}")
        page.locator("#live:not([hidden])").wait_for(timeout=20_000)
        page.get_by_label("minutes").fill("15")
        page.get_by_label(re.compile("Tell me when it will be clear")).check()
        page.wait_for_function("navigator.serviceWorker.controller !== null || "
                               "navigator.serviceWorker.getRegistration('/')")
        page.evaluate("navigator.serviceWorker.ready")
        assert before["p_clear_source"].startswith("nowcast")
        page.locator("#updated").filter(has_text=before["p_clear_source"]).wait_for(
            timeout=20_000)  # the plan may still be on its way

        # the feeder posts seven clear hours: the page updates without reload
        clear = _stamped(_hours(observations, 0, 10), last + dt.timedelta(hours=7))
        response = httpx.post(f"{url}/v1/stations/{station}/observations", headers=feeder,
                              json={"observations": clear}, timeout=30)
        assert response.status_code == 200, response.text
        after = httpx.get(f"{url}/v1/stations/{station}/night", params={"date": "tonight"},
                          timeout=30).json()
        assert after["prediction_id"] != before["prediction_id"]
        latest = pd.Timestamp(clear[-1]["time"]).tz_convert("America/New_York")
        page.wait_for_function("document.querySelector('#updated').textContent"
                               f".includes('latest observation {latest:%H:%M}')",
                               timeout=20_000)
        opened, _ = window_changes(before["best_windows"], after["best_windows"],
                                   since=CLOCK)
        assert opened, "posting clear hours should open a clear window tonight"
        best = after["best_windows"][0]
        assert best in opened and best["nowcast_minutes"] > 0
        page.wait_for_function(
            f"document.querySelector('#best').textContent.includes({hhmm(best['start_local'])!r})",
            timeout=20_000)
        # the app really showed a notification, through its service worker
        qualifying = [w for w in opened if w["minutes"] >= 15 and w["mean_p_clear"] >= 0.5]
        assert qualifying, opened
        shown = shown_notifications(page, "[x.title, x.body]")
        assert any(title == "A clear window opened tonight" for title, _ in shown), shown

        # after the window, "was it clear?" — answered offline, sent when back online
        page.clock.set_fixed_time(pd.Timestamp(best["end"]).to_pydatetime()
                                  + dt.timedelta(minutes=30))
        page.reload()
        page.locator("#feedback:not([hidden])").wait_for(timeout=20_000)
        page.context.set_offline(True)
        page.get_by_role("button", name="Clear", exact=True).click()
        page.locator("#feedback-status").filter(has_text="offline").wait_for()
        page.context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        page.wait_for_function("JSON.parse(localStorage.getItem('starry.feedbackQueue'))"
                               ".length === 0", timeout=20_000)
        with sqlite3.connect(store_file) as db:
            rows = db.execute("SELECT prediction_id, observed FROM feedback").fetchall()
        assert (after["prediction_id"], "clear") in rows
        # Playwright's contexts are incognito-like, where Chromium refuses Web Push and says
        # so on the console when the app tries to subscribe (the app then falls back to its
        # own nudges, which this test checks); tests/serve/test_push_app.py covers the push
        problems = [x for x in p.problems if "ERR_INTERNET_DISCONNECTED" not in x
                    and "Failed to fetch" not in x
                    and "does not support the Push API in incognito mode" not in x]
        assert not problems, problems


def test_event_stream_over_http(live_server):
    url, _ = live_server
    assert httpx.get(f"{url}/v1/stations/nowhere/events").status_code == 404
    feeder = {"Authorization": f"Bearer {FEED_TOKEN}"}
    httpx.put(f"{url}/v1/stations/quiet", headers=feeder, json=GREENSBORO)
    with httpx.stream("GET", f"{url}/v1/stations/quiet/events", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in response.iter_lines():  # the first event, then a heartbeat
            lines.append(line)
            if line.startswith(": heartbeat"):
                break
    assert "event: nowcast" in lines and "retry: 3000" in lines
    data = next(x for x in lines if x.startswith("data:"))
    event = __import__("json").loads(data[len("data:"):])
    # a station without observations: its plan is climatology, no prediction to answer
    assert event["station_id"] == "quiet" and event["issued_for"] is None
    assert event["prediction_id"] is None and "climatology" in event["p_clear_source"]
