"""``starry replay``: production traffic from a station file, as a feeder would send it.

A station file (any format ``starry validate`` accepts) is checked by the one validation
policy (:func:`starry_guide.ingest.stations.check_station`), cut to ``--start`` / ``--hours``, and
played into a running server hour by hour: the station is registered
(``PUT /v1/stations/{id}``), then each hour is posted to
``POST /v1/stations/{id}/observations`` with the feeder's bearer token, paced at ``--speed``
simulated hours per second (0: as fast as the server answers). Optionally, users' feedback on
earlier nowcasts is sampled from the true sky with a configurable error rate.

**Faults** (``--fault NAME@DATE``) change what is sent from ``DATE`` on. Each is a pure
function of the frame (:data:`FAULTS`); *sensor* faults change only what the station
reports, *world* faults change the sky itself (users' feedback sees it too):

``stuck-cloud-sensor``      sensor: opaque sky cover frozen at its last value before DATE
``missing-sensor``          sensor: the pressure sensor stops reporting (values missing)
``visibility-in-metres``    sensor: visibility sent in metres instead of km (a unit change)
``temperature-in-fahrenheit``  sensor: air temperature sent in deg F instead of deg C
``shift-clear-rate``        world: the night sky clouds over — opaque and total cover + 6
                            tenths from 21:00 to 06:00 local solar time, the day unchanged:
                            the night-time clear-sky rate collapses, and forecasts that carry
                            the evening sky into the night are wrong
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from starry_guide.config import Settings
from starry_guide.core.schema import WEATHER_COLUMNS


class ReplayError(RuntimeError):
    """Bad arguments, an unusable file or a server that refuses the feed; the message says
    what to do."""


# --------------------------------------------------------------------------- faults


def _after(frame: pd.DataFrame, start: pd.Timestamp) -> np.ndarray:
    return (frame["time"] >= start).to_numpy()


def stuck_cloud_sensor(frame: pd.DataFrame, start: pd.Timestamp,
                       rng: np.random.Generator) -> pd.DataFrame:
    """Opaque sky cover frozen from ``start`` on at the last value reported before it
    (the first reported value when nothing came before)."""
    out = frame.copy()
    after = _after(out, start)
    before = out.loc[~after, "opaque_cloud_tenths"].dropna()
    value = before.iloc[-1] if len(before) else out["opaque_cloud_tenths"].dropna().iloc[0]
    out.loc[after, "opaque_cloud_tenths"] = value
    return out


def missing_sensor(frame: pd.DataFrame, start: pd.Timestamp,
                   rng: np.random.Generator) -> pd.DataFrame:
    """The pressure sensor stops reporting from ``start`` on."""
    out = frame.copy()
    out.loc[_after(out, start), "pressure_hpa"] = np.nan
    return out


def visibility_in_metres(frame: pd.DataFrame, start: pd.Timestamp,
                         rng: np.random.Generator) -> pd.DataFrame:
    """Visibility sent in metres (x 1000) under its km field from ``start`` on."""
    out = frame.copy()
    out.loc[_after(out, start), "visibility_km"] *= 1000.0
    return out


def temperature_in_fahrenheit(frame: pd.DataFrame, start: pd.Timestamp,
                              rng: np.random.Generator) -> pd.DataFrame:
    """Air temperature sent in degrees Fahrenheit under its deg C field from ``start`` on."""
    out = frame.copy()
    after = _after(out, start)
    out.loc[after, "temp_air_c"] = out.loc[after, "temp_air_c"] * 1.8 + 32.0
    return out


#: ``shift-clear-rate``: local solar hours whose sky clouds over, and by how many tenths
NIGHT_HOURS = (21, 6)
NIGHT_CLOUD_TENTHS = 6.0


def shift_clear_rate(frame: pd.DataFrame, start: pd.Timestamp,
                     rng: np.random.Generator) -> pd.DataFrame:
    """From ``start`` on, the night sky clouds over: opaque and total cover rise by
    :data:`NIGHT_CLOUD_TENTHS` (capped at 10) between 21:00 and 06:00 local solar time, while
    the daytime sky stays as it was. The night-time clear-sky rate collapses, and forecasts
    that carry the evening's sky into the night (persistence, and models that learned it)
    are wrong. Deterministic (``rng`` is unused)."""
    out = frame.copy()
    local = (out["time"].dt.hour + out["time"].dt.minute / 60.0
             + out["longitude"] / 15.0) % 24.0
    evening, morning = NIGHT_HOURS
    changed = (out["time"] >= start) & ((local >= evening) | (local < morning))
    for column in ("opaque_cloud_tenths", "total_cloud_tenths"):
        out.loc[changed, column] = np.minimum(10.0, out.loc[changed, column]
                                              + NIGHT_CLOUD_TENTHS)
    return out


@dataclass(frozen=True)
class Fault:
    name: str
    apply: Callable[[pd.DataFrame, pd.Timestamp, np.random.Generator], pd.DataFrame]
    changes_world: bool  # True: the sky itself changed (users see it); False: a sensor/feed
    description: str


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("stuck-cloud-sensor", stuck_cloud_sensor, False,
          "opaque sky cover frozen at its last value"),
    Fault("missing-sensor", missing_sensor, False, "the pressure sensor stops reporting"),
    Fault("visibility-in-metres", visibility_in_metres, False,
          "visibility sent in metres instead of km"),
    Fault("temperature-in-fahrenheit", temperature_in_fahrenheit, False,
          "air temperature sent in deg F instead of deg C"),
    Fault("shift-clear-rate", shift_clear_rate, True,
          "the night sky clouds over (cover + 6 tenths, 21:00-06:00 local): the night-time "
          "clear-sky rate collapses"),
)}


def parse_fault(text: str) -> tuple[Fault, pd.Timestamp]:
    """``NAME@DATE`` (DATE: ISO date or time, UTC unless it carries an offset)."""
    name, sep, when = text.partition("@")
    if not sep or not when:
        raise ReplayError(f"--fault {text!r}: write NAME@DATE, e.g. stuck-cloud-sensor@2001-07-01")
    if name not in FAULTS:
        raise ReplayError(f"--fault {text!r}: unknown fault {name!r}; known faults: "
                          f"{', '.join(FAULTS)}")
    return FAULTS[name], parse_time(when, f"--fault {text!r}")


def parse_time(text: str, where: str) -> pd.Timestamp:
    import re

    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ReplayError(f"{where}: {text!r} is not a date; use ISO 8601, e.g. 2001-07-01 "
                          "or 2001-07-01T18:00Z") from None
    if stamp is pd.NaT:
        raise ReplayError(f"{where}: {text!r} is not a date")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def apply_faults(frame: pd.DataFrame, faults: list[tuple[Fault, pd.Timestamp]], seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frame the station sends and the world users see, after ``faults`` (in order).

    World faults change both; sensor faults only what is sent. Pure: ``frame`` is not
    modified; the same seed gives the same frames."""
    rng = np.random.default_rng(seed)
    sent, world = frame, frame
    for fault, start in faults:
        if fault.changes_world:
            world = fault.apply(world, start, np.random.default_rng(rng.integers(2**32)))
            # the sensors report the changed sky, then keep any earlier sensor faults
            changed = world[["opaque_cloud_tenths", "total_cloud_tenths"]].ne(
                frame[["opaque_cloud_tenths", "total_cloud_tenths"]])
            sent = sent.copy()
            sent[changed.columns] = sent[changed.columns].mask(changed, world[changed.columns])
        else:
            sent = fault.apply(sent, start, np.random.default_rng(rng.integers(2**32)))
    return sent, world


