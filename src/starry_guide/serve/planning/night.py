"""The night plan as the API returns it: the response models (every field described, with
units and an example that validates) and :func:`assemble`, which builds one from P(clear)
and the planner's sun, moon, twilight and windows.

Pure computation; the HTTP edge is :mod:`starry_guide.serve.app`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from starry_guide.serve.planning import place, planner


class Instant(BaseModel):
    """One instant, in UTC and in the place's local time."""

    utc: dt.datetime = Field(description="the instant in UTC (ISO 8601, `Z`)",
                             examples=["2026-11-27T22:06:15Z"])
    local: dt.datetime = Field(description="the same instant in the place's time zone, with "
                               "its UTC offset", examples=["2026-11-27T17:06:15-05:00"])


class Step(BaseModel):
    """One 15-minute step of the night (the sun below the horizon)."""

    time: dt.datetime = Field(description="start of the step, UTC",
                              examples=["2026-11-28T03:20:00Z"])
    local_time: dt.datetime = Field(description="start of the step in the place's time zone",
                                    examples=["2026-11-27T22:20:00-05:00"])
    sun_altitude_deg: float = Field(description="the sun's geometric altitude, degrees "
                                    "(negative: below the horizon)", examples=[-62.29])
    twilight: Literal["day", "civil twilight", "nautical twilight", "astronomical twilight",
                      "night"] = Field(description="twilight phase from the sun's altitude: "
                                       "civil 0.83-6°, nautical 6-12°, astronomical 12-18° "
                                       "below, night beyond 18°", examples=["night"])
    moon_altitude_deg: float = Field(description="the moon's topocentric altitude, degrees",
                                     examples=[20.02])
    moon_illumination: float = Field(ge=0, le=1, description="illuminated fraction of the "
                                     "moon's disc, 0-1", examples=[0.827])
    sky_brightness_mag_arcsec2: float = Field(
        description="moonlit sky brightness at the zenith, V mag/arcsec² (Krisciunas & "
        "Schaefer 1991); larger is darker, `dark_sky_mag` when the moon is down",
        examples=[20.03])
    p_clear: float = Field(ge=0, le=1, description="probability that the sky is clear "
                           "(opaque cover ≤ 2 tenths) in this step's hour, 0-1",
                           examples=[0.5667])
    score: float = Field(ge=0, le=1, description="stargazing score, 0-1: P(clear) × darkness "
                         "(0 until the sun is 12° down, 1 from 18°) × how much of the range "
                         "from an 18 mag/arcsec² sky to the site's dark sky the moon leaves",
                         examples=[0.3206])


class Window(BaseModel):
    """A run of steps that score at least 80 % of the night's best (and at least 0.2)."""

    start: dt.datetime = Field(description="start, UTC", examples=["2026-11-27T23:35:00Z"])
    end: dt.datetime = Field(description="end (exclusive), UTC",
                             examples=["2026-11-28T01:35:00Z"])
    start_local: dt.datetime = Field(description="start in the place's time zone",
                                     examples=["2026-11-27T18:35:00-05:00"])
    end_local: dt.datetime = Field(description="end in the place's time zone",
                                   examples=["2026-11-27T20:35:00-05:00"])
    minutes: int = Field(ge=0, description="duration, minutes", examples=[120])
    mean_score: float = Field(ge=0, le=1, description="mean stargazing score over the "
                              "window, 0-1", examples=[0.5341])
    mean_p_clear: float = Field(ge=0, le=1, description="mean P(clear) over the window, 0-1",
                                examples=[0.5375])
    moon: Literal["down", "up", "partly up"] = Field(
        description="whether the moon is above the horizon during the window",
        examples=["down"])
    moon_illumination: float = Field(ge=0, le=1, description="mean illuminated fraction of "
                                     "the moon while it is up in the window (0 when down)",
                                     examples=[0.0])
    nowcast_minutes: int = Field(ge=0, description="minutes of the window whose P(clear) "
                                 "comes from the nowcast, the rest from climatology; 0: "
                                 "climatology alone, a seasonal prior rather than a forecast, "
                                 "so the window raises no `window_opened` event and no nudge",
                                 examples=[0])


