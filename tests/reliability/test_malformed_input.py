"""No client input gets a 500: a matrix of malformed requests and property-based ones
(hypothesis, schemathesis) against a real uvicorn process. Every refusal is a 4xx that names
the field (or says the body is not valid JSON/UTF-8), stays small and carries no traceback."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

JSON = {"content-type": "application/json"}
PLACEHOLDER = '"__VALUE__"'
MAX_REPLY_BYTES = 4096

#: raw JSON-ish tokens that broke the encoder or named no field before
HOSTILE_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"9" * 5000,
                   b"-" + b"1" * 4500, b"1" + b"0" * 400 + b".5", b'"NaN"', b'"1e400"',
                   b"[" * 300 + b"]" * 300, b"[" * 50 + b"1" + b"]" * 50,
                   b'{"a":' * 120 + b"1" + b"}" * 120, b"true", b'"\xff\xfe"',
                   b'"\\ud800"', b'"' + b"x" * 100_000 + b'"', b"[]", b"{}"]


def template(body: dict, *path) -> str:
    """``body`` as JSON text with the value at ``path`` replaced by a placeholder."""
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "__VALUE__"
    return json.dumps(copy)


def with_value(text: str, raw: bytes) -> bytes:
    return text.encode().replace(PLACEHOLDER.encode(), raw)


def check_refusal(response: httpx.Response, field: str | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert len(response.content) <= MAX_REPLY_BYTES, len(response.content)
    assert "Traceback" not in response.text and "File \"" not in response.text
    reply = response.json()
    assert reply["detail"], reply
    if field is not None and isinstance(reply["detail"], str):  # e.g. 404 unknown id
        assert field in reply["detail"], reply
    elif field is not None:
        locations = [list(map(str, d["loc"])) for d in reply["detail"]]
        assert any(field in loc for loc in locations), reply
    return reply


def night_body(body: dict) -> dict:
    return {"station": body["station"], "date": "2001-05-06",
            "observations": body["observations"]}


def field_cases(body: dict) -> list:
    feedback = {"prediction_id": "abc", "observed": "clear",
                "observed_at": "2001-05-06T22:00:00+00:00"}
    targets = [
        ("/v1/nowcast", body, ("station", "latitude"), "latitude"),
        ("/v1/nowcast", body, ("observations", 2, "temp_air_c"), "temp_air_c"),
        ("/v1/nowcast", body, ("observations", 0, "time"), "time"),
        ("/v1/night", night_body(body), ("station", "longitude"), "longitude"),
        ("/v1/night", night_body(body), ("dark_sky_mag",), "dark_sky_mag"),
        ("/v1/feedback", feedback, ("prediction_id",), "prediction_id"),
        ("/v1/feedback", feedback, ("observed_at",), "observed_at"),
    ]
    cases = []
    for path, base, where, field in targets:
        text = template(base, *where)
        for raw in HOSTILE_NUMBERS:
            cases.append(pytest.param(path, with_value(text, raw), field,
                                      id=f"{path}-{field}-{raw[:12]!r}"))
    return cases


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_hostile_values_in_every_field_get_a_4xx_naming_it(client, body):
    failures = []
    for case in field_cases(body):
        path, raw, field = case.values
        response = client.post(path, content=raw, headers=JSON)
        try:
            check_refusal(response, field)
        except (AssertionError, ValueError, KeyError, TypeError) as exc:
            failures.append(f"{case.id}: {exc}")
    assert not failures, "\n".join(failures[:20])


def test_the_value_is_echoed_only_when_small_and_finite(client, body):
    reply = check_refusal(client.post("/v1/nowcast", headers=JSON, content=with_value(
        template(body, "station", "latitude"), b"95")), "latitude")
    assert reply["detail"][0]["input"] == 95
    reply = check_refusal(client.post("/v1/nowcast", headers=JSON, content=with_value(
        template(body, "station", "latitude"), b"1e400")), "latitude")
    assert "input" not in reply["detail"][0]
    assert "finite" in reply["detail"][0]["msg"] or "infinity" in reply["detail"][0]["msg"]
    reply = check_refusal(client.post("/v1/nowcast", headers=JSON, content=with_value(
        template(body, "station", "latitude"), b"9" * 5000)), "latitude")
    assert "out of range" in reply["detail"][0]["msg"]


@pytest.mark.parametrize("raw, says", [
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"station": "\xc0\xaf"}', "UTF-8"),
    (b'{"station": {"latitude": 1', "not valid JSON"),
    (b"[" * 100_000, "nested too deeply"),
    (b"", "not valid JSON"),
    (b"null", None),
    (b"[]", None),
    (b'"' + b"x" * 200_000 + b'"', None),
    (json.dumps({"x" * 100_000: 1}).encode(), None),
])
@pytest.mark.parametrize("path", ["/v1/nowcast", "/v1/night", "/v1/feedback"])
def test_broken_bodies_get_a_4xx_that_says_so(client, path, raw, says):
    reply = check_refusal(client.post(path, content=raw, headers=JSON))
    if says:
        assert says in json.dumps(reply), reply


def test_utf16_and_bom_bodies_are_refused(client, body):
    raw = json.dumps(body).encode("utf-16")
    check_refusal(client.post("/v1/nowcast", content=raw, headers=JSON))
    raw = b"\xef\xbb\xbf" + json.dumps(body).encode()
    check_refusal(client.post("/v1/nowcast", content=raw, headers=JSON))


@pytest.mark.parametrize("query, field", [
    ("lat=nan&lon=0&date=2001-05-06", "lat"),
    ("lat=inf&lon=0&date=2001-05-06", "lat"),
    ("lat=-Infinity&lon=0&date=2001-05-06", "lat"),
    ("lat=1e400&lon=0&date=2001-05-06", "lat"),
    ("lat=" + "9" * 5000 + "&lon=0&date=2001-05-06", "lat"),
    ("lat=10&lon=NaN&date=2001-05-06", "lon"),
    ("lat=10&lon=0&date=%FF%FE", "date"),
    ("lat=10&lon=0&date=2001-05-06&dark_sky_mag=nan", "dark_sky_mag"),
    ("lat=10&lon=0&date=2001-05-06&elevation_m=-inf", "elevation_m"),
    ("lat=10&lon=0&date=9999-12-31", "date"),
    ("lat=10&lon=0&date=" + "2" * 5000, "date"),
])
def test_hostile_query_parameters_get_a_4xx_naming_them(client, query, field):
    check_refusal(client.get(f"/v1/night?{query}"), field)


def test_no_5xx_was_counted(client):
    # runs after the tests above (same module): the server's own count of 5xx replies
    metrics = client.get("/metrics").text
    five_hundreds = re.findall(r'starry_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)',
                               metrics)
    assert not any(float(v) for v in five_hundreds), five_hundreds


# --- property-based: hypothesis puts hostile values anywhere in a valid body -------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=50)
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)
raw_tokens = st.sampled_from(HOSTILE_NUMBERS) | st.binary(max_size=40).map(
    lambda b: b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'"') | st.integers(
    min_value=300, max_value=6000).map(lambda n: b"[" * n + b"]" * n) | json_values.map(
    lambda v: json.dumps(v).encode())


def paths_of(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            yield (*prefix, i)
            yield from paths_of(item, (*prefix, i))


def test_property_hostile_values_anywhere(client, body):
    targets = [("/v1/nowcast", body), ("/v1/night", night_body(body)),
               ("/v1/feedback", {"prediction_id": "abc", "observed": "clear"})]
    paths = [(url, base, p) for url, base in targets for p in paths_of(base)]

    @given(target=st.sampled_from(paths), raw=raw_tokens)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    def check(target, raw):
        url, base, path = target
        response = client.post(url, content=with_value(template(base, *path), raw),
                               headers=JSON)
        assert response.status_code < 500, (url, path, raw[:80], response.text[:300])
        if response.status_code >= 400:
            check_refusal(response)

    check()


# --- schemathesis: the API's own schema, valid and invalid (negative) data ---------------

@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_5xx(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/nowcast", "/v1/night", "/v1/feedback"}
    failures = []
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)
        def check(case):
            response = case.call(base_url=server.url, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.path}: {response.status_code} "
                                f"{response.text[:200]}")

        try:
            check()
        except Unsatisfiable:  # no input to make invalid (GET /healthz in negative mode)
            assert mode == schemathesis.GenerationMode.NEGATIVE
    assert not failures, failures[:10]