# --------------------------------------------------------------------------- the feed


def observation_body(row: pd.Series) -> dict:
    """One hour as the feed's JSON observation (missing values as null)."""
    body = {"time": row["time"].isoformat()}
    for column in WEATHER_COLUMNS:
        value = row[column]
        body[column] = None if pd.isna(value) else float(value)
    return body


def feedback_category(cover: float, clear_max: float) -> str | None:
    if pd.isna(cover):
        return None
    if cover <= clear_max:
        return "clear"
    return "cloudy" if cover >= 10 - clear_max else "partly"


@dataclass
class ReplayStats:
    hours_sent: int = 0
    hours_rejected: int = 0
    feedback_sent: int = 0
    seconds: float = 0.0
    rejected: list[str] = field(default_factory=list)
    #: requests sent again after a 502/503/504 or a lost connection (idempotent per hour)
    retries: int = 0

    @property
    def rate(self) -> float:
        return self.hours_sent / self.seconds if self.seconds else float("nan")


def _check_response(response, what: str, url: str) -> None:
    if response.status_code == 401:
        raise ReplayError(f"{what}: the server asks for the feeder token (401); set it in the "
                          "environment variable named by --token-env")
    if response.status_code == 403:
        raise ReplayError(f"{what}: the server refused the feeder token (403); use the "
                          "token the server was started with (STARRY_FEED_TOKEN)")
    if response.status_code == 404:
        raise ReplayError(f"{what}: {url} has no such endpoint (404); is it a Starry Guide "
                          "server with the observation feed?")
    if response.status_code >= 500:
        raise ReplayError(f"{what}: the server failed ({response.status_code}): "
                          f"{response.text[:300]}")