class Place(BaseModel):
    latitude: float = Field(description="degrees, north positive", examples=[36.1])
    longitude: float = Field(description="degrees, east positive", examples=[-79.95])
    elevation_m: float = Field(description="metres above sea level", examples=[273.0])
    time_zone: str = Field(description="IANA time zone at the place (from its coordinates, "
                           "offline, timezonefinder); `Etc/GMT±N` at sea",
                           examples=["America/New_York"])


class Climatology(BaseModel):
    """Where P(clear) comes from when there are no recent observations — and how far it is."""

    kind: Literal["station", "latitude_season"] = Field(
        description="`station`: the nearest station's own record, within `max_distance_km`; "
        "`latitude_season`: no station is that near, so a rough prior pooled from the bundled "
        "stations by season and nearness in latitude", examples=["station"])
    station_id: str | None = Field(None, description="the station used (kind `station`), else null",
                                   examples=["greensboro_nc"])
    nearest_station_id: str = Field(description="the nearest station with a climatology",
                                    examples=["greensboro_nc"])
    nearest_distance_km: float = Field(ge=0, description="great-circle distance to it, km",
                                       examples=[0.0])
    max_distance_km: float = Field(gt=0, description="the server's limit for using a "
                                   "station's climatology (`starry serve --max-station-km`), "
                                   "km", examples=[300.0])
    weights: dict[str, float] = Field(description="weight of each station in the table used",
                                      examples=[{"greensboro_nc": 1.0}])
    description: str = Field(description="the same, in one plain sentence",
                             examples=["climatology of station greensboro_nc, 0 km away"])


class Summary(BaseModel):
    """The night's events (null when they do not happen in the 24 hours from local solar
    noon), to the minute."""

    sunset: Instant | None = Field(None, description="the sun's upper limb sets (centre 0.83° "
                                   "below the horizon)")
    sunrise: Instant | None = Field(None, description="the sun rises again")
    astronomical_dusk: Instant | None = Field(None, description="the sun reaches 18° below the "
                                              "horizon: full darkness begins")
    astronomical_dawn: Instant | None = Field(None, description="the sun climbs back above -18°")
    moonrise: Instant | None = Field(None, description="the moon rises (first time in the 24 h)")
    moonset: Instant | None = Field(None, description="the moon sets (first time in the 24 h)")
    lowest_sun_altitude_deg: float = Field(description="the sun's lowest altitude in the "
                                           "night, degrees", examples=[-75.2])


class Darkness(BaseModel):
    kind: Literal["night", "astronomical twilight only", "no dark sky", "midnight sun",
                  "polar night"] = Field(description="how dark the night gets",
                                         examples=["night"])
    reason: str | None = Field(None, description="why the night is not fully dark, in plain words "
                               "(null for an ordinary night)", examples=[None])


class Verdict(BaseModel):
    go: bool = Field(description="true when the best window lasts at least 30 minutes with "
                     "a mean P(clear) of at least 50 %", examples=[True])
    headline: str = Field(description="one line for an app, local times",
                          examples=["Go: 22:40–01:10, 78 % clear, moon down"])


_STEP = {"time": "2026-11-28T03:20:00Z", "local_time": "2026-11-27T22:20:00-05:00",
         "sun_altitude_deg": -62.29, "twilight": "night", "moon_altitude_deg": 20.02,
         "moon_illumination": 0.827, "sky_brightness_mag_arcsec2": 20.03, "p_clear": 0.5667,
         "score": 0.3206}
