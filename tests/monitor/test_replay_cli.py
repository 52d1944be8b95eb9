"""`starry replay` with bad arguments: one clear line, exit code 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
STARRY = [sys.executable, "-m", "starry_guide.cli"]


def replay(*args: str, token: str | None = "a-token") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STARRY_FEED_TOKEN"}
    if token is not None:
        env["STARRY_FEED_TOKEN"] = token
    return subprocess.run([*STARRY, "replay", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--fault", "melting-sensor@2001-07-01"], "unknown fault 'melting-sensor'"),
    (["--fault", "stuck-cloud-sensor"], "write NAME@DATE"),
    (["--fault", "stuck-cloud-sensor@yesterday"], "is not a date"),
    (["--speed", "-1"], "--speed -1"),
    (["--feedback-rate", "1.5"], "between 0 and 1"),
    (["--start", "2030-01-01"], "pick a start between"),
    (["--hours", "0"], "at least 1 hour"),
])
def test_bad_arguments_are_explained(args, message):
    result = replay("greensboro_nc", "--url", "http://127.0.0.1:9", *args)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["notaurl", "http://[::1"])
def test_bad_url_is_explained(url):
    result = replay("greensboro_nc", "--url", url, "--hours", "2")
    assert result.returncode == 1 and "--url" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_token_names_the_variable():
    result = replay("greensboro_nc", "--url", "http://127.0.0.1:9", "--token-env", "NO_SUCH_VAR",
                    token=None)
    assert result.returncode == 1 and "NO_SUCH_VAR" in result.stderr


def test_unusable_file_is_rejected_with_its_reasons(tmp_path):
    bad = tmp_path / "empty.csv"
    bad.write_text("time,opaque_cloud_tenths\n")
    result = replay(str(bad), "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "not usable for replay" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_server_says_start_it():
    result = replay("greensboro_nc", "--url", f"http://127.0.0.1:{free_port()}", "--hours", "3")
    assert result.returncode == 1 and "cannot reach the server" in result.stderr
    assert "Traceback" not in result.stderr
