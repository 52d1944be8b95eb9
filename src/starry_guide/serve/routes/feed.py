"""The observation feed and the station endpoints (an ``APIRouter`` included by the API).

A feeder (a METAR/SYNOP poller, a station's own logger, ``starry replay``) registers its
station and posts each new hourly observation; the service stores it idempotently per
(station, hour), updates that station's nowcast (recorded as a prediction like any other)
and the hour becomes the truth of every earlier prediction whose target time it is (see
:meth:`starry_guide.serve.store.database.Store.labelled_horizons`).

Writing endpoints need the feeder's bearer token (``Authorization: Bearer <token>``): the
server reads it from the file named by ``--feed-token-file`` (env ``STARRY_FEED_TOKEN_FILE``)
or from the env variable ``STARRY_FEED_TOKEN``; it is compared in constant time and never
logged. No token sent: 401; a wrong one: 403; no token configured on the server: 403 saying
how to configure one (the feed is off, which is a setting, not a server failure).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.deps import get_nudger, get_reads, get_service, require_feeder
from starry_guide.serve.reads import respond
from starry_guide.serve.schemas import (
    MAX_DATE,
    MIN_DATE,
    IngestResponse,
    NightResponse,
    NowcastResponse,
    ObservationBatch,
    StationId,
    StationInfo,
    StationRegistration,
)
from starry_guide.serve.service import unprocessable
from starry_guide.serve.store.database import UnknownStation

router = APIRouter(tags=["stations and feed"])
feeder_only = {401: {"description": "no feeder token"},
               403: {"description": "wrong feeder token, or none configured on the server"}}
#: the validators of a cached read (serve/reads.py), as documented
CACHED = {"headers": {
    "ETag": {"description": "weak tag of the answer; send it back in `If-None-Match`",
             "schema": {"type": "string"}},
    "Last-Modified": {"description": "when the answer's inputs last changed",
                      "schema": {"type": "string"}},
    "Cache-Control": {"description": "`public, max-age=N`: N seconds until the next "
                                     "expected change", "schema": {"type": "string"}}}}
not_modified = {304: {"description": "`If-None-Match` names the current answer: no body",
                      **CACHED}}


@router.put("/v1/stations/{station_id}", response_model=StationInfo,
            responses={**feeder_only, 201: {"description": "registered"}},
            dependencies=[Depends(require_feeder)])
def register_station(station_id: StationId, body: StationRegistration,
                     request: Request) -> JSONResponse:
    """Register a station (201) or update its place and name (200). Feeder token needed."""
    service = get_service(request)
    created = service.store.upsert_station(station_id, body.latitude, body.longitude,
                                           body.elevation_m, body.name)
    info = StationInfo(**service.store.station(station_id))
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/v1/stations", response_model=list[StationInfo])
def list_stations(request: Request) -> list[StationInfo]:
    """Every registered station."""
    return [StationInfo(**s) for s in get_service(request).store.stations()]


@router.post("/v1/stations/{station_id}/observations", response_model=IngestResponse,
             responses={**feeder_only, 404: {"description": "station not registered"}},
             dependencies=[Depends(require_feeder)])
async def post_observations(station_id: StationId, body: ObservationBatch,
                            request: Request) -> IngestResponse:
    """Store hourly observations of a registered station (idempotent per hour: a resent
    hour is unchanged, a changed one a correction) and update its nowcast. Feeder token
    needed."""
    service = get_service(request)
    seen = {}
    for i, o in enumerate(body.observations):
        t = o.time.astimezone(dt.UTC)
        where = ["body", "observations", i, "time"]
        if not MIN_DATE <= t.date() <= MAX_DATE:
            raise unprocessable(where, f"{t.isoformat()} is outside {MIN_DATE}..{MAX_DATE}, "
                                "the range of the bundled ephemeris")
        if t.minute or t.second or t.microsecond:
            raise unprocessable(where, f"{t.isoformat()} is not on the hour")
        if t in seen:
            raise unprocessable(where, f"{t.isoformat()} repeats observation {seen[t]}; send "
                                "each hour once")
        seen[t] = i
    rows = [{"time": o.time, **{c: getattr(o, c) for c in WEATHER_COLUMNS}}
            for o in body.observations]
    try:
        outcome = await run_in_threadpool(service.store.ingest_observations, station_id, rows)
    except UnknownStation as exc:
        raise HTTPException(404, detail=str(exc)) from None
    state = await get_reads(request).state(station_id)
    changed = outcome["new"] + outcome["corrected"]
    window_start = state.latest - dt.timedelta(hours=service.features.history_h)
    renew = any(t >= window_start for t in changed)
    # the nowcast is made here, once, and kept for this worker's reads of the station
    nowcast, updated, note = await get_reads(request).after_ingest(station_id, renew)
    nudger = get_nudger(request)
    if nudger is not None and changed:  # the plan may now hold a window to push
        nudger.poke(station_id)
    return IngestResponse(station_id=station_id, new=len(outcome["new"]),
                          unchanged=len(outcome["unchanged"]),
                          corrected=len(outcome["corrected"]), nowcast_updated=updated,
                          nowcast=nowcast, nowcast_note=note)


@router.get("/v1/stations/{station_id}/nowcast", response_model=NowcastResponse,
            responses={200: CACHED, **not_modified,
                       404: {"description": "station not registered"},
                       409: {"description": "not enough stored hours for a nowcast"}})
async def get_station_nowcast(station_id: StationId, request: Request) -> Response:
    """P(clear) 1-12 h after the station's latest stored hour: computed once per stored
    hour and model, then served as it is (`ETag`, `304` to a matching `If-None-Match`)."""
    reads = get_reads(request)
    return respond(request, await reads.station_nowcast(station_id),
                   again=lambda: reads.station_nowcast(station_id))


@router.get("/v1/stations/{station_id}/night", response_model=NightResponse,
            responses={200: CACHED, **not_modified,
                       404: {"description": "station not registered"}})
async def get_station_night(
    station_id: StationId, request: Request,
    date: Annotated[dt.date | Literal["tonight"], Query(
        description="the local date on which the night begins, or `tonight`")] = "tonight",
    dark_sky_mag: Annotated[float, Query(ge=15, le=22.5)] = 21.587,
) -> Response:
    """Tonight's timeline at the station: its stored nowcast where it reaches, climatology
    after. Computed once per stored hour, night and model (`ETag`, `304`)."""
    reads = get_reads(request)
    return respond(request, await reads.station_night(station_id, date, dark_sky_mag),
                   again=lambda: reads.station_night(station_id, date, dark_sky_mag))
