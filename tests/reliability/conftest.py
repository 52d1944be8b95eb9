"""A real `starry serve` (uvicorn) on a free port, over a real store, for the reliability
suite; the bundle comes from the serving tests' fixture (a model trained on real stations)."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from starry_guide.serve import launch
from tests.serve.conftest import bundle_dir, request_body, rows  # noqa: F401 (fixtures)
from tests.support.server import start_server as support_start

#: no write-rate limit: the suite's clients all come from one address
FAST = ["--rate-per-s", "0"]
#: exit statuses of a graceful stop: uvicorn re-raises the SIGTERM it handled once it has
#: drained the requests in flight and run the app's shutdown (one worker); the supervisor
#: of --workers exits 0
GRACEFUL = (0, -signal.SIGTERM)


@dataclass
class Server:
    """A running server of this suite: its process, port, store and output log."""

    started: launch.Server
    store: Path

    @property
    def process(self) -> subprocess.Popen:
        return self.started.process

    @property
    def port(self) -> int:
        return self.started.port

    @property
    def url(self) -> str:
        return self.started.url

    def log(self) -> str:
        return self.started.output()

    def stop(self, timeout: float = 20) -> int:
        return self.started.stop(timeout)


def start_server(bundle: Path, folder: Path, *args: str, port: int | None = None,
                 env: dict | None = None, workers: int = 1,
                 store: Path | None = None) -> Server:
    """`starry serve` in its own session (so a test can kill its whole process group)."""
    store = store or folder / "store.sqlite"
    return Server(support_start(bundle, folder, *args, store=store, port=port, env=env,
                                workers=workers, new_session=True), store)


@pytest.fixture(scope="module")
def server(bundle_dir, tmp_path_factory):  # noqa: F811
    """One worker with the default limits, except no write-rate limit."""
    s = start_server(bundle_dir, tmp_path_factory.mktemp("server"), *FAST)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def body(observations) -> dict:
    return request_body(observations)
