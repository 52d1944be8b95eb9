"""``service.recent_hours`` checks a request's hours in plain Python (a dozen NumPy calls on
10-value arrays cost more than the checks): the same answers and the same refusals, word for
word, as the NumPy checks it replaced (kept here as the reference), on thousands of random
requests — shifted, with gaps, off the hour, with fractional seconds, mixed UTC offsets,
outside the ephemeris, too short."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest
from fastapi import HTTPException

from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.serve.schemas import MAX_DATE, MIN_DATE, NowcastRequest
from starry_guide.serve.service import END_SECOND, FIRST_SECOND, recent_hours, unprocessable
from tests.serve.conftest import request_body


def reference_recent_hours(station, observations, history_h):
    """The checks as they were (NumPy on the epoch-seconds array), same messages."""
    def utc(o):
        return o.time.astimezone(dt.UTC).isoformat()

    stamps = np.array([o.time.timestamp() for o in observations])
    whole = np.floor(stamps)
    outside = np.flatnonzero((whole < FIRST_SECOND) | (whole >= END_SECOND))
    if len(outside):
        i = int(outside[0])
        raise unprocessable(["body", "observations", i, "time"],
                            f"{utc(observations[i])} is outside {MIN_DATE}..{MAX_DATE}, the "
                            "range of the bundled ephemeris")
    seconds = stamps.astype(np.int64)
    off_the_hour = np.flatnonzero(seconds % 3600 != 0)
    if len(off_the_hour):
        i = int(off_the_hour[0])
        raise unprocessable(["body", "observations", i, "time"],
                            f"{utc(observations[i])} is not on the hour")
    not_consecutive = np.flatnonzero(np.diff(seconds) != 3600)
    if len(not_consecutive):
        i = int(not_consecutive[0]) + 1
        raise unprocessable(["body", "observations", i, "time"],
                            f"{utc(observations[i])} does not follow "
                            f"{utc(observations[i - 1])} by one hour; send consecutive "
                            "hours, oldest first")
    if len(observations) < history_h + 1:
        raise unprocessable(["body", "observations"],
                            f"{len(observations)} hour(s) sent; the model needs the latest "
                            f"{history_h + 1} consecutive hours")
    recent = observations[-(history_h + 1):]
    values = np.array([[getattr(o, c) for c in WEATHER_COLUMNS] for o in recent], dtype=float)
    columns = dict(zip(WEATHER_COLUMNS, values.T, strict=True))
    columns["latitude"] = np.full(len(recent), station.latitude)
    columns["longitude"] = np.full(len(recent), station.longitude)
    return seconds[-(history_h + 1):], columns


def outcome(function, request, history_h):
    try:
        seconds, columns = function(request.station, request.observations, history_h)
    except HTTPException as refusal:
        return ("refused", refusal.status_code, refusal.detail)
    return ("answered", seconds.dtype, seconds.tolist(),
            {name: [None if np.isnan(v) else v for v in np.asarray(values).tolist()]
             for name, values in columns.items()})  # NaN as None: NaN != NaN


def random_request(generator: random.Random, base: dict) -> NowcastRequest:
    hours = [dict(o) for o in base["observations"][:generator.randint(1, 12)]]
    start = dt.datetime.fromisoformat(hours[0]["time"])
    shift = dt.timedelta(hours=generator.choice([0, 0, 24 * 365 * 30, -24 * 365 * 60,
                                                  generator.randint(-10**6, 10**6)]))
    step = 0
    for hour in hours:
        step += 1 if generator.random() > 0.1 else generator.choice([0, 2, -1])
        time = start + shift + dt.timedelta(hours=step - 1)
        if generator.random() < 0.08:  # off the hour: minutes, seconds or a fraction of one
            time += generator.choice([dt.timedelta(minutes=30), dt.timedelta(seconds=1),
                                      dt.timedelta(microseconds=500)])
        offset = dt.timezone(dt.timedelta(minutes=generator.choice([0, -300, 330, 60, -600])))
        hour["time"] = time.astimezone(offset).isoformat()
        if generator.random() < 0.1:
            hour["visibility_km"] = None
    return NowcastRequest.model_validate({**base, "observations": hours})


@pytest.mark.parametrize("history_h", [2, 6])
def test_the_checks_answer_and_refuse_as_the_numpy_ones_did(observations, history_h):
    generator = random.Random(history_h)
    bases = [request_body(observations, station, start=start, hours=12)
             for station, start in (("greensboro_nc", 3000), ("miami_fl", 2000))]
    kinds = {}
    for _ in range(3000):
        request = random_request(generator, generator.choice(bases))
        expected = outcome(reference_recent_hours, request, history_h)
        assert outcome(recent_hours, request, history_h) == expected, request
        message = "answered" if expected[0] == "answered" else expected[2][0]["msg"]
        kind = next(k for k in ("answered", "ephemeris", "not on the hour", "does not follow",
                                "hour(s) sent") if k in message)
        kinds[kind] = kinds.get(kind, 0) + 1
    # every refusal was reached, and answers too
    assert len(kinds) == 5 and min(kinds.values()) >= 50, kinds
