"""The service's /docs (Swagger UI) works offline: a real uvicorn process, opened in headless
Chromium with every request that would leave the machine aborted."""

from __future__ import annotations

import httpx
import pytest

from tests.support.offline import PageReport, offline_page
from tests.support.server import start_server


@pytest.fixture(scope="module")
def service(bundle_dir, tmp_path_factory):
    started = start_server(bundle_dir, tmp_path_factory.mktemp("docs-ui"))
    yield started.url
    started.stop()


def test_docs_page_references_only_the_service(service):
    html = httpx.get(f"{service}/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    asset = httpx.get(f"{service}/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith(
        "text/javascript")
    assert httpx.get(f"{service}/docs/assets/../../api.py").status_code == 404
    assert httpx.get(f"{service}/docs/assets/nothing.js").status_code == 404
    assert "/docs" not in httpx.get(f"{service}/openapi.json").json()["paths"]


def test_swagger_ui_renders_every_endpoint_offline(browser, service):
    report = PageReport(f"{service}/docs")
    page = offline_page(browser, report)
    try:
        page.goto(report.url, wait_until="load")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        text = page.inner_text(".swagger-ui")
        for path in ("/v1/nowcast", "/v1/night", "/healthz"):
            assert path in text
        assert "Starry Guide" in text
        assert not report.problems, report.problems
    finally:
        page.context.close()