#: statuses that say "not now" (a balancer without a healthy host, a store that is away, a
#: timeout): the same request is sent again
RETRY_STATUSES = frozenset({502, 503, 504})
#: seconds between retries when the answer names none (``Retry-After``), and at most
RETRY_DEFAULT_S = 1.0
RETRY_MAX_WAIT_S = 10.0


def send_idempotent(client, method: str, path: str, json: dict, stats: ReplayStats,
                    retry_for: float):
    """Send a request that may be repeated safely (registering the station, posting an hour:
    the store keeps each hour once), again and again while the answer is 502/503/504 or the
    connection fails, waiting ``Retry-After`` seconds (else :data:`RETRY_DEFAULT_S`), for at
    most ``retry_for`` seconds; then the last answer (or the connection error) stands."""
    import httpx

    give_up = time.monotonic() + retry_for
    while True:
        try:
            response = client.request(method, path, json=json)
        except httpx.TransportError:
            if time.monotonic() >= give_up:
                raise
            wait = RETRY_DEFAULT_S
        else:
            if response.status_code not in RETRY_STATUSES or time.monotonic() >= give_up:
                return response
            try:
                wait = float(response.headers.get("retry-after", RETRY_DEFAULT_S))
            except ValueError:  # an HTTP date: not sent by this service
                wait = RETRY_DEFAULT_S
        stats.retries += 1
        time.sleep(min(max(wait, 0.05), RETRY_MAX_WAIT_S, max(give_up - time.monotonic(), 0)))


def replay(frame: pd.DataFrame, world: pd.DataFrame, station: dict, url: str, token: str, *,
           speed: float = 0.0, feedback_rate: float = 0.0, feedback_error: float = 0.0,
           clear_max: float = 2.0, seed: int = 0, timeout: float = 30.0,
           retry_for: float = 0.0,
           progress: Callable[[ReplayStats], None] | None = None) -> ReplayStats:
    """Play ``frame`` into the server at ``url``, one hour per request.

    ``station``: station_id, latitude, longitude, elevation_m, name. ``world``: the sky users
    see (for feedback). A user reports with probability ``feedback_rate`` per night hour on
    the nowcast they saw 1-12 hours before, wrongly with probability ``feedback_error``.
    ``retry_for`` > 0: an hour (or the registration) answered 502/503/504, or whose
    connection failed, is sent again for up to that many seconds (:func:`send_idempotent`);
    the feed is idempotent per hour, so a retry never stores an hour twice.
    """
    import httpx

    if not url.startswith(("http://", "https://")):
        raise ReplayError(f"--url {url!r}: give the server's address with its scheme, e.g. "
                          "http://127.0.0.1:8000")
    rng = np.random.default_rng(seed)
    stats = ReplayStats()
    station_id = station["station_id"]
    headers = {"Authorization": f"Bearer {token}"}
    base = url.rstrip("/")
    issued: dict[pd.Timestamp, str] = {}
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=base, timeout=timeout, headers=headers) as client:
            response = send_idempotent(client, "PUT", f"/v1/stations/{station_id}", {
                k: station[k] for k in ("latitude", "longitude", "elevation_m", "name")},
                stats, retry_for)
            _check_response(response, f"registering station {station_id}", base)
            if response.status_code >= 400:
                raise ReplayError(f"registering station {station_id}: the server answered "
                                  f"{response.status_code}: {response.text[:300]}")
            world_cover = world.set_index("time")["opaque_cloud_tenths"]
            night = world.set_index("time")["sun_elevation_deg"] < -12 \
                if "sun_elevation_deg" in world.columns else None
            for i, (_, row) in enumerate(frame.iterrows()):
                if speed > 0:
                    wait = started + i / speed - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                response = send_idempotent(
                    client, "POST", f"/v1/stations/{station_id}/observations",
                    {"observations": [observation_body(row)]}, stats, retry_for)
                _check_response(response, f"posting {row['time'].isoformat()}", base)
                if response.status_code >= 400:
                    stats.hours_rejected += 1
                    if len(stats.rejected) < 20:
                        stats.rejected.append(f"{row['time'].isoformat()}: "
                                              f"{response.status_code} {response.text[:200]}")
                    continue
                stats.hours_sent += 1
                prediction_id = _prediction_id(response.json())
                if prediction_id is not None:
                    issued[row["time"]] = prediction_id
                if feedback_rate > 0 and (night is None or bool(night.get(row["time"], False))) \
                        and rng.random() < feedback_rate:
                    stats.feedback_sent += _send_feedback(
                        client, rng, issued, row["time"], world_cover, clear_max,
                        feedback_error)
                if progress is not None and stats.hours_sent % 500 == 0:
                    progress(stats)
    except httpx.InvalidURL as exc:
        raise ReplayError(f"--url {url!r} is not a valid URL ({exc}); e.g. "
                          "http://127.0.0.1:8000") from None
    except httpx.TransportError as exc:
        raise ReplayError(f"cannot reach the server at {base}: {exc}. Start it first "
                          "(`make serve` or `starry serve`)") from None
    stats.seconds = time.perf_counter() - started
    return stats


