"""The Deployment page is true to the tests: its nginx configuration is the one the topology
test runs (``nginx_conf``), line for line, and it names the store's real bounds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from starry_guide.serve.store.database import Store
from tests.deployment.topology import FAIL_TIMEOUT_S, nginx_conf
from tests.support.offline import PageReport, offline_page

PAGE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def test_the_pages_nginx_configuration_is_the_tested_one():
    text = PAGE.read_text()
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block, "the Deployment page has no ```nginx block"
    tested = {line.strip() for line in nginx_conf(
        Path("/var/lib/starry-lb"), ["10.77.1.11", "10.77.1.12"]).splitlines()}
    shown = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert [line for line in shown if line not in tested] == []
    assert f"fail_timeout={FAIL_TIMEOUT_S}s" in block.group(1)


def test_the_page_states_the_stores_bounds():
    text = PAGE.read_text()
    assert f"| `connect_timeout` | {Store.CONNECT_TIMEOUT_S} s |" in text
    assert f"| {Store.STATEMENT_TIMEOUT_MS // 1000} s |" in text
    assert f"| {Store.TCP_USER_TIMEOUT_MS // 1000} s |" in text
    assert f"| {Store.POOL_TIMEOUT_S:g} s |" in text
    assert f"about **{Store.DEADLINE_S:g} s**" in text
    assert "DEPLOYMENT_NUMBERS" not in text and "STORE_NUMBERS" not in text, \
        "the measured numbers are not filled in"


@pytest.mark.browser
def test_the_topology_is_drawn_by_the_local_mermaid(browser, tmp_path):
    """The page's diagram renders offline (no syntax error, every host on it)."""
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                            "--site-dir", str(site)], cwd=PAGE.parents[1], capture_output=True,
                           text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-4000:]
    report = PageReport((site / "deployment.html").as_uri())
    page = offline_page(browser, report)
    try:
        page.goto(report.url, wait_until="load")
        page.wait_for_selector(".mermaid svg", timeout=20_000)
        svg = page.inner_html(".mermaid svg")
        assert "Syntax error" not in svg
        for host in ("nginx", "API host 1", "API host 2", "PostgreSQL", "starry replay"):
            assert host in svg, host
        assert not report.problems, report.problems
    finally:
        page.context.close()
