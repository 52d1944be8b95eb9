"""The Deployment page is true to the tests: its nginx configuration is the one the topology
test runs (``nginx_conf``), line for line, and it names the store's real bounds."""

from __future__ import annotations

import re
from pathlib import Path

from starry_guide.serve.store.database import Store
from tests.deployment.topology import FAIL_TIMEOUT_S, nginx_conf

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
