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
import hmac
import os
import stat
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.api import (
    MAX_DATE,
    MIN_DATE,
    NightRequest,
    NightResponse,
    NowcastResponse,
    Observation,
    Service,
    Station,
    Strict,
    _Origin,
    _unprocessable,
    bounds,
)
from starry_guide.serve.store.database import UnknownStation

TOKEN_ENV = "STARRY_FEED_TOKEN"
TOKEN_FILE_ENV = "STARRY_FEED_TOKEN_FILE"
MIN_TOKEN_CHARS = 16
#: hours one feed request may carry
MAX_FEED_OBSERVATIONS = 720

StationId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                     description="letters, digits, '_', '.', '-'; 1-64")]


class FeedTokenError(ValueError):
    """The configured feed token is unusable (the message says why and what to do)."""


def load_token(token_file: str | os.PathLike | None = None) -> str | None:
    """The feeder token: from ``token_file`` (or the file named by ``STARRY_FEED_TOKEN_FILE``)
    if given, else from ``STARRY_FEED_TOKEN``; None when neither is set.

    Raises
    ------
    FeedTokenError
        an unreadable, group/world-readable or empty file, or a token under 16 characters.
    """
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FeedTokenError(f"feed token file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise FeedTokenError(f"feed token file {path} is readable by others; "
                                 f"`chmod 600 {path}`")
        source = f"feed token file {path}"
    else:
        token = (os.environ.get(TOKEN_ENV) or "").strip()
        source = f"env {TOKEN_ENV}"
        if not token:
            return None
    if len(token) < MIN_TOKEN_CHARS:
        raise FeedTokenError(f"{source}: the token has {len(token)} characters; use at least "
                             f"{MIN_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`)")
    return token


_NOT_LOADED = object()


