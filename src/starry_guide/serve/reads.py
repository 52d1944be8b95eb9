"""Station reads computed once: the answers of ``GET /v1/stations/{id}/nowcast``,
``GET /v1/stations/{id}/night`` and ``GET /v1/night``, kept by what they are computed from,
with HTTP validators.

Most of the app's traffic asks for the same few answers — everyone near a station reads its
nowcast and tonight's plan — and those change only when a new observation (or a new model)
arrives. So each worker keeps the answers it computed, keyed by their inputs:

* a station's answers by its :class:`~starry_guide.serve.store.database.StationState` — its
  row and its latest hours' span, count and latest arrival, read from the store in one
  indexed query — and the model version. The store is the only thing workers and hosts
  share, so an observation accepted by any of them changes the key every other one reads
  next: no message between processes, nothing to invalidate. On SQLite the query itself is
  skipped while ``PRAGMA data_version`` says nobody committed since it was last made;
* a place's plan (climatology only) by the place rounded as the store keeps places
  (``location_decimals``, 0.01° ≈ 1 km: everyone in that square shares one plan), its
  elevation, the night, the sky brightness and the model version.

An answer is computed by the first request that needs it (or, for a station's nowcast, by
the observation that made it), once: concurrent requests for it wait for that one. Every
answer carries a weak ``ETag`` (a hash of its key, the same on every host), ``Last-Modified``
(when its inputs last changed) and ``Cache-Control: public, max-age`` until the next
expected change — for a station, its next hourly observation — and a request whose
``If-None-Match`` names the current tag gets ``304 Not Modified`` without a body.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import email.utils
import hashlib
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from starry_guide.serve.planning import place
from starry_guide.serve.schemas import NightRequest, NowcastResponse, Station
from starry_guide.serve.service import Service, station_nowcast
from starry_guide.serve.store.database import StationState

#: the longest a client may keep an answer without asking again: a new model may come any
#: time, and a place's plan from climatology has no observation to wait for
MAX_AGE_S = 3600
#: a station whose next hour is overdue (the feed is late): clients look again this soon
OVERDUE_MAX_AGE_S = 60
#: how often a station's observations are expected
OBSERVATION_INTERVAL = dt.timedelta(hours=1)
#: answers kept per worker (least recently used out first): a night plan is ~15 KB, so at
#: most ~60 MB per worker
MAX_ANSWERS = 4096


@dataclasses.dataclass(frozen=True)
class Answer:
    """One computed answer: ``value`` as the service made it (kept for a nowcast, which a
    station's plan is built from; None for a plan, whose bytes are all that is needed), the
    JSON ``body`` sent, and its validators. ``expires``: when it is expected to change
    (None: not announced, :data:`MAX_AGE_S`)."""

    value: dict | None
    body: bytes
    etag: str
    last_modified: str
    expires: dt.datetime | None

    def max_age(self, now: dt.datetime) -> int:
        """Seconds a client may keep this answer, seen at ``now``."""
        if self.expires is None:
            return MAX_AGE_S
        left = (self.expires - now).total_seconds()
        return OVERDUE_MAX_AGE_S if left <= 0 else min(MAX_AGE_S, int(left))


def entity_tag(key: tuple) -> str:
    """A weak entity tag for an answer's key: equal keys, equal tags, on any host (the key
    holds only stored values, the request's parameters and the model version)."""
    return 'W/"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'


def http_date(instant: dt.datetime) -> str:
    return email.utils.format_datetime(instant.astimezone(dt.UTC), usegmt=True)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110
    13.1.2: the ``W/`` prefixes do not count; ``*`` matches any current answer)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == opaque
               for tag in if_none_match.split(","))


