"""A real `starry serve` (uvicorn) on a free port, over a real store, for the reliability
suite; the bundle comes from the serving tests' fixture (a model trained on real stations)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import bundle_dir, request_body, rows  # noqa: F401 (fixtures)

STARRY = [sys.executable, "-m", "starry_guide.cli"]
ROOT = Path(__file__).resolve().parents[2]
#: no write-rate limit: the suite's clients all come from one address
FAST = ["--rate-per-s", "0"]
#: exit statuses of a graceful stop: uvicorn re-raises the SIGTERM it handled once it has
#: drained the requests in flight and run the app's shutdown (one worker); the supervisor
#: of --workers exits 0
GRACEFUL = (0, -signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    store: Path
    output: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_until_up(url: str, process: subprocess.Popen, output: Path,
                  timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n"
                                 + output.read_text(errors="replace"))
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not start:\n" + output.read_text(errors="replace"))


def start_server(bundle: Path, folder: Path, *args: str, port: int | None = None,
                 env: dict | None = None, workers: int = 1,
                 store: Path | None = None) -> Server:
    """`starry serve` in its own session (so a test can kill its whole process group)."""
    port = port or free_port()
    store = store or folder / "store.sqlite"
    output = folder / f"server-{port}-{time.monotonic_ns()}.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*STARRY, "serve", "--bundle", str(bundle), "--port", str(port),
             "--store", str(store), "--workers", str(workers), *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})})
    server = Server(process, port, store, output)
    wait_until_up(server.url, process, output)
    return server


@pytest.fixture(scope="module")
def server(bundle_dir, tmp_path_factory):  # noqa: F811
    """One worker with the default limits, except no write-rate limit."""
    s = start_server(bundle_dir, tmp_path_factory.mktemp("server"), *FAST)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def body(observations) -> dict:
    return request_body(observations)
