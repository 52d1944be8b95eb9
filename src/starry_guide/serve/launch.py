"""Start ``starry serve`` as a subprocess on a free port and wait until it is healthy — one
implementation for the scripts, benchmarks and tests that need a real server.

    server = launch.start(bundle, store, "--rate-per-s", "0", log=folder / "server.log")
    try:
        httpx.get(f"{server.url}/v1/night", params=...)
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

#: the command line of the CLI in this interpreter (no console script needed)
STARRY = [sys.executable, "-m", "starry_guide.cli"]


class ServerFailed(RuntimeError):
    """The server exited or did not answer ``/healthz`` in time; the message holds its
    output when it was kept."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _output(process: subprocess.Popen, log: Path | None) -> str:
    if log is not None and Path(log).is_file():
        return Path(log).read_text(errors="replace")
    if process.stdout is not None:
        try:
            out = process.stdout.read()
        except ValueError:  # closed
            return ""
        return out.decode(errors="replace") if isinstance(out, bytes) else out
    return "(the server's output was not kept)"


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0,
                       log: Path | None = None) -> None:
    """Return once ``url/healthz`` answers 200.

    Parameters
    ----------
    url : str
        The server's base URL.
    process : subprocess.Popen
        The server; if it exits first, or ``timeout`` seconds pass, it is killed.
    timeout : float
    log : Path, optional
        Where its output goes (else its ``stdout`` pipe, if any), quoted in the error.

    Raises
    ------
    ServerFailed
        with the server's exit status and output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"the server exited with status {process.returncode}:\n"
                               + _output(process, log))
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise ServerFailed(f"the server did not answer {url}/healthz within {timeout:g} s:\n"
                       + _output(process, log))


@dataclass
class Server:
    """A running ``starry serve``."""

    process: subprocess.Popen
    port: int
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What the server printed so far (from ``log``)."""
        return _output(self.process, self.log)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (graceful: answers in flight finish), then SIGKILL after ``timeout`` s.
        Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(bundle: Path | str, store: Path | str, *args: str, port: int | None = None,
          workers: int = 1, env: dict[str, str] | None = None, cwd: Path | None = None,
          log: Path | None = None, new_session: bool = False,
          timeout: float = 90.0) -> Server:
    """``starry serve --bundle BUNDLE --store STORE --port PORT --workers N ARGS...``, then
    :func:`wait_until_healthy`.

    Parameters
    ----------
    bundle : path
        The ONNX bundle folder.
    store : path or str
        The serving store: a SQLite file or a database URL.
    *args : str
        More ``starry serve`` options (e.g. ``"--rate-per-s", "0"``).
    port : int, optional
        Default: :func:`free_port`.
    workers : int
    env : dict, optional
        Added to this process's environment (e.g. ``STARRY_FEED_TOKEN``).
    cwd : Path, optional
        Working directory (the project root, for its ``params.yaml``).
    log : Path, optional
        File for the server's output (stdout and stderr); without it the output is dropped.
    new_session : bool
        Start it in a session of its own (so its whole process group can be signalled).
    timeout : float
        Seconds to wait for ``/healthz``.

    Returns
    -------
    Server

    Raises
    ------
    ServerFailed
        when it does not come up (it is killed).
    """
    port = port or free_port()
    command = [*STARRY, "serve", "--bundle", str(bundle), "--port", str(port),
               "--store", str(store), "--workers", str(workers), *args]
    environment = {**os.environ, **(env or {})}
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with Path(log).open("wb") as out:
            process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=out,
                                       stderr=subprocess.STDOUT,
                                       start_new_session=new_session)
    else:
        process = subprocess.Popen(command, cwd=cwd, env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=new_session)
    server = Server(process, port, Path(log) if log is not None else None)
    wait_until_healthy(server.url, process, timeout, server.log)
    return server
