"""Waiting for a `starry serve` subprocess the tests started."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_healthy(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    """Return once ``url``/healthz answers 200; else kill ``process`` and fail with its output."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(process.stdout.read())
