"""The API's request and response bodies (pydantic), with their limits and examples: one
owner for what a client may send and what it gets back. Ranges come from the one table of
:mod:`starry_guide.core.quality`; the night plan's own bodies live with the planner
(:mod:`starry_guide.serve.planning.night`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from fastapi import Path as PathParam
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from starry_guide.config import ServeSettings
from starry_guide.core import astro, quality
from starry_guide.serve.planning.night import NightResponse, Step, Window  # noqa: F401

#: request limits: what one client may ask of one call (the body limit is configurable:
#: params.yaml ``serve.max_body_bytes``; this is its default)
MAX_BODY_BYTES = ServeSettings().max_body_bytes
MAX_OBSERVATIONS = 240
#: hours one feed request may carry
MAX_FEED_OBSERVATIONS = 720
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
    """One hourly observation; omitted or null fields are missing: the answer's
    ``missing_inputs`` names them, and a sub-model trained without them forecasts."""

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
    missing_inputs: list[str] = Field(
        default_factory=list,
        description="optional model inputs the latest observed hour lacks: the forecast "
        "comes from a sub-model trained without them (never worse than calibrated "
        "persistence on the fields sent, by design and by the gate's test)",
        examples=[["precipitable_water_cm"]])
    input_profile: str = Field(
        "full", description="the input profile the hours sent match: full, "
        "no_precipitable_water, metar_like (cover in METAR categories, no precipitable "
        "water) or cover_only", examples=["no_precipitable_water"])


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

    status: Literal["ok", "degraded", "unavailable"]
    model_version: str
    candidate: str | None = None
    store: dict = Field(description="`backend`, the state of its `maintenance` and, while "
                                    "it cannot be reached, the `error`")
    push: dict | None = Field(None, description="the push decider's last pass in this "
                              "process (null when it does not run here: `--no-nudge`)")


class FeedbackResponse(BaseModel):
    feedback_id: int = Field(description="id of the feedback record", examples=[1])
    prediction_id: str = Field(description="the prediction it is about",
                               examples=["b89a9379a613443ca68edb6c9c3dc758"])


StationId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                     description="letters, digits, '_', '.', '-'; 1-64")]


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




# ---------------------------------------------------------------- Web Push subscriptions

def _b64url_bytes(value: str, field: str) -> bytes:
    import base64
    import binascii

    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value):
        raise ValueError(f"{field} must be base64url (A-Z, a-z, 0-9, '-', '_')")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{field} is not valid base64url") from None


class PushKeys(Strict):
    p256dh: str = Field(max_length=100, description="the browser's P-256 public key "
                        "(base64url, uncompressed point)",
                        examples=["BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4"
                                  "bjyPjs7Vd8pZGH6SRpkNtoIAiw4"])
    auth: str = Field(max_length=40, description="the browser's 16-byte auth secret "
                      "(base64url)", examples=["BTBZMqHH6r4Tts7J_aSIgg"])

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        from cryptography.hazmat.primitives.asymmetric import ec

        raw = _b64url_bytes(value, "p256dh")
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError(f"p256dh decodes to {len(raw)} bytes; an uncompressed P-256 "
                             "point has 65, the first 0x04")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError("p256dh is not a point on the P-256 curve") from None
        return value

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        raw = _b64url_bytes(value, "auth")
        if len(raw) != 16:
            raise ValueError(f"auth decodes to {len(raw)} bytes; it has 16")
        return value


class BrowserPushSubscription(Strict):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    endpoint: str = Field(max_length=2048, description="the push service's URL for this "
                          "subscription: https on a public address (checked by the route: "
                          ":mod:`starry_guide.serve.push.endpoints`)",
                          examples=["https://fcm.googleapis.com/fcm/send/cZ3Xq9"])
    expirationTime: float | None = Field(None, description="ignored (browsers send null)",
                                         examples=[None])
    keys: PushKeys


class QuietHours(Strict):
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["23:00"],
                       description="local time (HH:MM) from which nothing is pushed")
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["06:30"],
                     description="local time (HH:MM) at which pushing resumes")


PUSH_SUBSCRIPTION_EXAMPLE = {
    "subscription": {"endpoint": "https://fcm.googleapis.com/fcm/send/cZ3Xq9",
                     "keys": {"p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYW"
                                        "XvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                              "auth": "BTBZMqHH6r4Tts7J_aSIgg"}},
    "station": "greensboro-roof", "min_probability": 0.6, "min_hours": 1.0,
    "timezone": "America/New_York", "quiet_hours": {"start": "23:30", "end": "06:00"}}


class PushSubscriptionRequest(Strict):
    """A subscription to nudges: pushed when the station's plan holds a clear window of at
    least ``min_hours`` with a mean P(clear) of at least ``min_probability`` tonight."""

    model_config = ConfigDict(json_schema_extra={"examples": [PUSH_SUBSCRIPTION_EXAMPLE]})

    subscription: BrowserPushSubscription
    station: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                description="a registered station; or give latitude and "
                                "longitude for the nearest one", examples=["greensboro-roof"])
    latitude: float | None = Field(None, **bounds("latitude"),
                                   description="with longitude, instead of station: the "
                                   "nearest registered station within the server's "
                                   "`--max-station-km`", examples=[36.1])
    longitude: float | None = Field(None, **bounds("longitude"),
                                    description="with latitude, instead of station",
                                    examples=[-79.95])
    min_probability: float = Field(0.5, ge=0, le=1, description="the window's mean P(clear) "
                                   "at least this, 0-1", examples=[0.6])
    min_hours: float = Field(1.0, gt=0, le=12, description="the window lasts at least this "
                             "long, hours", examples=[1.0])
    timezone: str = Field(max_length=64, description="IANA time zone of the notification's "
                          "times and the quiet hours", examples=["America/New_York"])
    quiet_hours: QuietHours | None = Field(None, description="local hours with no pushes")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)"
                             ) from None
        return value

    @model_validator(mode="after")
    def _one_place(self) -> PushSubscriptionRequest:
        by_coordinates = self.latitude is not None or self.longitude is not None
        if self.station is not None and by_coordinates:
            raise ValueError("give station, or latitude and longitude, not both")
        if self.station is None and (self.latitude is None or self.longitude is None):
            raise ValueError("give station, or both latitude and longitude")
        return self


class PushSubscriptionCreated(BaseModel):
    id: str = Field(description="the subscription's id",
                    examples=["5d0c8c9e6b3f4b0e9a1c7f2d4e6b8a0c"])
    secret: str = Field(description="bearer secret for `DELETE /v1/push/subscriptions/{id}`; "
                        "shown once, only its hash is stored",
                        examples=["kq3J9oV4cM2p0S8w1Yx7Zb6Nf5Lr2Td9Qe4Ua0Hg3Is"])
    station: str = Field(description="the station whose plan is watched",
                         examples=["greensboro-roof"])


class PushKey(BaseModel):
    key: str = Field(description="the server's VAPID public key: base64url of the "
                     "uncompressed P-256 point (`applicationServerKey`)",
                     examples=["BM52EC_hfQV7mcnKNi3ZKkJSZW9JsQmr_jguQfRY4eamOiOwjYV2LYfKDX_D0T8"
                               "6sC7HBstMqKNyogocB7hXAAA"])
