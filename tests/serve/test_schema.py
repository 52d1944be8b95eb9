"""Property-based tests of the API against its own OpenAPI schema (schemathesis)."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from starry_guide.config import ServeSettings
from starry_guide.serve.api import Service, create_app
from starry_guide.serve.bundle import load_bundle
from starry_guide.serve.store import Store


def test_api_conforms_to_its_schema(bundle_dir, tmp_path):
    # hypothesis sends hundreds of writes from one address: the per-client rate limit (tested
    # in tests/reliability) would answer most of them 429 before they reach the endpoints
    app = create_app(Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite")),
                     ServeSettings(rate_per_s=0))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/nowcast", "/v1/night", "/v1/feedback",
                                              "/healthz"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            # no 5xx; every response matches its documented schema. Not checked: that every
            # schema-valid body is accepted — a nowcast also needs enough *consecutive* hours,
            # which JSON Schema cannot say; those get a field-level 422 (tests/serve/test_api)
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