def require_feeder(request: Request) -> None:
    """Dependency: the request carries the configured feeder token."""
    token = getattr(request.app.state, "feed_token", _NOT_LOADED)
    if token is _NOT_LOADED:
        try:
            token = load_token()
        except FeedTokenError as exc:
            raise HTTPException(403, detail=f"the feed is off: {exc}") from None
        request.app.state.feed_token = token
    if token is None:
        raise HTTPException(403, detail=(
            "the feed is off: no feeder token is configured on this server; start it with "
            f"--feed-token-file FILE or set {TOKEN_ENV} (at least {MIN_TOKEN_CHARS} characters)"))
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        raise HTTPException(401, detail="send the feeder token as 'Authorization: Bearer "
                                        "<token>'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise HTTPException(403, detail="the feeder token is not valid")


class StationRegistration(Strict):
    latitude: float = Field(**bounds("latitude"), description="degrees, north positive")
    longitude: float = Field(**bounds("longitude"), description="degrees, east positive")
    elevation_m: float = Field(0.0, **bounds("elevation_m"), description="metres")
    name: str | None = Field(None, max_length=200)


class StationInfo(BaseModel):
    station_id: str
    latitude: float
    longitude: float
    elevation_m: float
    name: str | None
    registered_at: dt.datetime
    updated_at: dt.datetime


class ObservationBatch(Strict):
    observations: list[Observation] = Field(
        min_length=1, max_length=MAX_FEED_OBSERVATIONS,
        description="hourly observations, any order, each hour once; need not be consecutive")


class IngestResponse(BaseModel):
    station_id: str
    new: int = Field(description="hours stored for the first time")
    unchanged: int = Field(description="hours resent with the values already stored")
    corrected: int = Field(description="hours whose values changed (the previous ones kept)")
    nowcast_updated: bool
    nowcast: NowcastResponse | None = Field(description="the station's current nowcast")
    nowcast_note: str | None = Field(None, description="why there is no nowcast")


router = APIRouter(tags=["stations and feed"])
feeder_only = {401: {"description": "no feeder token"},
               403: {"description": "wrong feeder token, or none configured on the server"}}


def _service(request: Request) -> Service:
    return request.app.state.service


def _station_or_404(service: Service, station_id: str) -> dict:
    station = service.store.station(station_id)
    if station is None:
        raise HTTPException(404, detail=f"station {station_id!r} is not registered")
    return station


def _stored_nowcast(service: Service, prediction: dict) -> dict:
    """A stored prediction as a :class:`NowcastResponse` dict."""
    return {
        "prediction_id": prediction["prediction_id"],
        "model_version": prediction["model_version"],
        "issued_for": prediction["issued_for"],
        "forecasts": [{"horizon_h": f["horizon_h"], "target_time": f["target_time"],
                       "p_clear": f["p_clear"],
                       "target_is_night": (f["target_sun_elevation_deg"] is not None and
                                           f["target_sun_elevation_deg"]
                                           < service.night_max_sun)}
                      for f in prediction["forecasts"]],
    }


async def station_nowcast(service: Service, station: dict, renew: bool = False
                          ) -> tuple[dict | None, bool, str | None]:
    """The station's nowcast for its latest stored hour: the stored one when it is for that
    hour and this model (unless ``renew``), else a new one, recorded.

    Returns the nowcast (or None), whether it is new, and why there is none.
    """
    need = service.features.history_h + 1
    rows = await run_in_threadpool(service.store.recent_observations, station["station_id"],
                                   need)
    if not rows:
        return None, False, "no observations stored yet"
    latest = rows[-1]["time"]
    seconds = np.array([int(r["time"].timestamp()) for r in rows], dtype=np.int64)
    if len(rows) < need or seconds[-1] - seconds[0] != 3600 * (need - 1):
        return None, False, (f"the model needs the latest {need} consecutive hours; the "
                             f"station has fewer up to {latest.isoformat()}")
    if not renew:
        stored = await run_in_threadpool(service.store.latest_prediction,
                                         station["station_id"])
        if (stored is not None and stored["issued_for"] == latest
                and stored["model_version"] == service.bundle.version):
            return _stored_nowcast(service, stored), False, None
    values = np.array([[np.nan if r[c] is None else r[c] for c in WEATHER_COLUMNS]
                       for r in rows], dtype=float)
    columns = dict(zip(WEATHER_COLUMNS, values.T, strict=True))
    columns["latitude"] = np.full(len(rows), station["latitude"])
    columns["longitude"] = np.full(len(rows), station["longitude"])
    origin = _Origin(station["latitude"], station["longitude"], "nowcast",
                     station["station_id"])
    return await service.nowcast_arrays(origin, seconds, columns), True, None


@router.put("/v1/stations/{station_id}", response_model=StationInfo,
            responses={**feeder_only, 201: {"description": "registered"}},
            dependencies=[Depends(require_feeder)])
def register_station(station_id: StationId, body: StationRegistration,
                     request: Request) -> JSONResponse:
    """Register a station (201) or update its place and name (200). Feeder token needed."""
    service = _service(request)
    created = service.store.upsert_station(station_id, body.latitude, body.longitude,
                                           body.elevation_m, body.name)
    info = StationInfo(**service.store.station(station_id))
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/v1/stations", response_model=list[StationInfo])
def list_stations(request: Request) -> list[StationInfo]:
    """Every registered station."""
    return [StationInfo(**s) for s in _service(request).store.stations()]


@router.post("/v1/stations/{station_id}/observations", response_model=IngestResponse,
             responses={**feeder_only, 404: {"description": "station not registered"}},
             dependencies=[Depends(require_feeder)])
async def post_observations(station_id: StationId, body: ObservationBatch,
                            request: Request) -> IngestResponse:
    """Store hourly observations of a registered station (idempotent per hour: a resent
    hour is unchanged, a changed one a correction) and update its nowcast. Feeder token
    needed."""
    service = _service(request)
    seen = {}
    for i, o in enumerate(body.observations):
        t = o.time.astimezone(dt.UTC)
        where = ["body", "observations", i, "time"]
        if not MIN_DATE <= t.date() <= MAX_DATE:
            raise _unprocessable(where, f"{t.isoformat()} is outside {MIN_DATE}..{MAX_DATE}, "
                                 "the range of the bundled ephemeris")
        if t.minute or t.second or t.microsecond:
            raise _unprocessable(where, f"{t.isoformat()} is not on the hour")
        if t in seen:
            raise _unprocessable(where, f"{t.isoformat()} repeats observation {seen[t]}; send "
                                 "each hour once")
        seen[t] = i
    rows = [{"time": o.time, **{c: getattr(o, c) for c in WEATHER_COLUMNS}}
            for o in body.observations]
    try:
        outcome = await run_in_threadpool(service.store.ingest_observations, station_id, rows)
    except UnknownStation as exc:
        raise HTTPException(404, detail=str(exc)) from None
    station = await run_in_threadpool(_station_or_404, service, station_id)
    changed = outcome["new"] + outcome["corrected"]
    latest = await run_in_threadpool(service.store.recent_observations, station_id, 1)
    window_start = latest[-1]["time"] - dt.timedelta(hours=service.features.history_h)
    renew = any(t >= window_start for t in changed)
    nowcast, updated, note = await station_nowcast(service, station, renew=renew)
    return IngestResponse(station_id=station_id, new=len(outcome["new"]),
                          unchanged=len(outcome["unchanged"]),
                          corrected=len(outcome["corrected"]), nowcast_updated=updated,
                          nowcast=nowcast, nowcast_note=note)


@router.get("/v1/stations/{station_id}/nowcast", response_model=NowcastResponse,
            responses={404: {"description": "station not registered"},
                       409: {"description": "not enough stored hours for a nowcast"}})
async def get_station_nowcast(station_id: StationId, request: Request) -> NowcastResponse:
    """P(clear) 1-12 h after the station's latest stored hour."""
    service = _service(request)
    station = await run_in_threadpool(_station_or_404, service, station_id)
    nowcast, _, note = await station_nowcast(service, station)
    if nowcast is None:
        raise HTTPException(409, detail=f"no nowcast for station {station_id!r}: {note}")
    return NowcastResponse(**nowcast)


@router.get("/v1/stations/{station_id}/night", response_model=NightResponse,
            responses={404: {"description": "station not registered"}})
async def get_station_night(
    station_id: StationId, request: Request,
    date: Annotated[dt.date | Literal["tonight"], Query(
        description="the local date on which the night begins, or `tonight`")] = "tonight",
    dark_sky_mag: Annotated[float, Query(ge=15, le=22.5)] = 21.587,
) -> NightResponse:
    """Tonight's timeline at the station: its stored nowcast where it reaches, climatology
    after."""
    service = _service(request)
    station = await run_in_threadpool(_station_or_404, service, station_id)
    nowcast, _, _ = await station_nowcast(service, station)
    request_ = NightRequest(station=Station(latitude=station["latitude"],
                                            longitude=station["longitude"],
                                            elevation_m=station["elevation_m"]),
                            date=date, dark_sky_mag=dark_sky_mag)
    return await service.night(request_, nowcast=nowcast)
