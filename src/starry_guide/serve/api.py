"""The real-time API (FastAPI): nowcasts, the night planner, user feedback, health and
Prometheus metrics. It predicts through onnxruntime from a verified bundle — it never
unpickles a model — and records every prediction (with its inputs) and feedback in the
serving store (:mod:`starry_guide.serve.store.database`).

Start it with ``starry serve`` (see the Serving page of the docs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import gc
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from starry_guide.artifacts.bundle import Bundle, BundleError
from starry_guide.config import ServeSettings
from starry_guide.core import astro, features, quality
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.http import errors
from starry_guide.serve.http.guard import RequestGuard
from starry_guide.serve.planning import place, planner
from starry_guide.serve.planning.night import NightResponse, Step, Window, assemble  # noqa: F401
from starry_guide.serve.routes import admin
from starry_guide.serve.store.database import (
    FeedbackExists,
    Prediction,
    Store,
    StoreCollector,
    UnknownPrediction,
)
from starry_guide.serve.web import docs_ui, webapp

#: request limits: what one client may ask of one call (the body limit is configurable:
#: params.yaml ``serve.max_body_bytes``; this is its default)
MAX_BODY_BYTES = ServeSettings().max_body_bytes
MAX_OBSERVATIONS = 240
MIN_DATE, MAX_DATE = astro.FIRST_DATE, astro.LAST_DATE
DARK_SKY_MAG = ("the site's moonless zenith sky brightness, V mag/arcsec²: 21.6 pristine, "
                "18-19 suburb, 16-17 city centre")


def bounds(name: str) -> dict[str, float]:
    """``ge``/``le`` of a field, from the one table of ranges in :mod:`starry_guide.core.quality`
    (weather: ``PHYSICAL_RANGES``; place: ``PLACE_RANGES``)."""
    lo, hi = (quality.PHYSICAL_RANGES | quality.PLACE_RANGES)[name]
    return {"ge": lo, "le": hi}


class Strict(BaseModel):
    # NaN and infinities are refused field by field ("Input should be a finite number")
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Station(Strict):
    latitude: float = Field(**bounds("latitude"), description="degrees, north positive",
                            examples=[36.1])
    longitude: float = Field(**bounds("longitude"), description="degrees, east positive",
                             examples=[-79.95])
    elevation_m: float = Field(0.0, **bounds("elevation_m"),
                               description="metres above sea level", examples=[273.0])


def _hour(time: str, opaque: float, total: float, temp: float, dew: float, rh: float,
          pressure: float, wind: float, direction: float, visibility: float,
          ceiling: float) -> dict:
    return {"time": time, "opaque_cloud_tenths": opaque, "total_cloud_tenths": total,
            "temp_air_c": temp, "temp_dew_c": dew, "relative_humidity": rh,
            "pressure_hpa": pressure, "wind_speed_ms": wind, "wind_direction_deg": direction,
            "visibility_km": visibility, "ceiling_m": ceiling, "precipitable_water_cm": 2.2}


#: seven real consecutive hours of Greensboro's TMY3 file (27 November, overcast)
NOWCAST_EXAMPLE = {
    "station": {"latitude": 36.1, "longitude": -79.95, "elevation_m": 273.0},
    "observations": [
        _hour("2001-11-27T12:00:00-05:00", 10, 10, 3.9, 3.3, 96, 994, 4.1, 30, 4.0, 183),
        _hour("2001-11-27T13:00:00-05:00", 10, 10, 4.4, 3.9, 97, 993, 5.2, 50, 4.0, 152),
        _hour("2001-11-27T14:00:00-05:00", 10, 10, 4.4, 3.9, 97, 992, 4.1, 40, 4.0, 122),
        _hour("2001-11-27T15:00:00-05:00", 10, 10, 4.4, 3.9, 97, 991, 5.2, 50, 2.4, 122),
        _hour("2001-11-27T16:00:00-05:00", 10, 10, 4.4, 3.9, 97, 991, 4.1, 40, 2.4, 91),
        _hour("2001-11-27T17:00:00-05:00", 10, 10, 3.9, 3.3, 96, 991, 4.1, 10, 2.4, 91),
        _hour("2001-11-27T18:00:00-05:00", 10, 10, 3.9, 3.3, 96, 991, 2.6, 10, 2.4, 61),
    ]}


class Observation(Strict):
    """One hourly observation; omitted or null fields are missing (the model copes)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [NOWCAST_EXAMPLE["observations"][0]]})

    time: AwareDatetime = Field(description="when observed, ISO 8601 with UTC offset, on the "
                                "hour", examples=["2001-11-27T12:00:00-05:00"])
    opaque_cloud_tenths: float | None = Field(
        None, **bounds("opaque_cloud_tenths"),
        description="opaque sky cover, tenths of sky (0-10)", examples=[3])
    total_cloud_tenths: float | None = Field(
        None, **bounds("total_cloud_tenths"),
        description="total sky cover, tenths of sky (0-10)", examples=[5])
    temp_air_c: float | None = Field(
        None, **bounds("temp_air_c"), description="air temperature, °C", examples=[9.4])
    temp_dew_c: float | None = Field(
        None, **bounds("temp_dew_c"), description="dew point, °C (above the air temperature "
        "+ 1 °C it is treated as missing, as in training)", examples=[2.2])
    relative_humidity: float | None = Field(
        None, **bounds("relative_humidity"), description="relative humidity, %",
        examples=[61])
    pressure_hpa: float | None = Field(
        None, **bounds("pressure_hpa"), description="station pressure, hPa", examples=[985])
    wind_speed_ms: float | None = Field(
        None, **bounds("wind_speed_ms"), description="wind speed, m/s", examples=[3.1])
    wind_direction_deg: float | None = Field(
        None, **bounds("wind_direction_deg"), description="wind direction, degrees from north",
        examples=[250])
    visibility_km: float | None = Field(
        None, **bounds("visibility_km"), description="horizontal visibility, km",
        examples=[16.1])
    ceiling_m: float | None = Field(
        None, **bounds("ceiling_m"),
        description="cloud ceiling, m above ground (unlimited = 20000)", examples=[20000])
    precipitable_water_cm: float | None = Field(
        None, **bounds("precipitable_water_cm"), description="precipitable water, cm",
        examples=[1.4])


class NowcastRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [NOWCAST_EXAMPLE]})

    station: Station
    observations: list[Observation] = Field(min_length=1, max_length=MAX_OBSERVATIONS,
                                            description="consecutive hours, oldest first: at "
                                            "least the latest 7 (the features' history + 1)")


class HorizonForecast(BaseModel):
    horizon_h: int = Field(ge=1, description="hours ahead of `issued_for`", examples=[1])
    target_time: dt.datetime = Field(description="the hour forecast, UTC",
                                     examples=["2001-11-28T00:00:00Z"])
    p_clear: float = Field(ge=0, le=1, description="probability that the sky is clear "
                           "(opaque cover ≤ 2 tenths) at `target_time`, 0-1", examples=[0.12])
    target_is_night: bool = Field(description="the sun is more than 12° below the horizon at "
                                  "`target_time` (the label is defined for night hours)",
                                  examples=[True])


class NowcastResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "prediction_id": "b89a9379a613443ca68edb6c9c3dc758", "model_version": "1",
        "issued_for": "2001-11-27T23:00:00Z",
        "forecasts": [{"horizon_h": 1, "target_time": "2001-11-28T00:00:00Z", "p_clear": 0.12,
                       "target_is_night": True}]}]})

    prediction_id: str = Field(description="id of the logged prediction, for "
                               "`POST /v1/feedback`",
                               examples=["b89a9379a613443ca68edb6c9c3dc758"])
    model_version: str = Field(description="registered version of the model served",
                               examples=["1"])
    issued_for: dt.datetime = Field(description="the latest observed hour, UTC",
                                    examples=["2001-11-27T23:00:00Z"])
    forecasts: list[HorizonForecast] = Field(description="one per horizon, 1-12 h")


class NightRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"station": NOWCAST_EXAMPLE["station"], "date": "2001-11-27",
         "observations": NOWCAST_EXAMPLE["observations"]},
        {"station": {"latitude": 52.52, "longitude": 13.4}, "date": "tonight"}]})

    station: Station
    date: dt.date | Literal["tonight"] = Field(
        "tonight", description="the local date on which the night begins, or `tonight`: the "
        "night in progress or coming at the place (from its local solar noon to the next)",
        examples=["2026-11-27", "tonight"])
    dark_sky_mag: float = Field(21.587, ge=15, le=22.5, description=DARK_SKY_MAG,
                                examples=[21.587])
    observations: list[Observation] = Field(
        default_factory=list, max_length=MAX_OBSERVATIONS,
        description="the station's latest consecutive hours, oldest first (optional): P(clear) "
        "for the next 12 hours then comes from the nowcast")


class FeedbackRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prediction_id": "b89a9379a613443ca68edb6c9c3dc758", "observed": "clear"}]})

    prediction_id: str = Field(min_length=1, max_length=64, description="the `prediction_id` "
                               "of a nowcast or night plan", examples=[
                                   "b89a9379a613443ca68edb6c9c3dc758"])
    observed: Literal["clear", "partly", "cloudy"] = Field(
        description="what the user saw", examples=["clear"])
    observed_at: AwareDatetime | None = Field(None, description="when (ISO 8601 with offset)",
                                              examples=["2001-11-27T23:30:00-05:00"])


class Health(BaseModel):
    """``/healthz``: liveness, the model served and the store's upkeep."""

    status: Literal["ok", "degraded"]
    model_version: str
    candidate: str | None = None
    store: dict = Field(description="`backend` and the state of its `maintenance`")


class FeedbackResponse(BaseModel):
    feedback_id: int = Field(description="id of the feedback record", examples=[1])
    prediction_id: str = Field(description="the prediction it is about",
                               examples=["b89a9379a613443ca68edb6c9c3dc758"])


def _unprocessable(location: list, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": location, "msg": message,
                                       "type": "value_error"}])


