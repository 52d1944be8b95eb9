"""The service: the loaded bundle, the serving store and the metrics, and what the routes
ask of them — nowcasts (batched, logged before they are answered), station nowcasts from
stored hours, and night plans. Forecasts go through the one inference chain
(:mod:`starry_guide.core.inference`); no route builds features itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import math
import operator

import numpy as np
import pandas as pd
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.concurrency import run_in_threadpool

from starry_guide.artifacts.bundle import Bundle, BundleError
from starry_guide.core import features, inference, profiles
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.planning import place, planner
from starry_guide.serve.planning.night import NightResponse, assemble
from starry_guide.serve.schemas import MAX_DATE, MIN_DATE, NightRequest, Observation, Station
from starry_guide.serve.store.database import (
    Prediction,
    Store,
    StoreCollector,
    new_prediction_id,
)


def unprocessable(location: list, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": location, "msg": message,
                                       "type": "value_error"}])


#: the bundled ephemeris's range as UTC epoch seconds: [its first day, the day after its last)
FIRST_SECOND = int(dt.datetime.combine(MIN_DATE, dt.time(), dt.UTC).timestamp())
END_SECOND = int(dt.datetime.combine(MAX_DATE + dt.timedelta(days=1), dt.time(),
                                     dt.UTC).timestamp())
_weather_values = operator.attrgetter(*WEATHER_COLUMNS)


def recent_hours(station: Station, observations: list[Observation],
                 history_h: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Request observations -> the latest ``history_h + 1`` hours as the arrays
    :func:`starry_guide.core.features.hourly_feature_arrays` reads, after checking that all of
    them are on the hour, consecutive and enough for the features' history.

    Returns UTC epoch seconds and the input columns (missing values as NaN).
    """
    # epoch seconds are UTC whatever the offsets (a DST change between rows); the checks
    # run on them, and only a refusal converts a time back to say which (this runs for
    # every nowcast: datetime conversions per hour cost more than the checks). Plain Python
    # over the few hours of a request: a dozen NumPy calls on 10-value arrays cost ~25 µs,
    # these loops a few (in order: the ephemeris's range, the hour, consecutive hours)
    stamps = [o.time.timestamp() for o in observations]
    for i, stamp in enumerate(stamps):
        if not FIRST_SECOND <= math.floor(stamp) < END_SECOND:
            raise unprocessable(["body", "observations", i, "time"],
                                f"{_utc(observations[i])} is outside {MIN_DATE}..{MAX_DATE}, "
                                "the range of the bundled ephemeris")
    seconds = [int(stamp) for stamp in stamps]  # whole seconds: int(timestamp) truncates
    for i, second in enumerate(seconds):
        if second % 3600:
            raise unprocessable(["body", "observations", i, "time"],
                                f"{_utc(observations[i])} is not on the hour")
    for i in range(1, len(seconds)):
        if seconds[i] - seconds[i - 1] != 3600:
            raise unprocessable(["body", "observations", i, "time"],
                                f"{_utc(observations[i])} does not follow "
                                f"{_utc(observations[i - 1])} by one hour; send consecutive "
                                "hours, oldest first")
    if len(observations) < history_h + 1:
        raise unprocessable(["body", "observations"],
                            f"{len(observations)} hour(s) sent; the model needs the latest "
                            f"{history_h + 1} consecutive hours")
    # the latest hour's features need only its history window
    recent = observations[-(history_h + 1):]
    seconds = np.array(seconds[-(history_h + 1):], dtype=np.int64)
    values = np.array([_weather_values(o) for o in recent], dtype=float)
    columns = dict(zip(WEATHER_COLUMNS, values.T, strict=True))
    columns["latitude"] = np.full(len(recent), station.latitude)
    columns["longitude"] = np.full(len(recent), station.longitude)
    return seconds, columns


def _utc(observation: Observation) -> str:
    return observation.time.astimezone(dt.UTC).isoformat()


@functools.lru_cache(maxsize=4096)
def _issue_times(issued_second: int, horizons: tuple[int, ...]
                 ) -> tuple[dt.datetime, tuple[dt.datetime, ...]]:
    """The issue hour (UTC epoch seconds) as an aware UTC datetime, and its target hours.

    Cached: most requests of a batch, and of an hour, are issued for the same latest hour,
    and building thirteen datetimes per answer was a visible share of the answers' cost
    (py-spy on ``POST /v1/nowcast``); datetimes are immutable, so answers may share them.
    """
    issued = dt.datetime.fromtimestamp(issued_second, dt.UTC)
    return issued, tuple(issued + dt.timedelta(hours=h) for h in horizons)


