"""The app's side of Web Push in a real browser (Debian's Chromium through Playwright)
against a real `starry serve`: the "Nudge me" control subscribes through `PushManager` and
unsubscribes, the server's push (encrypted, VAPID-signed, checked and decrypted by the
loopback push service) is delivered to the service worker through the DevTools protocol's
`ServiceWorker.deliverPushMessage`, and the worker shows it as a notification.

Headless Chromium has no push service of its own (`pushManager.subscribe` is refused:
"Registration failed - permission denied"; it would need Google's FCM), so the page's
`PushManager` returns the loopback service's subscription instead — the browser's push
service is the one part played by the test; the app's code, the server, the decider, the
encryption and the service worker are the real ones."""

from __future__ import annotations

import base64
import json
import re
import sqlite3

import httpx
import pytest

from tests.serve.test_app import Page, shown_notifications
from tests.serve.test_push import FEEDER, GREENSBORO, SERVER_ENV, feed_night
from tests.support.push_service import PushService
from tests.support.server import start_server

pytestmark = pytest.mark.browser

STUB = """
(() => {
  const made = %s;
  let current = null;
  const subscription = () => ({
    endpoint: made.endpoint, expirationTime: null, options: { applicationServerKey: null },
    toJSON: () => made,
    unsubscribe: async () => {
      current = null;
      window.__unsubscribed = (window.__unsubscribed || 0) + 1;
      return true;
    },
  });
  PushManager.prototype.subscribe = async function (options) {
    const key = options && options.applicationServerKey;
    if (!options.userVisibleOnly || !(key instanceof Uint8Array) || key.length !== 65) {
      throw new Error("bad subscribe options");
    }
    window.__applicationServerKey = Array.from(options.applicationServerKey);
    current = subscription();
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


def registration_id(cdp, page) -> str:
    found = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda e: found.extend(r for r in e["registrations"] if not r["isDeleted"]))
    cdp.send("ServiceWorker.enable")
    for _ in range(80):
        if found:
            return found[-1]["registrationId"]
        page.wait_for_timeout(250)
    raise AssertionError("no service worker registration reported")


def test_nudge_control_subscribes_receives_a_push_and_unsubscribes(
        bundle_dir, tmp_path, observations, browser):
    store = tmp_path / "store.sqlite"
    server = start_server(bundle_dir, tmp_path, store=store, env=SERVER_ENV)
    try:
        url = server.url
        key = httpx.get(f"{url}/v1/push/key").json()["key"]
        httpx.put(f"{url}/v1/stations/roof", headers=FEEDER,
                  json={**GREENSBORO, "elevation_m": 273.0, "name": "Roof"})
        feed_night(url, "roof", observations, clear=False)
        with PushService(key) as push, Page(browser, permissions=["notifications"]) as p:
            subscriber = push.subscriber()
            page = p.page
            page.add_init_script(STUB % json.dumps(subscriber.subscription()))
            page.goto(f"{url}/?station=roof")
            page.evaluate("navigator.serviceWorker.register('/sw.js')"
                          ".then(() => navigator.serviceWorker.ready)")
            page.get_by_label("minutes").fill("15")
            page.get_by_label(re.compile("Tell me when it will be clear")).check()
            page.locator("#nudge-status").filter(
                has_text="the server will nudge this device").wait_for(timeout=20_000)
            # the app asked with the server's key, and the server stored the subscription
            sent_key = page.evaluate("window.__applicationServerKey")
            assert bytes(sent_key) == base64.urlsafe_b64decode(key + "=")
            with sqlite3.connect(store) as db:
                rows = db.execute("SELECT endpoint, station_id, min_minutes, time_zone "
                                  "FROM push_subscriptions").fetchall()
            assert rows == [(subscriber.endpoint, "roof", 15, "America/New_York")]
            assert page.locator("#install-hint").is_hidden()  # not iOS

            # clear hours: the server pushes; the loopback service decrypts it
            feed_night(url, "roof", observations, clear=True)
            [message] = push.wait_for(1)
            assert push.rejected == []
            # ... and hands it to the browser, whose service worker shows it
            cdp = page.context.new_cdp_session(page)
            origin = url.rstrip("/")
            cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": origin, "registrationId": registration_id(cdp, page),
                "data": json.dumps(message.payload)})
            shown = shown_notifications(page, "[x.title, x.body, x.data.url]")
            assert shown == [[message.payload["title"], message.payload["body"], "/?station=roof"]]

            # switched off: unsubscribed in the browser and deleted on the server
            page.get_by_label(re.compile("Tell me when it will be clear")).uncheck()
            page.locator("#nudge-status").filter(has_text="Off.").wait_for(timeout=20_000)
            assert page.evaluate("window.__unsubscribed") == 1
            with sqlite3.connect(store) as db:
                assert db.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)
            assert not p.problems, p.problems
    finally:
        server.stop()


IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


def test_installable_manifest_and_the_ios_home_screen_hint(bundle_dir, tmp_path, browser):
    store = tmp_path / "store.sqlite"
    server = start_server(bundle_dir, tmp_path, store=store, env=SERVER_ENV)
    try:
        manifest = httpx.get(f"{server.url}/app/manifest.webmanifest").json()
        assert manifest["display"] == "standalone" and manifest["theme_color"]
        pngs = {(i["sizes"], i["purpose"]) for i in manifest["icons"] if i["type"] == "image/png"}
        assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= pngs
        from io import BytesIO

        from PIL import Image
        for icon in manifest["icons"]:
            response = httpx.get(server.url + icon["src"])
            assert response.status_code == 200, icon
            if icon["type"] == "image/png":
                size = Image.open(BytesIO(response.content)).size
                assert f"{size[0]}x{size[1]}" == icon["sizes"]
        page_html = httpx.get(server.url + "/").text
        touch = re.search(r'rel="apple-touch-icon" href="([^"]+)"', page_html).group(1)
        assert httpx.get(server.url + touch).status_code == 200

        # Safari on an iPhone, not installed: the hint, and an honest fallback (no push)
        httpx.put(f"{server.url}/v1/stations/roof", headers=FEEDER,
                  json={**GREENSBORO, "elevation_m": 273.0})
        context = browser.new_context(user_agent=IPHONE, permissions=["notifications"],
                                      viewport={"width": 390, "height": 844})
        try:
            page = context.new_page()
            page.goto(f"{server.url}/?station=roof")
            page.get_by_label(re.compile("Tell me when it will be clear")).check()
            page.locator("#nudge-status").filter(has_text="while this page is open").wait_for(
                timeout=20_000)
            hint = page.locator("#install-hint")
            assert hint.is_visible() and "Add to Home Screen" in hint.inner_text()
        finally:
            context.close()
        with sqlite3.connect(store) as db:
            assert db.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)
    finally:
        server.stop()