def respond(request: Request, answer: Answer,
            again: Callable[[], Awaitable[Answer]] | None = None) -> Response:
    """The answer with its validators, or ``304`` when the client already holds it.

    ``again``: how to find this answer for the same request (path and query string) next
    time — :class:`ReadShortcut` then answers it without FastAPI's routing and parameter
    validation, which this request has just passed."""
    if again is not None:
        request.app.state.reads.remember(request.scope, again)
    headers = {"ETag": answer.etag, "Last-Modified": answer.last_modified,
               "Cache-Control": f"public, max-age={answer.max_age(place.now())}"}
    if matches(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


class ReadShortcut:
    """ASGI middleware, inside the request guard and the metrics: a ``GET`` whose exact path
    and query string were answered by a cached read before goes straight to that read —
    the same answer, headers and 304 as through the route (the read still checks the
    station's state), without FastAPI's routing, dependencies and parameter validation,
    which cost as much as the rest of a cached read. Anything else, and any read that
    fails (404, 409, the store), goes through the app as usual."""

    def __init__(self, app, reads: Reads):
        self.app = app
        self.reads = reads

    async def __call__(self, scope, receive, send) -> None:
        read = (self.reads.shortcuts.get((scope["path"], scope["query_string"]))
                if scope["type"] == "http" and scope["method"] == "GET" else None)
        if read is not None:
            try:
                answer = await read()
            except Exception:  # noqa: BLE001 - the app answers it (and says why)
                answer = None
            if answer is not None:
                await self._send(scope, answer, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _send(scope, answer: Answer, send) -> None:
        headers = [(b"etag", answer.etag.encode()),
                   (b"last-modified", answer.last_modified.encode()),
                   (b"cache-control",
                    f"public, max-age={answer.max_age(place.now())}".encode())]
        if_none_match = next((value.decode("latin-1") for name, value in scope["headers"]
                              if name == b"if-none-match"), None)
        if matches(if_none_match, answer.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-length", str(len(answer.body)).encode()),
                    (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


def tonight_ends(longitude: float, date: dt.date) -> dt.datetime:
    """When the night that begins on ``date`` stops being "tonight" at ``longitude``: local
    solar noon of the next day (see :func:`starry_guide.serve.planning.place.tonight`)."""
    noon = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(12), dt.UTC)
    return noon - dt.timedelta(hours=longitude / 15.0)


class Reads:
    """One worker's computed station and place answers (see the module docstring)."""

    def __init__(self, service: Service, max_answers: int = MAX_ANSWERS):
        self.service = service
        self.max_answers = max_answers
        self._answers: collections.OrderedDict[tuple, Answer] = collections.OrderedDict()
        self._computing: dict[tuple, asyncio.Future] = {}
        #: SQLite: station -> (data_version when read, its state)
        self._states: dict[str, tuple[int, StationState | None]] = {}
        #: model version -> when this worker first answered with it
        self._model_since: dict[str, dt.datetime] = {}
        self.computed = 0  #: answers computed (not found) — for the tests and the docs
        #: (path, query string) of a GET answered before -> how to find its answer again
        self.shortcuts: dict[tuple[str, bytes], Callable[[], Awaitable[Answer]]] = {}

    def remember(self, scope: dict, again: Callable[[], Awaitable[Answer]]) -> None:
        """Let :class:`ReadShortcut` answer this request's path and query string with
        ``again`` from now on."""
        if len(self.shortcuts) >= self.max_answers:
            self.shortcuts.clear()
        self.shortcuts[scope["path"], scope["query_string"]] = again

    # ------------------------------------------------------------------ inputs

    async def state(self, station_id: str) -> StationState:
        """The station's state in the store now (404 when it is not registered)."""
        store = self.service.store
        hours = self.service.features.history_h + 1
        if store.dialect == "sqlite":  # a local file: read on the event loop, no thread hop
            version = store.data_version()
            known = self._states.get(station_id)
            if known is not None and known[0] == version:
                state = known[1]
            else:
                state = store.station_state(station_id, hours)
                if len(self._states) >= self.max_answers:
                    self._states.clear()
                self._states[station_id] = (version, state)
        else:
            state = await run_in_threadpool(store.station_state, station_id, hours)
        if state is None:
            raise HTTPException(404, detail=f"station {station_id!r} is not registered")
        return state

    def _since(self, version: str) -> dt.datetime:
        return self._model_since.setdefault(version, dt.datetime.now(dt.UTC))

    def _tonight(self, longitude: float, date: dt.date | str) -> tuple[dt.date, bool]:
        if date == "tonight":
            return place.tonight(longitude, place.now()), True
        return date, False

    # ------------------------------------------------------------------ answers

    async def _once(self, key: tuple, compute: Callable[[], Awaitable[Answer]]) -> Answer:
        """The answer for ``key``: kept, being computed (wait for it), or computed now."""
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
            return answer
        pending = self._computing.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            answer = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # the waiters (if any) raise it; nobody else needs to
            raise
        finally:
            del self._computing[key]
        future.set_result(answer)
        self._keep(key, answer)
        return answer

    def _keep(self, key: tuple, answer: Answer) -> None:
        self.computed += 1
        self._answers[key] = answer
        while len(self._answers) > self.max_answers:
            self._answers.popitem(last=False)

    def _answer(self, key: tuple, value: dict | None, body: bytes, changed: dt.datetime,
                expires: dt.datetime | None) -> Answer:
        modified = max(changed, self._since(self.service.bundle.version))
        return Answer(value, body, entity_tag(key), http_date(modified), expires)

    def _nowcast_key(self, state: StationState) -> tuple:
        return ("nowcast", state.station["station_id"], state.key, self.service.bundle.version)

    def _nowcast_answer(self, state: StationState, nowcast: dict) -> Answer:
        body = NowcastResponse.model_validate(nowcast).model_dump_json().encode()
        expires = None if state.latest is None else state.latest + OBSERVATION_INTERVAL
        return self._answer(self._nowcast_key(state), nowcast, body, state.changed_at,
                            expires)

    async def station_nowcast(self, station_id: str,
                              state: StationState | None = None) -> Answer:
        """The station's nowcast (404: not registered; 409: not enough stored hours)."""
        state = state or await self.state(station_id)

        async def compute() -> Answer:
            nowcast, _, note = await station_nowcast(self.service, state.station)
            if nowcast is None:
                raise HTTPException(409, detail=f"no nowcast for station {station_id!r}: "
                                                f"{note}")
            return self._nowcast_answer(state, nowcast)

        return await self._once(self._nowcast_key(state), compute)

    async def after_ingest(self, station_id: str, renew: bool
                           ) -> tuple[dict | None, bool, str | None]:
        """After observations were stored: the station's nowcast (renewed when ``renew``),
        as :func:`~starry_guide.serve.service.station_nowcast` returns it, kept for the
        reads that follow. The state is read first: should another observation arrive
        meanwhile, the answer kept under this key is newer than the key, never older."""
        state = await self.state(station_id)
        nowcast, updated, note = await station_nowcast(self.service, state.station,
                                                       renew=renew)
        if nowcast is not None:
            self._keep(self._nowcast_key(state), self._nowcast_answer(state, nowcast))
        return nowcast, updated, note

    async def station_night(self, station_id: str, date: dt.date | str,
                            dark_sky_mag: float) -> Answer:
        """Tonight's (or ``date``'s) plan at the station, from its nowcast where it
        reaches (404: not registered)."""
        state = await self.state(station_id)
        s = state.station
        night, is_tonight = self._tonight(s["longitude"], date)
        key = ("night", station_id, state.key, self.service.bundle.version, night,
               dark_sky_mag)

        async def compute() -> Answer:
            try:
                nowcast = (await self.station_nowcast(station_id, state)).value
            except HTTPException as exc:
                if exc.status_code != 409:
                    raise
                nowcast = None  # no nowcast yet: climatology all night
            plan = await self.service.night(NightRequest(
                station=Station(latitude=s["latitude"], longitude=s["longitude"],
                                elevation_m=s["elevation_m"]),
                date=night, dark_sky_mag=dark_sky_mag), nowcast=nowcast)
            expires = None if state.latest is None else state.latest + OBSERVATION_INTERVAL
            if is_tonight:
                ends = tonight_ends(s["longitude"], night)
                expires = ends if expires is None else min(expires, ends)
            return self._answer(key, None, plan.model_dump_json().encode(), state.changed_at,
                                expires)

        return await self._once(key, compute)

    async def place_night(self, latitude: float, longitude: float, elevation_m: float,
                          date: dt.date | str, dark_sky_mag: float) -> Answer:
        """Tonight's (or ``date``'s) plan for a place from climatology, for the place
        rounded as the store keeps places."""
        decimals = self.service.store.location_decimals
        latitude, longitude = round(latitude, decimals), round(longitude, decimals)
        night, is_tonight = self._tonight(longitude, date)
        version = self.service.bundle.version
        key = ("place", latitude, longitude, elevation_m, night, dark_sky_mag, version)

        async def compute() -> Answer:
            plan = await self.service.night(NightRequest(
                station=Station(latitude=latitude, longitude=longitude,
                                elevation_m=elevation_m),
                date=night, dark_sky_mag=dark_sky_mag))
            return self._answer(key, None, plan.model_dump_json().encode(), self._since(version),
                                tonight_ends(longitude, night) if is_tonight else None)

        return await self._once(key, compute)