def _prediction_id(body) -> str | None:
    """The nowcast's prediction id in the feed's answer, wherever the feed puts it."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("prediction_id"), str):
        return body["prediction_id"]
    for key in ("nowcast", "latest"):
        inner = body.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("prediction_id"), str):
            return inner["prediction_id"]
    return None


def _send_feedback(client, rng, issued, now, world_cover, clear_max, error) -> int:
    """A user looks up at ``now`` and reports on the nowcast they saw ``h`` hours before."""
    horizon = int(rng.integers(1, 13))
    prediction_id = issued.get(now - pd.Timedelta(hours=horizon))
    if prediction_id is None:
        return 0
    truth = feedback_category(world_cover.get(now, np.nan), clear_max)
    if truth is None:
        return 0
    observed = truth
    if rng.random() < error:
        observed = str(rng.choice([c for c in ("clear", "partly", "cloudy") if c != truth]))
    response = client.post("/v1/feedback", json={
        "prediction_id": prediction_id, "observed": observed,
        "observed_at": now.isoformat()})
    return int(response.status_code < 400)


# --------------------------------------------------------------------------- the file


def load_station_frame(entry: str, settings: Settings, start: str | None, hours: int | None
                       ) -> tuple[pd.DataFrame, dict]:
    """The station's checked hourly frame (the one validation policy), cut to ``start`` and
    ``hours``, and its registration (id, place, name).

    Raises
    ------
    ReplayError
        when the file is not usable (the quality report's reasons) or the window is empty.
    """
    from pathlib import Path

    from starry_guide.ingest import stations

    path = Path(entry)
    frame, report = stations.check_station(str(path.resolve()) if path.exists() else entry,
                                          settings)
    if not report.usable:
        raise ReplayError(f"{entry}: not usable for replay:\n" + "\n".join(
            f"  - {r}" for r in report.reasons))
    frame = frame.sort_values("time").reset_index(drop=True)
    first, last = frame["time"].iloc[0], frame["time"].iloc[-1]
    if start is not None:
        begin = parse_time(start, "--start")
        frame = frame[frame["time"] >= begin]
        if frame.empty:
            raise ReplayError(f"--start {start}: {entry} ends at {last.isoformat()}; pick a "
                              f"start between {first.isoformat()} and {last.isoformat()}")
    if hours is not None:
        if hours < 1:
            raise ReplayError(f"--hours {hours}: give at least 1 hour")
        frame = frame.iloc[:hours]
    first_row = frame.iloc[0]
    station = {"station_id": str(first_row["station_id"]),
               "latitude": float(first_row["latitude"]),
               "longitude": float(first_row["longitude"]),
               "elevation_m": float(first_row["elevation_m"]),
               "name": str(report.source)}
    return frame.reset_index(drop=True), station
