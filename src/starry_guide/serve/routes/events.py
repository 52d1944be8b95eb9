"""Live updates for a station: ``GET /v1/stations/{station_id}/events``, a Server-Sent
Events stream (an ``APIRouter`` included by the API).

Events are derived from the **serving store**, not from an in-process bus: each open stream
polls the store for the station's latest nowcast (one indexed query every
``STARRY_EVENTS_POLL_S`` seconds, 2 by default), so an observation accepted by any worker
process — or any machine sharing a PostgreSQL store — reaches every client. When the
nowcast changes, the stream sends

``nowcast``
    the new nowcast's id, the hour it was issued for, tonight's verdict and best windows;
``window_opened`` / ``window_closed``
    computed server-side by comparing tonight's plan before and after (:func:`window_changes`):
    a clear best window — mean P(clear) at least 50 % *and* backed by the nowcast (at least
    one of its steps within the nowcast's reach, ``nowcast_minutes`` > 0) — that overlaps
    none of the previous plan's clear windows has opened (a new window, or one that the
    nowcast made clear); a previous one that overlaps none of the new plan's has closed.
    A window whose P(clear) comes from climatology alone (beyond the nowcast's 12 hours, or
    a station without a nowcast) is a seasonal prior, not a forecast that the sky will be
    clear: it neither opens nor closes, nor hides a window the nowcast opens. Windows
    already over (ended before the new nowcast's first hour, or before now) are not
    reported. So every client (the web app, a native app) nudges the same way.

A comment line (``: heartbeat``) goes out after 15 s of silence (``STARRY_EVENTS_HEARTBEAT_S``),
so proxies keep the connection open and a dead client is noticed; the stream ends when the
client disconnects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from starry_guide.serve.deps import get_service
from starry_guide.serve.planning import place, planner
from starry_guide.serve.service import Service, station_plan
from starry_guide.serve.store.database import StoreUnavailable

POLL_ENV = "STARRY_EVENTS_POLL_S"
HEARTBEAT_ENV = "STARRY_EVENTS_HEARTBEAT_S"
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_HEARTBEAT_SECONDS = 15.0
#: how long a browser waits before reconnecting a dropped stream (ms, sent as `retry:`)
RETRY_MS = 3000

router = APIRouter(tags=["stations and feed"])


def _seconds(name: str, default: float) -> float:
    try:
        return max(0.1, float(os.environ.get(name, default)))
    except ValueError:
        return default


def poll_seconds() -> float:
    """The store polling interval (``STARRY_EVENTS_POLL_S``, seconds, at least 0.1)."""
    return _seconds(POLL_ENV, DEFAULT_POLL_SECONDS)


def heartbeat_seconds() -> float:
    """Silence before a heartbeat comment (``STARRY_EVENTS_HEARTBEAT_S``, default 15 s)."""
    return _seconds(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS)


def _overlaps(a: dict, b: dict) -> bool:
    return str(a["start"]) < str(b["end"]) and str(b["start"]) < str(a["end"])


def _instant(value: str | dt.datetime) -> dt.datetime:
    instant = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.astimezone(dt.UTC)


#: the one clear-window rule, shared with the push decider (:mod:`starry_guide.serve.push`)
counts = planner.counts


def window_changes(before: list[dict], after: list[dict],
                   min_p_clear: float = planner.GO_MIN_P_CLEAR, *,
                   since: str | dt.datetime | None = None
                   ) -> tuple[list[dict], list[dict]]:
    """Clear windows that opened and closed between two plans of the same night.

    Only windows that count (:func:`counts`: mean P(clear) at least ``min_p_clear`` and
    backed by the nowcast) take part. Opened: a counting window of ``after`` that overlaps
    no counting window of ``before`` — a new window, or one the nowcast made clear (a
    window of climatology alone before, however clear, hides nothing); closed: a counting
    window of ``before`` that overlaps no counting window of ``after``. With ``since``
    (an instant: the new nowcast's first hour, or now), windows that end by then are over
    and not reported either way — the plan's past hours fall back to climatology, which
    must not read as a window closing. Times are ISO 8601 UTC strings (``Z``), which order
    as the instants do.
    """
    good_before = [w for w in before if counts(w, min_p_clear)]
    good_after = [w for w in after if counts(w, min_p_clear)]
    opened = [w for w in good_after if not any(_overlaps(w, b) for b in good_before)]
    closed = [w for w in good_before if not any(_overlaps(w, a) for a in good_after)]
    if since is not None:
        cutoff = _instant(since)
        opened = [w for w in opened if _instant(w["end"]) > cutoff]
        closed = [w for w in closed if _instant(w["end"]) > cutoff]
    return opened, closed


def _station(service: Annotated[Service, Depends(get_service)], station_id: str) -> dict:
    station = service.store.station(station_id)
    if station is None:
        raise HTTPException(404, detail=f"station {station_id!r} is not registered")
    return station


def _version(service: Service, station_id: str) -> str | None:
    latest = service.store.latest_prediction(station_id)
    return None if latest is None else latest["prediction_id"]


def _over_before(nowcast: dict | None) -> dt.datetime:
    """The instant before which a window is over for the events: the nowcast's first hour
    (the hours before it are observed, planned from climatology) or now, the later."""
    now = place.now()
    if not nowcast or not nowcast["forecasts"]:
        return now
    return max(now, _instant(min(f["target_time"] for f in nowcast["forecasts"])))


async def station_events(service: Service, station: dict, request: Request,
                         poll: float, heartbeat: float = DEFAULT_HEARTBEAT_SECONDS
                         ) -> AsyncIterator[ServerSentEvent]:
    """The event stream of one client (see the module docstring)."""
    station_id = station["station_id"]
    seen: str | None | object = object()  # nothing seen yet: the first poll sends a nowcast
    windows: list[dict] | None = None
    night_of: str | None = None
    quiet_since = time.monotonic()
    first = True
    while not await request.is_disconnected():
        try:
            version = await run_in_threadpool(_version, service, station_id)
            if version != seen:
                nowcast, plan = await station_plan(service, station)
        except StoreUnavailable:
            # the database is away (restarting, unreachable): keep the stream open and look
            # again at the next poll, instead of dropping every client at once
            await asyncio.sleep(poll)
            continue
        if version != seen:
            # the plan may have made the first nowcast of a fed station: that is this version
            seen = nowcast["prediction_id"] if nowcast else version
            payload = {"station_id": station_id, "date": plan["date"],
                       "prediction_id": plan["prediction_id"],
                       "issued_for": nowcast["issued_for"].isoformat().replace("+00:00", "Z")
                       if nowcast else None,
                       "updated_at": place.now().isoformat().replace("+00:00", "Z"),
                       "p_clear_source": plan["p_clear_source"], "tonight": plan["tonight"],
                       "best_windows": plan["best_windows"]}
            yield ServerSentEvent(event="nowcast", data=payload, id=str(seen),
                                  retry=RETRY_MS if first else None)
            first = False
            if windows is not None and night_of == plan["date"]:
                opened, closed = window_changes(windows, plan["best_windows"],
                                                since=_over_before(nowcast))
                for kind, changed in (("window_opened", opened), ("window_closed", closed)):
                    for window in changed:
                        yield ServerSentEvent(event=kind, data={
                            "station_id": station_id, "date": plan["date"],
                            "prediction_id": plan["prediction_id"], "window": window})
            windows, night_of = plan["best_windows"], plan["date"]
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= heartbeat:
            yield ServerSentEvent(comment="heartbeat")
            quiet_since = time.monotonic()
        await asyncio.sleep(poll)


@router.get("/v1/stations/{station_id}/events", response_class=EventSourceResponse,
            responses={404: {"description": "station not registered"},
                       200: {"description": "`text/event-stream` of `nowcast`, "
                             "`window_opened` and `window_closed` events (JSON data)"}})
async def events(request: Request, station: Annotated[dict, Depends(_station)]
                 ) -> AsyncIterator[ServerSentEvent]:
    """Live updates for a station as Server-Sent Events: a `nowcast` event on connect and
    whenever the station's nowcast changes (a new or corrected observation from the feed),
    `window_opened`/`window_closed` when tonight's clear windows change (mean P(clear) at
    least 50 % where the nowcast reaches: a window of climatology alone does not count),
    a heartbeat comment every 15 s of silence."""
    async for event in station_events(get_service(request), station, request,
                                      poll_seconds(), heartbeat_seconds()):
        yield event