@dataclasses.dataclass(frozen=True)
class Origin:
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
        self._pending: list[tuple[Origin, np.ndarray, dict, asyncio.Future]] = []
        # answered batches waiting for their commit, and the one thread that commits
        self._to_commit: list[tuple[list[Prediction], list[dict], list]] = []
        self._committing = False
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "store-writer")
        self.feedback = Counter("starry_feedback", "feedback received", ["observed"],
                                registry=self.registry)
        # serve/nowcast_shortcut.py: answered itself, failed in the service (answered by the
        # app's error handlers), or passed to the app (a body the route validates again)
        self.nowcast_shortcut = Counter(
            "starry_nowcast_shortcut", "POST /v1/nowcast requests seen by the shortcut",
            ["outcome"], registry=self.registry)
        self.model_info = Gauge("starry_model_info", "the model being served",
                                ["version", "candidate"], registry=self.registry)
        self.model_info.labels(bundle.version, str(bundle.card.get("candidate", ""))).set(1)
        self.registry.register(StoreCollector(store))

    def swap(self, bundle: Bundle) -> None:
        """Serve ``bundle`` from now on. Checks first that this code builds its features (as
        at start); raises :class:`BundleError` and changes nothing otherwise. No ``await``
        inside: on the event loop, requests see the old model or the new, never half."""
        settings = bundle.feature_settings
        columns = features.feature_columns(settings)
        if columns != bundle.features:
            raise BundleError(f"{bundle.path}: the bundle's features differ from this code's "
                              "feature function; the current model stays")
        self.features = settings
        self.horizons = bundle.horizons
        self.target_sun_column = columns.index("target_sun_elevation_deg")
        self.night_max_sun = float(bundle.spec["night_max_sun_elevation_deg"])
        # the Prometheus gauge names the model being served
        self.model_info.labels(self.bundle.version,
                               str(self.bundle.card.get("candidate", ""))).set(0)
        self.model_info.labels(bundle.version, str(bundle.card.get("candidate", ""))).set(1)
        self.bundle = bundle

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
        if len(requests) == 1:  # one client at a time: nothing to join
            seconds, columns = requests[0]
        else:
            seconds = np.concatenate([seconds for seconds, _ in requests])
            columns = {name: np.concatenate([c[name] for _, c in requests])
                       for name in requests[0][1]}
        run_start = np.zeros(len(seconds), dtype=bool)
        run_start[ends - lengths] = True
        row_station_ids = (None if station_ids is None else
                           np.repeat(np.asarray(station_ids, dtype=object), lengths))
        # the one chain: repairs, features, model matrix, ONNX, a station's own map
        result = inference.infer(columns, seconds, run_start, self.bundle, self.features,
                                 self.horizons, issue_at=ends - 1, station_ids=row_station_ids)
        p, matrix, latest = result.p_clear, result.matrix, result.hourly
        last = result.issued
        target_sun = matrix[:, self.target_sun_column].reshape(len(requests), -1)
        is_night = (target_sun < self.night_max_sun).tolist()
        target_sun = target_sun.tolist()
        horizons = tuple(self.horizons)
        nowcasts = []
        for (_, request_columns), issued_second, p_request, night_request in zip(
                requests, seconds[last].tolist(), p.tolist(), is_night, strict=True):
            issued, target_times = _issue_times(issued_second, horizons)
            nowcasts.append({
                **profiles.coverage(request_columns),
                "prediction_id": new_prediction_id(),
                "model_version": self.bundle.version,
                "issued_for": issued,
                "forecasts": [
                    {"horizon_h": h, "target_time": target, "p_clear": round(pi, 6),
                     "target_is_night": night}
                    for h, target, pi, night in zip(horizons, target_times, p_request,
                                                    night_request, strict=True)],
            })
        if not with_inputs:
            return nowcasts
        names = list(latest)
        # one (hours x features) array: a row per request, read back as Python floats
        values = np.array([latest[n] for n in names], dtype=float).T.tolist()
        return nowcasts, [{"features": dict(zip(names, row, strict=True)), "target_sun": sun}
                          for row, sun in zip(values, target_sun, strict=True)]

    async def nowcast(self, station: Station, observations: list[Observation],
                      kind: str = "nowcast", station_id: str | None = None) -> dict:
        """P(clear) for each horizon (a :class:`NowcastResponse` as a dict), returned once
        the prediction is committed to the store.

        Requests that reach this point in the same turn of the event loop, or while the
        previous commit is on its way to disk, are answered together (dynamic batching):
        one feature pass and one onnxruntime call for all of them — right after the turn,
        or when that commit lands — and one transaction, committed by the store's writer
        thread (group commit); only then are they answered.
        """
        seconds, columns = recent_hours(station, observations, self.features.history_h)
        return await self.nowcast_arrays(
            Origin(station.latitude, station.longitude, kind, station_id), seconds, columns)

    async def nowcast_arrays(self, origin: Origin, seconds: np.ndarray,
                             columns: dict[str, np.ndarray]) -> dict:
        """:meth:`nowcast` from checked arrays (as :func:`recent_hours` returns them)."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        self._pending.append((origin, seconds, columns, answered))
        # the first of this turn schedules the batch — unless a commit is on its way to
        # disk: then the requests wait for it (they would anyway: their rows go in the next
        # commit) and are forecast together when it lands, one feature pass and one ONNX
        # call per commit instead of one per event-loop turn
        if len(self._pending) == 1 and not self._committing:
            loop.call_soon(self._answer_pending)
        return await answered

    def _answer_pending(self) -> None:
        if not self._pending:  # taken by a commit that landed first (_committed)
            return
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
        # the writer's own future, its outcome handed back to the loop in one call: wrapping
        # it in an asyncio future (run_in_executor) chains two futures and their callbacks
        # per commit, a visible share of the hand-off (py-spy on POST /v1/nowcast)
        written = self._writer.submit(self.store.log_predictions,
                                      [r for records, _, _ in groups for r in records])

        def back_on_the_loop(done: concurrent.futures.Future) -> None:
            try:
                loop.call_soon_threadsafe(self._committed, done, groups)
            except RuntimeError:  # the loop is closed: the server is gone, nobody awaits
                pass

        written.add_done_callback(back_on_the_loop)

    def _committed(self, done: concurrent.futures.Future, groups: list) -> None:
        self._committing = False
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        self._settle([(nowcasts, batch) for _, nowcasts, batch in groups], error)
        if self._pending:  # arrived during the commit: forecast together, then commit
            self._answer_pending()
        elif self._to_commit:
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
            raise unprocessable(["date"], f"{date} is outside {MIN_DATE}..{MAX_DATE}, "
                                "the range of the bundled ephemeris")
        times = planner.night_steps(s.latitude, s.longitude, date)
        climate = place.choose_climatology(self.bundle.climatology, s.latitude, s.longitude,
                                           self.max_station_km)
        p = place.p_clear_from_table(climate.table, s.longitude, times)
        source = climate.description
        prediction_id = None
        coverage: dict = {}
        from_nowcast = np.zeros(len(times), dtype=bool)  # the steps the nowcast covers
        if nowcast is None and request.observations:
            nowcast = await self.nowcast(s, request.observations, kind="night")
        if nowcast is not None:
            prediction_id = nowcast["prediction_id"]
            coverage = {k: nowcast[k] for k in ("missing_inputs", "input_profile")
                        if k in nowcast}
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
                        from_nowcast=from_nowcast, **coverage)


def stored_nowcast(service: Service, prediction: dict) -> dict:
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
    values = np.array([[np.nan if r[c] is None else r[c] for c in WEATHER_COLUMNS]
                       for r in rows], dtype=float)
    columns = dict(zip(WEATHER_COLUMNS, values.T, strict=True))
    if not renew:
        stored = await run_in_threadpool(service.store.latest_prediction,
                                         station["station_id"])
        if (stored is not None and stored["issued_for"] == latest
                and stored["model_version"] == service.bundle.version):
            # the stored answer's coverage: of the same stored hours it was made from
            return ({**stored_nowcast(service, stored), **profiles.coverage(columns)},
                    False, None)
    columns["latitude"] = np.full(len(rows), station["latitude"])
    columns["longitude"] = np.full(len(rows), station["longitude"])
    origin = Origin(station["latitude"], station["longitude"], "nowcast",
                     station["station_id"])
    return await service.nowcast_arrays(origin, seconds, columns), True, None


async def station_plan(service: Service, station: dict) -> tuple[dict | None, dict]:
    """The station's current nowcast (stored, or made from its stored hours) and tonight's
    plan from it, as JSON-ready dicts."""
    nowcast, _, _ = await station_nowcast(service, station)
    plan = await service.night(NightRequest(
        station=Station(latitude=station["latitude"], longitude=station["longitude"],
                        elevation_m=station["elevation_m"]), date="tonight"), nowcast=nowcast)
    return nowcast, plan.model_dump(mode="json")