def recent_hours(station: Station, observations: list[Observation],
                 history_h: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Request observations -> the latest ``history_h + 1`` hours as the arrays
    :func:`starry_guide.core.features.hourly_feature_arrays` reads, after checking that all of
    them are on the hour, consecutive and enough for the features' history.

    Returns UTC epoch seconds and the input columns (missing values as NaN).
    """
    # offsets may differ between rows (a DST change): compare in UTC
    times = [o.time.astimezone(dt.UTC) for o in observations]
    seconds = np.array([int(t.timestamp()) for t in times], dtype=np.int64)
    for i, t in enumerate(times):
        if not MIN_DATE <= t.date() <= MAX_DATE:
            raise _unprocessable(["body", "observations", i, "time"],
                                 f"{t.isoformat()} is outside {MIN_DATE}..{MAX_DATE}, the "
                                 "range of the bundled ephemeris")
    off_the_hour = np.flatnonzero(seconds % 3600 != 0)
    if len(off_the_hour):
        i = int(off_the_hour[0])
        raise _unprocessable(["body", "observations", i, "time"],
                             f"{times[i].isoformat()} is not on the hour")
    not_consecutive = np.flatnonzero(np.diff(seconds) != 3600)
    if len(not_consecutive):
        i = int(not_consecutive[0]) + 1
        raise _unprocessable(["body", "observations", i, "time"],
                             f"{times[i].isoformat()} does not follow "
                             f"{times[i - 1].isoformat()} by one hour; send consecutive "
                             "hours, oldest first")
    if len(observations) < history_h + 1:
        raise _unprocessable(["body", "observations"],
                             f"{len(observations)} hour(s) sent; the model needs the latest "
                             f"{history_h + 1} consecutive hours")
    # the latest hour's features need only its history window
    recent = observations[-(history_h + 1):]
    seconds = seconds[-(history_h + 1):]
    values = np.array([[getattr(o, name) for name in WEATHER_COLUMNS] for o in recent],
                      dtype=float)
    columns = dict(zip(WEATHER_COLUMNS, values.T, strict=True))
    columns["latitude"] = np.full(len(recent), station.latitude)
    columns["longitude"] = np.full(len(recent), station.longitude)
    return seconds, columns


@dataclasses.dataclass(frozen=True)
class _Origin:
    """Where a nowcast request came from, as the store records it."""

    latitude: float
    longitude: float
    kind: str = "nowcast"
    station_id: str | None = None


class Service:
    """The loaded bundle, its feature settings, the serving store and the metrics."""

    def __init__(self, bundle: Bundle, store: Store,
                 max_station_km: float = place.DEFAULT_MAX_STATION_KM):
        self.bundle = bundle
        self.store = store
        #: beyond this distance a station's climatology is not used for a place
        self.max_station_km = max_station_km
        self.features = bundle.feature_settings
        columns = features.feature_columns(self.features)
        if columns != bundle.features:
            raise BundleError(f"{bundle.path}: the bundle's features differ from this code's "
                              "feature function; re-export it with `dvc repro` from this "
                              "version of Starry Guide")
        self.horizons = bundle.horizons
        self.target_sun_column = columns.index("target_sun_elevation_deg")
        self.night_max_sun = float(bundle.spec["night_max_sun_elevation_deg"])
        self.registry = CollectorRegistry()
        self.requests = Counter("starry_requests", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "starry_request_seconds", "request latency", ["endpoint"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.predictions = Counter("starry_predictions", "predictions served", ["horizon_h"],
                                   registry=self.registry)
        self.predictions_by_horizon = [self.predictions.labels(str(h)) for h in self.horizons]
        self._pending: list[tuple[_Origin, np.ndarray, dict, asyncio.Future]] = []
        # answered batches waiting for their commit, and the one thread that commits
        self._to_commit: list[tuple[list[Prediction], list[dict], list]] = []
        self._committing = False
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "store-writer")
        self.feedback = Counter("starry_feedback", "feedback received", ["observed"],
                                registry=self.registry)
        info = Gauge("starry_model_info", "the model being served", ["version", "candidate"],
                     registry=self.registry)
        info.labels(bundle.version, str(bundle.card.get("candidate", ""))).set(1)
        self.registry.register(StoreCollector(store))

    def forecast_many(self, requests: list[tuple[np.ndarray, dict[str, np.ndarray]]],
                      with_inputs: bool = False, station_ids: list[str | None] | None = None
                      ) -> list[dict] | tuple[list[dict], list[dict]]:
        """Nowcasts for several requests' latest hours (as :func:`recent_hours` returns
        them), as JSON-ready :class:`NowcastResponse` dicts, not yet logged: one pass of the
        feature core over all of them (each request is a run of its own), one onnxruntime
        call. ``with_inputs``: also each request's hourly feature values at issue time and the
        sun's elevation at its target hours."""
        lengths = np.array([len(seconds) for seconds, _ in requests])
        ends = np.cumsum(lengths)
        seconds = np.concatenate([seconds for seconds, _ in requests])
        columns = {name: np.concatenate([c[name] for _, c in requests])
                   for name in requests[0][1]}
        columns = quality.repair_inputs(columns)  # training's per-hour repairs
        run_start = np.zeros(len(seconds), dtype=bool)
        run_start[ends - lengths] = True
        hourly = features.hourly_feature_arrays(columns, seconds, run_start, self.features)
        last = ends - 1
        latest = {name: values[last] for name, values in hourly.items()}
        latest["longitude"] = columns["longitude"][last]
        matrix, _ = features.model_arrays(latest, seconds[last], self.horizons, self.features)
        p = self.bundle.predict_matrix(matrix).reshape(len(requests), -1)
        if station_ids is not None:  # a registered station's own recalibration, if it has one
            p = self.bundle.adapt(p, station_ids)
        p = p.tolist()
        target_sun = matrix[:, self.target_sun_column].reshape(len(requests), -1).tolist()
        nowcasts = []
        for issued_second, p_request, sun_request in zip(seconds[last].tolist(), p,
                                                         target_sun, strict=True):
            issued = dt.datetime.fromtimestamp(issued_second, dt.UTC)
            nowcasts.append({
                "prediction_id": uuid.uuid4().hex,
                "model_version": self.bundle.version,
                "issued_for": issued,
                "forecasts": [
                    {"horizon_h": h, "target_time": issued + dt.timedelta(hours=h),
                     "p_clear": round(pi, 6), "target_is_night": sun < self.night_max_sun}
                    for h, pi, sun in zip(self.horizons, p_request, sun_request, strict=True)],
            })
        if not with_inputs:
            return nowcasts
        names = list(latest)
        values = np.column_stack([np.asarray(latest[n], dtype=float) for n in names]).tolist()
        return nowcasts, [{"features": dict(zip(names, row, strict=True)), "target_sun": sun}
                          for row, sun in zip(values, target_sun, strict=True)]

    async def nowcast(self, station: Station, observations: list[Observation],
                      kind: str = "nowcast", station_id: str | None = None) -> dict:
        """P(clear) for each horizon (a :class:`NowcastResponse` as a dict), returned once
        the prediction is committed to the store.

        Requests that reach this point in the same turn of the event loop are answered
        together (dynamic batching): one feature pass and one onnxruntime call for all of
        them, scheduled right after the turn; their rows are committed by the store's writer
        thread, together with the other batches that arrived while the previous commit was
        on its way to disk (group commit), and only then answered.
        """
        seconds, columns = recent_hours(station, observations, self.features.history_h)
        return await self.nowcast_arrays(
            _Origin(station.latitude, station.longitude, kind, station_id), seconds, columns)

    async def nowcast_arrays(self, origin: _Origin, seconds: np.ndarray,
                             columns: dict[str, np.ndarray]) -> dict:
        """:meth:`nowcast` from checked arrays (as :func:`recent_hours` returns them)."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        self._pending.append((origin, seconds, columns, answered))
        if len(self._pending) == 1:  # the first of this turn schedules the batch
            loop.call_soon(self._answer_pending)
        return await answered

    def _answer_pending(self) -> None:
        batch, self._pending = self._pending, []
        try:
            nowcasts, inputs = self.forecast_many(
                [(seconds, columns) for _, seconds, columns, _ in batch], with_inputs=True,
                station_ids=[origin.station_id for origin, _, _, _ in batch])
            records = [
                Prediction(n["prediction_id"], self.bundle.version, origin.kind,
                           origin.latitude, origin.longitude, n["issued_for"],
                           [(f["horizon_h"], f["target_time"], f["p_clear"])
                            for f in n["forecasts"]],
                           station_id=origin.station_id, features=inputs_at_issue["features"],
                           target_sun_elevation_deg=inputs_at_issue["target_sun"])
                for n, inputs_at_issue, (origin, *_) in zip(nowcasts, inputs, batch,
                                                            strict=True)]
        except Exception as exc:  # noqa: BLE001 - every request of the batch fails with it
            self._settle([(None, batch)], exc)
            return
        self._to_commit.append((records, nowcasts, batch))
        if not self._committing:
            self._commit()

    def _commit(self) -> None:
        """Group commit: the batches answered while the previous commit was on its way to
        disk go in one transaction, in the store's writer thread — the event loop keeps
        validating and forecasting meanwhile."""
        groups, self._to_commit = self._to_commit, []
        self._committing = True
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(self._writer, self.store.log_predictions,
                                       [r for records, _, _ in groups for r in records])
        written.add_done_callback(lambda done: self._committed(done, groups))

    def _committed(self, done: asyncio.Future, groups: list) -> None:
        self._committing = False
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        self._settle([(nowcasts, batch) for _, nowcasts, batch in groups], error)
        if self._to_commit:
            self._commit()

    def _settle(self, groups: list, error: BaseException | None) -> None:
        """Answer the requests of committed batches, or fail them all with ``error``."""
        for nowcasts, batch in groups:
            if error is not None:
                for *_, answered in batch:
                    if not answered.done():  # done: the request was cancelled meanwhile
                        answered.set_exception(error)
                continue
            for counter in self.predictions_by_horizon:
                counter.inc(len(batch))
            for nowcast, (*_, answered) in zip(nowcasts, batch, strict=True):
                if not answered.done():
                    answered.set_result(nowcast)

    def close(self) -> None:
        """Close the store (called when the server shuts down, after the requests in
        flight were answered): the writer thread finishes its commit first."""
        self._writer.shutdown(wait=True)
        self.store.close()

    async def night(self, request: NightRequest, nowcast: dict | None = None
                    ) -> NightResponse:
        """The night's timeline; P(clear) from ``nowcast`` (a :class:`NowcastResponse` dict,
        e.g. a station's stored one) or from the request's observations where they reach,
        climatology elsewhere."""
        s = request.station
        date = (place.tonight(s.longitude, place.now())
                if request.date == "tonight" else request.date)
        if not MIN_DATE <= date <= MAX_DATE:
            raise _unprocessable(["date"], f"{date} is outside {MIN_DATE}..{MAX_DATE}, "
                                 "the range of the bundled ephemeris")
        times = planner.night_steps(s.latitude, s.longitude, date)
        climate = place.choose_climatology(self.bundle.climatology, s.latitude, s.longitude,
                                           self.max_station_km)
        p = place.p_clear_from_table(climate.table, s.longitude, times)
        source = climate.description
        prediction_id = None
        from_nowcast = np.zeros(len(times), dtype=bool)  # the steps the nowcast covers
        if nowcast is None and request.observations:
            nowcast = await self.nowcast(s, request.observations, kind="night")
        if nowcast is not None:
            prediction_id = nowcast["prediction_id"]
            hours = pd.DatetimeIndex([f["target_time"] for f in nowcast["forecasts"]])
            step_hour = times.floor("h")
            for hour, f in zip(hours, nowcast["forecasts"], strict=True):
                p = np.where(step_hour == hour, f["p_clear"], p)
            from_nowcast = np.asarray(step_hour.isin(hours))
            if from_nowcast.any():  # a stored nowcast may end before the night
                source = f"nowcast for the next {len(hours)} h, then {source}"
        return assemble(latitude=s.latitude, longitude=s.longitude, elevation_m=s.elevation_m,
                        date=date, times=times, p_clear=p, p_clear_source=source,
                        climate=climate, dark_sky_mag=request.dark_sky_mag,
                        model_version=self.bundle.version, prediction_id=prediction_id,
                        from_nowcast=from_nowcast)


def json_body(model: type[BaseModel]) -> Callable[[Request], Awaitable[BaseModel]]:
    """A dependency that validates the request body straight from its JSON bytes.

    pydantic-core parses and validates in one pass (``model_validate_json``), where a
    FastAPI body parameter first builds Python objects with ``json.loads`` — measured on a
    nowcast body, an endpoint that only validates kept 73 % of a bare endpoint's throughput
    this way and 43 % FastAPI's way. Errors are FastAPI's usual 422 with ``loc`` starting
    at ``body``; :mod:`starry_guide.serve.http.errors` makes them safe to send.
    """

    async def validated(request: Request) -> BaseModel:
        raw = await request.body()
        try:
            # strict: a boolean or a numeric string is not a number (JSON has those types)
            return model.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])}
                 for error in exc.errors(include_url=False)], body=raw) from None

    return validated


def body_schema(model: type[BaseModel]) -> dict:
    """``openapi_extra`` declaring ``model`` as the required JSON body."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
        "example": (model.model_config.get("json_schema_extra") or {}).get("examples", [None])[0],
    }}}}


