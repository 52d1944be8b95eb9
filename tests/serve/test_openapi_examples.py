"""Every example in the OpenAPI schema and in the Serving page validates against its own
model — an app developer can paste any of them and run it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.serve import schemas as api
from starry_guide.serve.app import create_app
from starry_guide.serve.planning import night
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import Store

ROOT = Path(__file__).resolve().parents[2]
MODELS = {m.__name__: m for m in (
    api.Station, api.Observation, api.NowcastRequest, api.HorizonForecast,
    api.NowcastResponse, api.NightRequest, api.FeedbackRequest, api.FeedbackResponse,
    night.NightResponse, night.Step, night.Window, night.Instant, night.Place,
    night.Climatology, night.Summary, night.Darkness, night.Verdict,
    api.PushKeys, api.BrowserPushSubscription, api.QuietHours, api.PushSubscriptionRequest,
    api.PushSubscriptionCreated, api.PushKey)}


@pytest.fixture(scope="module")
def schema(bundle_dir, tmp_path_factory) -> dict:
    service = Service(load_bundle(bundle_dir),
                      Store(tmp_path_factory.mktemp("store") / "store.sqlite"))
    return create_app(service).openapi()


def _examples(node, path=()):
    """(path, schema, example) for every `examples` list and every media-type `example`."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and ("type" in node or "anyOf" in node
                                                       or "$ref" in node
                                                       or "properties" in node):
            for example in node["examples"]:
                yield path, {k: v for k, v in node.items() if k != "examples"}, example
        if "example" in node and "schema" in node:
            yield path, node["schema"], node["example"]
        for key, value in node.items():
            yield from _examples(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _examples(value, (*path, i))


def test_every_schema_example_validates(schema):
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(schema, default_specification=DRAFT202012))
    found = list(_examples(schema))
    assert len(found) > 60  # every field has one
    for path, sub, example in found:
        sub = json.loads(json.dumps(sub).replace('"#/components', '"urn:openapi#/components'))
        validator = jsonschema.Draft202012Validator(
            sub, registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = list(validator.iter_errors(example))
        assert not errors, (path, example, errors[0].message)


def test_model_examples_validate_against_their_models(schema):
    checked = 0
    for name, component in schema["components"]["schemas"].items():
        for example in component.get("examples", []):
            MODELS[name].model_validate(example)
            checked += 1
    assert checked >= 7


def test_every_field_is_described_with_an_example(schema):
    undescribed = []
    for name, component in schema["components"]["schemas"].items():
        if name not in MODELS:
            continue  # FastAPI's own error models
        for field, spec in component.get("properties", {}).items():
            if "description" not in spec and "$ref" not in spec and "allOf" not in spec:
                undescribed.append(f"{name}.{field}")
            is_model = "$ref" in spec or any("$ref" in s for s in spec.get("anyOf", []))
            if "examples" not in spec and not is_model and spec.get("type") != "array":
                undescribed.append(f"{name}.{field} (example)")
    assert not undescribed


def _doc_examples() -> list[str]:
    text = (ROOT / "docs" / "serving.md").read_text()
    return re.findall(r"```json\n(.*?)```", text, flags=re.S)


def test_the_serving_page_examples_are_valid_json_and_valid_bodies():
    blocks = _doc_examples()
    assert len(blocks) >= 4
    for block in blocks:
        value = json.loads(block)  # valid JSON, no "…" placeholders
        kinds = [m for m in (api.NowcastRequest, api.NowcastResponse, api.NightRequest,
                             night.NightResponse, api.FeedbackRequest, api.FeedbackResponse)
                 if _valid(m, value)]
        assert kinds, f"this example matches no request or response model:\n{block[:300]}"


def _valid(model, value) -> bool:
    try:
        model.model_validate(value)
    except Exception:  # noqa: BLE001 - pydantic's ValidationError: not this model
        return False
    return True


def test_the_documented_nowcast_example_runs(bundle_dir, tmp_path):
    from fastapi.testclient import TestClient

    service = Service(load_bundle(bundle_dir), Store(tmp_path / "store.sqlite"))
    with TestClient(create_app(service)) as client:
        requests = [json.loads(b) for b in _doc_examples()]
        nowcast = next(r for r in requests if _valid(api.NowcastRequest, r))
        response = client.post("/v1/nowcast", json=nowcast)
        assert response.status_code == 200, response.text
        assert len(response.json()["forecasts"]) == 12
        response = client.post("/v1/nowcast", json=api.NOWCAST_EXAMPLE)
        assert response.status_code == 200