_WINDOW = {"start": "2026-11-27T23:35:00Z", "end": "2026-11-28T01:35:00Z",
           "start_local": "2026-11-27T18:35:00-05:00", "end_local": "2026-11-27T20:35:00-05:00",
           "minutes": 120, "mean_score": 0.5341, "mean_p_clear": 0.5375, "moon": "down",
           "moon_illumination": 0.0, "nowcast_minutes": 0}


def _at(utc: str, local: str) -> dict:
    return {"utc": utc, "local": local}


#: ``GET /v1/night?lat=36.1&lon=-79.95&date=2026-11-27`` (timeline cut to one step)
NIGHT_EXAMPLE = {
    "date": "2026-11-27", "model_version": "1",
    "p_clear_source": "climatology of station greensboro_nc, 0 km away",
    "prediction_id": None,
    "place": {"latitude": 36.1, "longitude": -79.95, "elevation_m": 273.0,
              "time_zone": "America/New_York"},
    "climatology": {"kind": "station", "station_id": "greensboro_nc",
                    "nearest_station_id": "greensboro_nc", "nearest_distance_km": 0.0,
                    "max_distance_km": 300.0, "weights": {"greensboro_nc": 1.0},
                    "description": "climatology of station greensboro_nc, 0 km away"},
    "summary": {"sunset": _at("2026-11-27T22:06:15Z", "2026-11-27T17:06:15-05:00"),
                "sunrise": _at("2026-11-28T12:09:23Z", "2026-11-28T07:09:23-05:00"),
                "astronomical_dusk": _at("2026-11-27T23:36:40Z", "2026-11-27T18:36:40-05:00"),
                "astronomical_dawn": _at("2026-11-28T10:38:50Z", "2026-11-28T05:38:50-05:00"),
                "moonrise": _at("2026-11-28T01:23:01Z", "2026-11-27T20:23:01-05:00"),
                "moonset": _at("2026-11-28T16:17:21Z", "2026-11-28T11:17:21-05:00"),
                "lowest_sun_altitude_deg": -75.2},
    "darkness": {"kind": "night", "reason": None},
    "tonight": {"go": True, "headline": "Go: 18:35–20:35, 54 % clear, moon down"},
    "timeline": [_STEP],
    "best_windows": [_WINDOW],
}


class NightResponse(BaseModel):
    """Tonight's plan for one place: sun, moon, darkness, P(clear), score, the best windows
    and a go/no-go; times in UTC and in the place's time zone."""

    model_config = ConfigDict(json_schema_extra={"examples": [NIGHT_EXAMPLE]})

    date: dt.date = Field(description="the local date on which the night begins (resolved "
                          "when the request said `tonight`)", examples=["2026-11-27"])
    model_version: str = Field(description="registered version of the model served",
                               examples=["1"])
    p_clear_source: str = Field(description="where P(clear) comes from: the nowcast (hours "
                                "covered) and/or the climatology used",
                                examples=["climatology of station greensboro_nc, 0 km away"])
    prediction_id: str | None = Field(None, description="id of the logged prediction behind the "
                                      "plan, for `POST /v1/feedback`; null for a plan from "
                                      "climatology alone", examples=[None])
    missing_inputs: list[str] | None = Field(
        None, description="the nowcast's missing optional inputs (see `POST /v1/nowcast`); "
        "null for a plan from climatology alone", examples=[None])
    input_profile: str | None = Field(
        None, description="the nowcast's input profile (see `POST /v1/nowcast`); null for a "
        "plan from climatology alone", examples=[None])
    place: Place
    climatology: Climatology
    summary: Summary
    darkness: Darkness
    tonight: Verdict
    timeline: list[Step] = Field(description="15-minute steps from sunset to sunrise (empty "
                                 "when the sun does not set: see `darkness`)",
                                 examples=[[_STEP]])
    best_windows: list[Window] = Field(description="the best windows, best first (mean "
                                       "score × duration), at most three",
                                       examples=[[_WINDOW]])