class Metrics:
    """ASGI middleware: counts responses by endpoint and status and times the ``/v1/``
    endpoints — every response, the guard's refusals included.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every request in
    extra tasks and streams (measured: a pass-through one left a bare endpoint 40 % of its
    throughput).
    """

    ENDPOINTS = frozenset({"/v1/nowcast", "/v1/night", "/v1/feedback", "/healthz",
                           "/metrics", "/docs", "/openapi.json"})

    def __init__(self, app, service: Service):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # unknown paths share one label: a scanner must not blow up the metrics' cardinality
        endpoint = scope["path"] if scope["path"] in self.ENDPOINTS else "other"
        start = time.perf_counter()
        status = 500

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            if endpoint.startswith("/v1/"):
                self.service.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.service.requests.labels(endpoint, str(status)).inc()


def create_app(service: Service, limits: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application around a loaded :class:`Service`, guarded by ``limits``
    (default: :class:`~starry_guide.config.ServeSettings`' defaults, CORS off)."""
    limits = limits or ServeSettings()
    place.start_clock()  # STARRY_CLOCK_START (tests, demos): a bad value stops here

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # everything loaded so far (pandas, skyfield, onnxruntime, the bundle) lives as long
        # as the process: keep it out of the cyclic GC's full collections, which otherwise
        # walk those millions of objects in the middle of requests
        gc.collect()
        gc.freeze()
        yield
        # uvicorn has drained the requests in flight (SIGTERM): close the store cleanly
        service.close()

    app = FastAPI(title="Starry Guide", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Will the night sky be clear in the next 1-12 hours, and when "
                              "is the best time to look up?")
    app.state.service = service
    app.include_router(docs_ui.router)  # /docs: Swagger UI from the package's own files

    errors.install(app)
    # outermost last: the metrics see every reply, CORS headers go on the guard's refusals too
    from starry_guide.serve.routes import feed  # it imports this module

    try:
        feeder = feed.load_token()  # the feeder is not rate-limited
    except feed.FeedTokenError:
        feeder = None  # the feed itself says why it is off
    app.add_middleware(RequestGuard, limits=limits, trusted_token=feeder)
    if limits.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(limits.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"],
                           max_age=600)
    app.add_middleware(Metrics, service=service)
    app.include_router(feed.router)
    from starry_guide.serve.routes.events import router as events_router  # it imports this module
    app.include_router(events_router)
    app.include_router(admin.router)  # POST /v1/admin/reload

    too_large = {413: {"description": f"request body over {limits.max_body_bytes} bytes"}}
    invalid = {422: {"description": "Validation Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}

    def openapi() -> dict:
        # the JSON bodies parsed by json_body() are documented here, where FastAPI's own
        # body parameters would have put them
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (NowcastRequest, NightRequest, FeedbackRequest):
                model_schema = model.model_json_schema(
                    ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = errors.document(schema)  # every 4xx/503 the service sends
        return app.openapi_schema

    app.openapi = openapi

    # CPU-bound handlers run on the event loop: in a thread pool they would only contend for
    # the GIL (measured: 10 clients got half the throughput of one)
    @app.post("/v1/nowcast", response_model=NowcastResponse,
              responses={**too_large, **invalid}, openapi_extra=body_schema(NowcastRequest))
    async def nowcast(body: Annotated[NowcastRequest, Depends(json_body(NowcastRequest))]
                      ) -> Response:
        """P(clear sky) at each hour 1-12 ahead of the latest observation."""
        nowcast = await service.nowcast(body.station, body.observations)
        # built with the response's types: serialise once instead of re-validating
        return Response(to_json(nowcast), media_type="application/json")

    @app.get("/v1/night", response_model=NightResponse)
    async def night(
        lat: Annotated[float, Query(**bounds("latitude"), description="latitude, degrees north",
                                    examples=[36.1])],
        lon: Annotated[float, Query(**bounds("longitude"), description="longitude, degrees east",
                                    examples=[-79.95])],
        date: Annotated[dt.date | Literal["tonight"], Query(
            description="local date the night begins (YYYY-MM-DD), or `tonight`",
            examples=["tonight"])] = "tonight",
        elevation_m: Annotated[float, Query(**bounds("elevation_m"),
                                            description="metres above sea level")] = 0.0,
        dark_sky_mag: Annotated[float, Query(ge=15, le=22.5, description=DARK_SKY_MAG)
                                ] = 21.587,
    ) -> NightResponse:
        """Tonight's plan for a place from climatology (no observations): the nearest
        station's record within the server's distance limit, else a latitude/season prior,
        said so in `climatology`."""
        return await service.night(NightRequest(
            station=Station(latitude=lat, longitude=lon, elevation_m=elevation_m), date=date,
            dark_sky_mag=dark_sky_mag))

    @app.post("/v1/night", response_model=NightResponse,
              responses={**too_large, **invalid}, openapi_extra=body_schema(NightRequest))
    async def night_with_observations(
        body: Annotated[NightRequest, Depends(json_body(NightRequest))],
    ) -> NightResponse:
        """Tonight's timeline, with P(clear) nowcast from recent observations."""
        return await service.night(body)

    @app.post("/v1/feedback", response_model=FeedbackResponse,
              responses={**too_large, **invalid, 404: {"description": "unknown prediction_id"},
                         409: {"description": "this prediction already has feedback"}},
              openapi_extra=body_schema(FeedbackRequest))
    def feedback(body: Annotated[FeedbackRequest, Depends(json_body(FeedbackRequest))]
                 ) -> FeedbackResponse:
        """What the user actually saw (once per prediction): a signal for monitoring,
        independent of the feed's observations."""
        try:
            feedback_id = service.store.add_feedback(body.prediction_id, body.observed,
                                                     body.observed_at)
        except UnknownPrediction as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except FeedbackExists as exc:
            raise HTTPException(409, detail=str(exc)) from None
        service.feedback.labels(body.observed).inc()
        return FeedbackResponse(feedback_id=feedback_id, prediction_id=body.prediction_id)

    @app.get("/healthz", response_model=Health, responses={503: {
        "model": Health, "description": "the store's maintenance is failing (`status` = "
                                        "`degraded`)"}})
    def healthz() -> Response:
        """Liveness, the model being served and the store's upkeep (503 while the store's
        maintenance is failing)."""
        maintenance = service.store.maintenance.status()
        failing = maintenance["state"] == "failing"
        return JSONResponse({"status": "degraded" if failing else "ok",
                             "model_version": service.bundle.version,
                             "candidate": service.bundle.card.get("candidate"),
                             "store": {"backend": service.store.dialect,
                                       "maintenance": maintenance}},
                            status_code=503 if failing else 200)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    webapp.install(app)  # the web app at /
    return app


def app_from_environment() -> FastAPI:
    """The app for one of several uvicorn worker processes (``starry serve --workers N``):
    the bundle, store and limits come from ``STARRY_BUNDLE``, ``STARRY_STORE_URL`` and
    ``STARRY_SERVE_SETTINGS``, set by ``starry serve`` after it has checked them. The worker
    exits (gracefully) when its supervisor dies."""
    import os
    from pathlib import Path

    from starry_guide.artifacts.bundle import load_bundle
    from starry_guide.serve import process
    from starry_guide.serve.store import database as store

    supervisor = os.environ.get(process.SUPERVISOR_VARIABLE)
    process.die_with_parent(int(supervisor) if supervisor else None)
    opened = Store(os.environ[store.URL_ENV],
                   location_decimals=int(os.environ.get("STARRY_STORE_LOCATION_DECIMALS",
                                                        store.LOCATION_DECIMALS)),
                   retention_days=int(os.environ.get("STARRY_STORE_RETENTION_DAYS", 0)))
    return create_app(Service(load_bundle(Path(os.environ["STARRY_BUNDLE"])), opened,
                              max_station_km=float(os.environ.get(
                                  "STARRY_MAX_STATION_KM", place.DEFAULT_MAX_STATION_KM))),
                      process.settings_from_environment())
