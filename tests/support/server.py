"""A real `starry serve` subprocess for the tests: started on a free port from the project
root and waited for until `/healthz` answers — one implementation, the package's
:mod:`starry_guide.serve.launch` (which the benchmarks and scripts use too), with failures
turned into test failures that quote the server's output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from starry_guide.serve import launch
from starry_guide.serve.launch import STARRY, Server, free_port  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]


def wait_until_healthy(url: str, process: subprocess.Popen, seconds: float = 90,
                       log: Path | None = None) -> None:
    """Return once ``url``/healthz answers 200; else kill ``process`` and fail with its
    output (its ``log`` file, else its stdout pipe)."""
    try:
        launch.wait_until_healthy(url, process, seconds, log)
    except launch.ServerFailed as exc:
        raise AssertionError(str(exc)) from None


def start_server(bundle: Path, folder: Path, *args: str, store: Path | str | None = None,
                 port: int | None = None, workers: int = 1, env: dict | None = None,
                 new_session: bool = False, seconds: float = 90) -> Server:
    """``starry serve`` of ``bundle`` from the project root, its store (default
    ``folder/store.sqlite``) and its output log (``folder/server-PORT-N.log``) in ``folder``;
    returns once healthy (:meth:`Server.stop` stops it gracefully)."""
    port = port or free_port()
    log = Path(folder) / f"server-{port}-{time.monotonic_ns()}.log"
    try:
        return launch.start(bundle, store or Path(folder) / "store.sqlite", *args, port=port,
                            workers=workers, env=env, cwd=ROOT, log=log,
                            new_session=new_session, timeout=seconds)
    except launch.ServerFailed as exc:
        raise AssertionError(str(exc)) from None


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes under ``parent`` (multiprocessing spawns them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def wait_for_workers(url: str, process: subprocess.Popen, workers: int,
                     seconds: float = 90) -> list[int]:
    """Wait until ``starry serve --workers N`` (``process``) has ``workers`` worker processes
    and ``url`` is healthy; return the workers' pids."""
    deadline = time.time() + seconds
    while time.time() < deadline and len(worker_pids(process.pid)) < workers:
        time.sleep(0.2)
    wait_until_healthy(url, process, max(1.0, deadline - time.time()))
    pids = worker_pids(process.pid)
    assert len(pids) == workers, pids
    return pids