def _instant(value: pd.Timestamp | None, zone_name: str) -> dict | None:
    if value is None:
        return None
    return {"utc": value.to_pydatetime(),
            "local": value.tz_convert(place.zone(zone_name)).to_pydatetime()}


def assemble(*, latitude: float, longitude: float, elevation_m: float, date: dt.date,
             times: pd.DatetimeIndex, p_clear: np.ndarray, p_clear_source: str,
             climate: place.ClimateChoice, dark_sky_mag: float, model_version: str,
             prediction_id: str | None, from_nowcast: np.ndarray | None = None,
             missing_inputs: list[str] | None = None, input_profile: str | None = None
             ) -> NightResponse:
    """The night plan for one place from P(clear) at each of ``times`` (the 15-minute steps
    of :func:`starry_guide.serve.planning.planner.night_steps`); ``from_nowcast`` marks the steps
    whose P(clear) comes from the nowcast (default: none, climatology alone), counted in
    each window's ``nowcast_minutes``."""
    zone_name = place.time_zone(latitude, longitude)
    tz = place.zone(zone_name)
    # one more step at the closing noon, for the moon's rising and setting (planner.events)
    closed = times.append(pd.DatetimeIndex([times[0] + pd.Timedelta(hours=24)]))
    whole = planner.night_frame(latitude, longitude, np.append(p_clear, p_clear[-1]), closed,
                                dark_sky_mag, elevation_m=elevation_m)
    nowcast_steps = (np.zeros(len(times), dtype=bool) if from_nowcast is None
                     else np.asarray(from_nowcast, dtype=bool))
    whole["from_nowcast"] = np.append(nowcast_steps, False)
    happened = planner.events(latitude, longitude, times, elevation_m,
                              whole["moon_altitude_deg"].to_numpy())
    frame = whole.iloc[:-1]
    frame = frame[frame["sun_altitude_deg"] < planner.TWILIGHT[0][0]].reset_index(drop=True)
    windows = planner.describe_windows(frame, planner.best_windows(frame))
    dark = planner.darkness(latitude, date, happened["lowest_sun_altitude_deg"],
                            happened["highest_sun_altitude_deg"])
    utc = pd.DatetimeIndex(frame["time"])
    # plain datetimes: pydantic validates them ~100x faster than pandas Timestamps
    steps = [{**row, "time": t, "local_time": local} for row, t, local in
             zip(frame.drop(columns=["time", "from_nowcast"]).to_dict("records"),
                 utc.to_pydatetime(),
                 utc.tz_convert(tz).to_pydatetime(), strict=True)]
    return NightResponse(
        date=date, model_version=model_version, p_clear_source=p_clear_source,
        prediction_id=prediction_id, missing_inputs=missing_inputs,
        input_profile=input_profile,
        place=Place(latitude=latitude, longitude=longitude, elevation_m=elevation_m,
                    time_zone=zone_name),
        climatology=Climatology(
            kind=climate.kind, station_id=climate.station_id,
            nearest_station_id=climate.nearest_station_id,
            nearest_distance_km=round(climate.nearest_distance_km, 1),
            max_distance_km=climate.max_distance_km, weights=climate.weights,
            description=climate.description),
        summary=Summary(**{k: _instant(happened[k], zone_name) for k in
                           ("sunset", "sunrise", "astronomical_dusk", "astronomical_dawn",
                            "moonrise", "moonset")},
                        lowest_sun_altitude_deg=happened["lowest_sun_altitude_deg"]),
        darkness=Darkness(**dark),
        tonight=Verdict(**planner.verdict(windows, dark, frame, zone_name)),
        timeline=[Step(**s) for s in steps],
        best_windows=[Window(**w, start_local=pd.Timestamp(w["start"]).tz_convert(tz)
                             .to_pydatetime(),
                             end_local=pd.Timestamp(w["end"]).tz_convert(tz).to_pydatetime())
                      for w in windows],
    )
