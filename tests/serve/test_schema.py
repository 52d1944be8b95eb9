"""Property-based tests of the API against its own OpenAPI schema (schemathesis), with the
service's real limits on: every status it answers — the guard's 429 and 503 included — must
be documented, with the body it really sends."""

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.config import ServeSettings
from starry_guide.serve.app import create_app
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store

WRITES = ("POST /v1/nowcast", "POST /v1/night", "POST /v1/feedback")


def exercise(operation) -> Counter:
    """Hypothesis over one operation: no 5xx, every response as documented (429 and 503
    with ``Retry-After``). Returns the statuses seen."""
    statuses: Counter = Counter()

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case):
        # no 5xx; every response matches its documented schema. Not checked: that every
        # schema-valid body is accepted — a nowcast also needs enough *consecutive* hours,
        # which JSON Schema cannot say; those get a field-level 422 (tests/serve/test_api)
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        statuses[response.status_code] += 1
        if response.status_code in (429, 503):
            headers = {k.lower(): v for k, v in response.headers.items()}
            retry = headers["retry-after"]
            assert int(retry[0] if isinstance(retry, list) else retry) >= 1

    check()
    return statuses


def conform(bundle_dir, store_path, limits: ServeSettings, only: str | None = None
            ) -> dict[str, Counter]:
    """Run schemathesis over the operations of a new app (``only``: one operation; each
    operation gets an app of its own, so one's writes do not spend another's rate budget).
    Returns the statuses seen per operation."""
    def app():
        store_path.parent.mkdir(parents=True, exist_ok=True)
        return create_app(Service(load_bundle(bundle_dir), Store(store_path)), limits)

    names = [f"{r.ok().method.upper()} {r.ok().path}"
             for r in schemathesis.openapi.from_asgi("/openapi.json", app())
             .get_all_operations()]
    seen: dict[str, Counter] = {}
    for name in names:
        if only is not None and name != only:
            continue
        schema = schemathesis.openapi.from_asgi("/openapi.json", app())
        operation = next(r.ok() for r in schema.get_all_operations()
                         if f"{r.ok().method.upper()} {r.ok().path}" == name)
        seen[name] = exercise(operation)
    assert not [(op, s) for op, counts in seen.items() for s in counts if s >= 500], seen
    return seen


def test_api_conforms_to_its_schema(bundle_dir, tmp_path):
    # the service's default limits (the per-client write rate limit on), a fresh app per
    # operation: every endpoint is reached, and whatever it or the guard answers conforms
    limits = ServeSettings()
    assert limits.rate_per_s > 0
    seen = conform(bundle_dir, tmp_path / "default" / "store.sqlite", limits)
    assert {"POST /v1/nowcast", "GET /v1/night", "POST /v1/feedback", "GET /healthz"} <= set(seen)
    for name in WRITES:
        assert sum(n for s, n in seen[name].items() if s != 429) > 0, (name, seen[name])


def test_rate_limited_writes_conform_to_the_schema(bundle_dir, tmp_path):
    # a tight limit: most writes are refused 429 + Retry-After, as documented
    limits = ServeSettings(rate_per_s=0.5, rate_burst=2)
    for name in WRITES:
        seen = conform(bundle_dir, tmp_path / name.split("/")[-1] / "store.sqlite", limits,
                       only=name)
        assert seen[name][429] > 0, seen


def test_every_refusal_is_documented_where_it_can_happen(bundle_dir, tmp_path):
    from starry_guide.docs.pages import api_page

    schema = create_app(Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite")),
                        ServeSettings()).openapi()
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert {"408", "431", "503"} <= set(responses), where
            assert "Retry-After" in responses["503"]["headers"], where
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), where
                for status in ("400", "413", "415", "422"):
                    assert responses[status]["content"]["application/json"]["schema"] == \
                        problem, (where, status)
            if method in ("post", "put", "patch", "delete"):
                assert responses["429"]["content"]["application/json"]["schema"] == problem
                assert "Retry-After" in responses["429"]["headers"], where
    # the refusal bodies are the ones the handlers send, not FastAPI's HTTPValidationError
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["ErrorItem"]["properties"]) == {
        "loc", "msg", "type", "input"}
    page = api_page(schema)
    assert "| 429 | too many write requests" in page and "header `Retry-After`" in page
