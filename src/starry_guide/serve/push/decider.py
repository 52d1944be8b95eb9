"""The nudge rules — pure functions of a station's plan, a subscription and its ledger:
which window is due (:func:`due_window`), quiet hours, and the push's payload and headers.

A window is due for a subscription when it is a *clear window* by the one rule of the events
stream (:func:`starry_guide.serve.planning.planner.counts`: mean P(clear) at least the
subscription's ``min_probability``, and backed by the nowcast — climatology alone never
nudges), lasts at least ``min_minutes``, has not ended, and

- is not already in the subscription's ledger for the night: a window within
  :data:`HYSTERESIS` of one pushed before is the same window (a window flickering open and
  shut, or shifting by a step as the plan is refreshed, does not push again);
- the night's cap (:data:`DEFAULT_MAX_PER_NIGHT` pushes per subscription) is not reached;
- it is not quiet hours in the subscription's time zone (the window then waits: if it is
  still ahead when the quiet hours end, it is pushed).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starry_guide.serve.planning import planner
from starry_guide.serve.push.subscriptions import Delivered, Subscription

#: a window this close to one already pushed (either side) is the same window
HYSTERESIS = dt.timedelta(hours=1)
DEFAULT_MAX_PER_NIGHT = 2
#: a window starting within this is "starting now": pushed with ``Urgency: high``
STARTING_NOW = dt.timedelta(minutes=15)
#: the shortest TTL sent (a push service may drop a message with TTL 0 at once)
MIN_TTL_S = 60


def instant(value: str | dt.datetime) -> dt.datetime:
    """An ISO 8601 string (``Z`` or offset) or aware datetime, as aware UTC."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(dt.UTC)


def minutes_of_day(hh_mm: str) -> int:
    """``"22:30"`` -> 1350."""
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def in_quiet_hours(now: dt.datetime, time_zone: str, start: str | None,
                   end: str | None) -> bool:
    """Whether ``now`` falls in the quiet hours ``start``..``end`` (local ``HH:MM``, end
    excluded; ``22:00``..``07:00`` spans midnight; equal or missing: none)."""
    if not start or not end or start == end:
        return False
    local = now.astimezone(ZoneInfo(time_zone))
    minute = local.hour * 60 + local.minute
    first, last = minutes_of_day(start), minutes_of_day(end)
    if first < last:
        return first <= minute < last
    return minute >= first or minute < last


def _near(start: dt.datetime, end: dt.datetime, before: Delivered) -> bool:
    return start < before.end + HYSTERESIS and before.start - HYSTERESIS < end


def due_window(windows: Sequence[dict], subscription: Subscription,
               delivered: Sequence[Delivered], now: dt.datetime,
               max_per_night: int = DEFAULT_MAX_PER_NIGHT) -> dict | None:
    """The window of tonight's plan (``best_windows``, best first) to push to
    ``subscription`` now, or None (see the module docstring)."""
    if len(delivered) >= max_per_night:
        return None
    if in_quiet_hours(now, subscription.time_zone, subscription.quiet_start,
                      subscription.quiet_end):
        return None
    for window in windows:
        if not planner.counts(window, subscription.min_probability):
            continue
        if window["minutes"] < subscription.min_minutes:
            continue
        start, end = instant(window["start"]), instant(window["end"])
        if end <= now or any(_near(start, end, d) for d in delivered):
            continue
        return window
    return None


def starting_now(window: dict, now: dt.datetime) -> bool:
    return instant(window["start"]) <= now + STARTING_NOW


def topic(station_id: str, night: dt.date) -> str:
    """The ``Topic`` of a station's night (RFC 8030 §5.4: at most 32 URL-safe base64
    characters): a newer push of the same night replaces one not yet delivered."""
    digest = hashlib.sha256(f"{station_id}/{night.isoformat()}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def ttl_seconds(window: dict, now: dt.datetime) -> int:
    """``TTL``: until the window starts (a nudge for a window that has begun is worth
    delivering until it ends)."""
    start, end = instant(window["start"]), instant(window["end"])
    until = start if start > now + STARTING_NOW else end
    return max(MIN_TTL_S, int((until - now).total_seconds()))


def payload(station_id: str, station_name: str | None, night: dt.date, window: dict,
            time_zone: str, now: dt.datetime) -> dict:
    """The push's JSON (encrypted on the way): the window, and what the notification
    shows — times in the subscription's time zone."""
    zone = ZoneInfo(time_zone)
    start, end = instant(window["start"]), instant(window["end"])
    name = station_name or station_id
    percent = f"{round(100 * window['mean_p_clear'])} %"
    span = f"{start.astimezone(zone):%H:%M}–{end.astimezone(zone):%H:%M}"
    if starting_now(window, now):
        title = f"Clear sky now at {name}"
        body = f"Look up until {end.astimezone(zone):%H:%M} ({percent} clear)."
    else:
        title = f"Clear window tonight at {name}"
        body = f"{span}, {percent} clear."
    return {"station": station_id, "night": night.isoformat(),
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": end.isoformat().replace("+00:00", "Z"),
            "mean_p_clear": round(float(window["mean_p_clear"]), 4),
            "title": title, "body": body, "tag": f"starry-{station_id}-{night.isoformat()}",
            "url": f"/?station={quote(station_id)}"}
