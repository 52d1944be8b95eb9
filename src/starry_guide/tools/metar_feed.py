"""``starry metar feed``: real METAR reports into the service's observation feed.

Sources (``--source``):

* a file: raw METAR text or WMO bulletins, or a NOAA LCD file (told by its ``STATION,DATE``
  header; :mod:`starry_guide.ingest.lcd`);
* a URL: the Aviation Weather Center's data API (``https://aviationweather.gov/api/data/metar``
  with ``ids=...&format=raw&hours=...``: one report per line, routine and special), or any
  server answering the same way (a test's loopback server).

The API client (:class:`AwcClient`) keeps to the service's documented manners: at most
:data:`MIN_INTERVAL_S` between two requests for the same URL (it asks that no endpoint be
polled more than once a minute) and at most 100 requests a minute overall, answers cached
for that interval, a custom User-Agent, and on 429 or 5xx it backs off (``Retry-After`` when
given, else exponential with a cap) for a bounded number of tries.

Every report goes through the contract of :mod:`starry_guide.ingest.metar`; each station
is registered (``PUT /v1/stations/{id}``, ICAO id, coordinates from the station table) and
its hours are posted one by one (:func:`starry_guide.tools.replay.replay`), so each hour
updates the station's nowcast as a live feeder's would.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from starry_guide.ingest import lcd, metar
from starry_guide.tools.replay import ReplayError, ReplayStats, replay

#: the service asks that no endpoint be polled more often than once a minute
MIN_INTERVAL_S = 60.0
#: and allows 100 requests a minute per client
MAX_PER_MINUTE = 100
USER_AGENT = "starry-guide-metar-feed/1 (+https://github.com/starry-guide)"
AWC_URL = "https://aviationweather.gov/api/data/metar"


class FeedError(RuntimeError):
    """The source cannot be read or the server refuses the feed; the message says why."""


@dataclass
class AwcClient:
    """A polite client of the Aviation Weather Center data API (or a server like it).

    ``clock`` and ``sleep`` are injectable so that a test can count the waits without
    waiting; by default they are the real ones.
    """

    base_url: str = AWC_URL
    min_interval_s: float = MIN_INTERVAL_S
    max_per_minute: int = MAX_PER_MINUTE
    max_tries: int = 5
    backoff_s: float = 2.0
    backoff_cap_s: float = 120.0
    timeout_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    requests_sent: int = 0
    waits: list[float] = field(default_factory=list)
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)
    _sent_at: list[float] = field(default_factory=list)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waits.append(seconds)
            self.sleep(seconds)

    def _respect_rate(self) -> None:
        now = self.clock()
        self._sent_at = [t for t in self._sent_at if now - t < 60.0]
        if len(self._sent_at) >= self.max_per_minute:
            self._wait(60.0 - (now - self._sent_at[0]))

    def fetch(self, ids: list[str], hours: int) -> str:
        """The raw reports of ``ids`` over the last ``hours`` (one per line).

        A repeated request within ``min_interval_s`` is answered from the cache.

        Raises
        ------
        FeedError
            after ``max_tries`` answers of 429/5xx, on a 4xx, or when the server is out of
            reach.
        """
        import httpx

        params = {"ids": ",".join(ids), "format": "raw", "hours": str(hours)}
        key = f"{self.base_url}?{sorted(params.items())}"
        cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] < self.min_interval_s:
            return cached[1]
        delay = self.backoff_s
        with httpx.Client(timeout=self.timeout_s, headers={"User-Agent": USER_AGENT},
                          follow_redirects=True) as client:
            for attempt in range(1, self.max_tries + 1):
                self._respect_rate()
                self._sent_at.append(self.clock())
                self.requests_sent += 1
                try:
                    response = client.get(self.base_url, params=params)
                except httpx.HTTPError as exc:
                    raise FeedError(f"cannot reach {self.base_url}: {exc}") from None
                if response.status_code == 204:  # the API's "no reports"
                    self._cache[key] = (self.clock(), "")
                    return ""
                if response.status_code == 429 or response.status_code >= 500:
                    if attempt == self.max_tries:
                        raise FeedError(
                            f"{self.base_url} answered {response.status_code} {self.max_tries} "
                            "times; try again later (the service limits requests to 100 a "
                            "minute and one a minute per endpoint)")
                    retry_after = response.headers.get("Retry-After", "")
                    wait = float(retry_after) if retry_after.isdigit() else delay
                    self._wait(min(wait, self.backoff_cap_s))
                    delay = min(delay * 2, self.backoff_cap_s)
                    continue
                if response.status_code >= 400:
                    raise FeedError(f"{self.base_url} refused the request "
                                    f"({response.status_code}): {response.text[:200]}")
                self._cache[key] = (self.clock(), response.text)
                return response.text
        raise FeedError("unreachable")  # pragma: no cover - the loop returns or raises


def read_source(source: str, *, until: dt.datetime, ids: list[str] | None = None,
                hours: int = 24, client: AwcClient | None = None) -> metar.Conversion:
    """Reports from a file or URL (module docstring) -> the contract's hourly frame."""
    if source.startswith(("http://", "https://")):
        if not ids:
            raise FeedError(f"--source {source}: name the stations to ask for (--ids KATL,...)")
        client = client or AwcClient(base_url=source)
        text = client.fetch(ids, hours)
        return metar.convert_text([(source, text)], until)
    path = Path(source)
    if not path.is_file():
        raise FeedError(f"--source {source}: no such file (give a METAR/bulletin text file, "
                        "an LCD CSV, or an http(s) URL)")
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.lstrip(b"\xef\xbb\xbf").startswith(b'"STATION"') or \
            head.lstrip(b"\xef\xbb\xbf").startswith(b"STATION,"):
        try:
            return lcd.read_lcd(path)
        except lcd.LcdError as exc:
            raise FeedError(str(exc)) from None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FeedError(f"{path}: cannot read it ({exc})") from None
    return metar.convert_text([(path.name, text)], until)


def feed(conversion: metar.Conversion, url: str, token: str, *,
         only: list[str] | None = None,
         progress: Callable[[ReplayStats], None] | None = None) -> dict[str, ReplayStats]:
    """Register each station of the frame and post its hours, oldest first."""
    frame = conversion.frame
    if only:
        frame = frame[frame["station_id"].isin(only)]
    if frame.empty:
        raise FeedError("no usable hours to send" + (
            f" (rejected: {conversion.summary()})" if conversion.rejected else ""))
    places = metar.station_table()
    done = {}
    for station_id, hours in frame.groupby("station_id", sort=True):
        hours = hours.sort_values("time").reset_index(drop=True)
        hours["time"] = pd.to_datetime(hours["time"], utc=True)
        place = places[station_id]
        if pd.isna(hours["elevation_m"].iloc[0]):
            raise FeedError(f"{station_id}: the station table has no elevation for it; the "
                            "service needs one to register the station")
        station = {"station_id": station_id, "latitude": float(place.latitude),
                   "longitude": float(place.longitude),
                   "elevation_m": float(hours["elevation_m"].iloc[0]),
                   "name": f"{place.name} (METAR)"[:200]}
        try:
            done[station_id] = replay(hours, hours, station, url, token, progress=progress)
        except ReplayError as exc:
            raise FeedError(str(exc)) from None
    return done
