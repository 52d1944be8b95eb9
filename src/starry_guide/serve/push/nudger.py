"""The decider's passes: for each station with subscriptions, tonight's plan (its stored
nowcast, climatology after), the pushes due (:mod:`~starry_guide.serve.push.decider`),
claimed in the store (:meth:`~starry_guide.serve.push.subscriptions.PushStore.claim`:
exactly one sender per push), sent (:class:`~starry_guide.serve.push.sender.Sender`) and
settled: sent, retried next pass (no answer, 429, 5xx), or the subscription deleted (404,
410).

``starry serve`` runs :meth:`Nudger.run_forever` in each worker process: a pass for a
station right after the feed accepted a batch of its observations (:meth:`Nudger.poke`), and
a pass over every station each ``STARRY_NUDGE_INTERVAL_S`` seconds (300 by default), which
also expires subscriptions unseen for ``STARRY_PUSH_EXPIRE_DAYS`` days (30). ``starry nudge
--once`` runs one pass (cron, tests; ``--at`` pretends it is that time).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import os
import threading
import time
import weakref

from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool

from starry_guide.serve.planning import place
from starry_guide.serve.push import decider
from starry_guide.serve.push.sender import Outcome, Sender
from starry_guide.serve.push.subscriptions import Claim, PushStore
from starry_guide.serve.push.vapid import Keys
from starry_guide.serve.schemas import NightRequest, Station
from starry_guide.serve.service import Service, station_nowcast

log = logging.getLogger(__name__)

INTERVAL_ENV = "STARRY_NUDGE_INTERVAL_S"
EXPIRE_ENV = "STARRY_PUSH_EXPIRE_DAYS"
MAX_PER_NIGHT_ENV = "STARRY_PUSH_MAX_PER_NIGHT"
#: ``starry serve --no-nudge`` sets this to 0: the process answers the push API, sends nothing
ENABLED_ENV = "STARRY_NUDGE"
DEFAULT_INTERVAL_S = 300.0
DEFAULT_EXPIRE_DAYS = 30
#: pushes encrypted and posted at once
SEND_THREADS = 16


def _number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: use at least {minimum:g}")
    return value


#: the push counters of each registry: an app rebuilt around the same service (tests do)
#: counts on in the same counters instead of registering them twice
_COUNTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Counter, Counter, Counter]:
    if registry not in _COUNTERS:
        _COUNTERS[registry] = (
            Counter("starry_push_sent", "pushes the push services accepted",
                    registry=registry),
            Counter("starry_push_failed", "pushes not accepted (retried next pass unless "
                    "the subscription is gone)", ["reason"], registry=registry),
            Counter("starry_push_subscriptions_removed", "subscriptions the decider "
                    "deleted", ["reason"], registry=registry),
            Counter("starry_push_decider_runs", "decider passes", registry=registry))
    return _COUNTERS[registry]


def enabled() -> bool:
    """Whether this process runs the decider (``STARRY_NUDGE`` is not ``0``)."""
    return os.environ.get(ENABLED_ENV, "1").strip() != "0"


class Nudger:
    """One process's decider: its metrics live in the service's registry, its last pass is
    reported by :meth:`status` (``/healthz``)."""

    def __init__(self, service: Service, keys: Keys, *, sender: Sender | None = None,
                 interval_s: float | None = None, expire_days: float | None = None,
                 max_per_night: int | None = None):
        self.service = service
        self.keys = keys
        self.push = PushStore(service.store)
        self.sender = sender or Sender(keys)
        self.interval_s = (interval_s if interval_s is not None
                           else _number(INTERVAL_ENV, DEFAULT_INTERVAL_S, 1))
        self.expire_after = dt.timedelta(days=expire_days if expire_days is not None
                                         else _number(EXPIRE_ENV, DEFAULT_EXPIRE_DAYS, 1))
        self.max_per_night = int(max_per_night if max_per_night is not None
                                 else _number(MAX_PER_NIGHT_ENV,
                                              decider.DEFAULT_MAX_PER_NIGHT, 1))
        # a station's batch is delivered and settled in one of these threads, its pushes
        # encrypted and posted by the posters
        self._threads = concurrent.futures.ThreadPoolExecutor(4, "push-station")
        self._posters = concurrent.futures.ThreadPoolExecutor(SEND_THREADS, "push-post")
        self.sent, self.failed, self.removed, self.runs = _metrics(service.registry)
        self._dirty: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._status: dict = {"runs": 0, "last_run_at": None, "last_run_monotonic": None,
                              "last_duration_s": None, "last_stations": 0, "last_sent": 0,
                              "last_failed": 0, "last_error": None}

    # ------------------------------------------------------------------ one pass

    async def run_once(self, at: dt.datetime | None = None,
                       station_ids: list[str] | None = None) -> dict:
        """One pass over ``station_ids`` (default: every station with a subscription; a
        full pass also expires unseen subscriptions) at ``at`` (default: the server's
        clock). Returns counts: stations, claimed, sent, failed, gone, expired."""
        started = time.monotonic()
        now = (at or place.now()).astimezone(dt.UTC)
        report = {"stations": 0, "claimed": 0, "sent": 0, "failed": 0, "gone": 0,
                  "expired": 0}
        try:
            if station_ids is None:
                report["expired"] = await run_in_threadpool(self.push.expire,
                                                            self.expire_after)
                self.removed.labels("expired").inc(report["expired"])
                station_ids = await run_in_threadpool(self.push.stations)
            loop = asyncio.get_running_loop()
            sending: list[asyncio.Future] = []
            for station_id in station_ids:
                claimed = await self._claim(station_id, now)
                if claimed is None:
                    continue
                claims, name = claimed
                report["stations"] += 1
                report["claimed"] += len(claims)
                # the next station's plan is computed while these are on their way
                sending.append(loop.run_in_executor(self._threads, self._deliver, claims,
                                                    name, now))
            for outcome in await asyncio.gather(*sending):
                for key in ("sent", "failed", "gone"):
                    report[key] += outcome[key]
        except Exception as exc:
            self._record(started, now, report, f"{type(exc).__name__}: {exc}")
            raise
        self._record(started, now, report, None)
        return report

    async def _claim(self, station_id: str, now: dt.datetime
                     ) -> tuple[list[Claim], str | None] | None:
        if not await run_in_threadpool(self.push.has_subscriptions, station_id):
            return None
        station = await run_in_threadpool(self.service.store.station, station_id)
        if station is None:  # subscribed to a station no longer registered
            return None
        nowcast, _, _ = await station_nowcast(self.service, station)
        night = place.tonight(station["longitude"], now)
        plan = await self.service.night(NightRequest(
            station=Station(latitude=station["latitude"], longitude=station["longitude"],
                            elevation_m=station["elevation_m"]), date=night), nowcast=nowcast)
        windows = plan.model_dump(mode="json")["best_windows"]

        def due(subscription, delivered):
            return decider.due_window(windows, subscription, delivered, now,
                                      self.max_per_night)

        claims = await run_in_threadpool(self.push.claim, station_id, night, due)
        return claims, station["name"]

    def _deliver(self, claims: list[Claim], station_name: str | None,
                 now: dt.datetime) -> dict:
        """Send a station's claimed pushes (in a sending thread, several at once) and
        settle them in the store."""
        def one(claim: Claim) -> Outcome:
            window = claim.window
            subscription = claim.subscription
            message = decider.payload(subscription.station_id, station_name,
                                      claim.night, window, subscription.time_zone, now)
            return self.sender.send(
                subscription.as_webpush(), message, ttl=decider.ttl_seconds(window, now),
                topic=decider.topic(subscription.station_id, claim.night),
                urgency="high" if decider.starting_now(window, now) else "normal")

        outcomes = list(self._posters.map(one, claims))
        sent, retry, gone = [], [], []
        for claim, outcome in zip(claims, outcomes, strict=True):
            if outcome.delivered:
                sent.append(claim.delivery_id)
            elif outcome.gone:
                gone.append(claim.subscription.subscription_id)
            else:
                retry.append(claim.delivery_id)
                log.warning("push to subscription %s failed (%s); retried next pass",
                            claim.subscription.subscription_id,
                            outcome.error or f"HTTP {outcome.status}")
                self.failed.labels("no answer" if outcome.status is None
                                   else f"http {outcome.status}").inc()
        self.push.settle(sent, retry, gone)
        self.sent.inc(len(sent))
        if gone:
            self.failed.labels("gone").inc(len(gone))
            self.removed.labels("gone").inc(len(gone))
        return {"sent": len(sent), "failed": len(retry) + len(gone), "gone": len(gone)}

    def _record(self, started: float, now: dt.datetime, report: dict,
                error: str | None) -> None:
        self.runs.inc()
        with self._lock:
            self._status.update(
                runs=self._status["runs"] + 1,
                last_run_at=now.isoformat().replace("+00:00", "Z"),
                last_run_monotonic=time.monotonic(),
                last_duration_s=round(time.monotonic() - started, 3),
                last_stations=report["stations"], last_sent=report["sent"],
                last_failed=report["failed"], last_error=error)

    # ------------------------------------------------------------------ in the server

    def poke(self, station_id: str) -> None:
        """The feed accepted observations of ``station_id``: decide for it soon (call on
        the event loop)."""
        self._dirty.add(station_id)
        if self._wake is not None:
            self._wake.set()

    async def run_forever(self) -> None:
        """Passes for poked stations as they come, a full pass every ``interval_s``; a
        failing pass is logged and reported in :meth:`status`, and the loop goes on."""
        self._wake = asyncio.Event()
        next_full = time.monotonic()  # a full pass at start: catch up after a restart
        while True:
            wait = next_full - time.monotonic()
            if wait > 0 and not self._dirty:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            self._wake.clear()
            full = time.monotonic() >= next_full
            stations, self._dirty = sorted(self._dirty), set()
            try:
                await self.run_once(station_ids=None if full else stations)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reported in status(); the next pass retries
                log.exception("push decider pass failed")
                self._dirty.update(stations)
                await asyncio.sleep(min(30.0, self.interval_s))
            if full:
                next_full = time.monotonic() + self.interval_s

    def status(self) -> dict:
        """The decider's last pass, for ``/healthz``."""
        with self._lock:
            out = {k: v for k, v in self._status.items() if k != "last_run_monotonic"}
            last = self._status["last_run_monotonic"]
        out["last_run_age_s"] = None if last is None else round(time.monotonic() - last, 3)
        out["interval_s"] = self.interval_s
        out["state"] = "failing" if out["last_error"] else ("ok" if last else "not run yet")
        return out

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._posters.shutdown(wait=True)
        self.sender.close()
