"""The server's process model: settings handed to worker processes, and workers that die with
their supervisor.

``starry serve --workers N`` runs uvicorn's supervisor, which starts N worker processes
sharing one listening socket. If the supervisor is killed outright (``kill -9``, the OOM
killer), nothing tells the workers: they went on serving as orphans, holding the port, and a
restart failed with "Address already in use". Each worker therefore asks the kernel for
``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``, Linux) — and, where that is
not available, polls its parent id — so it shuts down gracefully (finishing the requests in
flight, closing the store) and frees the port for the restart.

The supervisor itself is uvicorn's, with one repair (:class:`Supervisor`): it pings each
worker over a pipe and waits for the answer, but it also kept the worker's end of that pipe
open, so a worker that died during a ping (``kill -9`` under load) looked alive for the whole
health-check timeout (60 s here) — and signals, SIGTERM included, waited behind it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
import threading

from uvicorn.supervisors.multiprocess import Multiprocess

from starry_guide.config import ServeSettings

#: the environment variable carrying ServeSettings to worker processes (JSON)
SETTINGS_VARIABLE = "STARRY_SERVE_SETTINGS"
#: allowed browser origins, comma-separated (added to params.yaml's and --cors-origin's)
CORS_VARIABLE = "STARRY_CORS_ORIGINS"
#: the supervisor's process id, for its workers to watch
SUPERVISOR_VARIABLE = "STARRY_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 1.0

log = logging.getLogger(__name__)


def settings_to_environment(settings: ServeSettings) -> None:
    """Hand ``settings`` to worker processes started after this call."""
    os.environ[SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))


def settings_from_environment() -> ServeSettings:
    """The settings ``starry serve`` handed over, or the defaults."""
    raw = os.environ.get(SETTINGS_VARIABLE)
    if not raw:
        return ServeSettings()
    values = json.loads(raw)
    values["cors_origins"] = tuple(values.get("cors_origins", ()))
    return ServeSettings(**values)


def cors_origins_from_environment() -> tuple[str, ...]:
    """Origins listed in ``STARRY_CORS_ORIGINS``."""
    raw = os.environ.get(CORS_VARIABLE, "")
    return tuple(origin.strip() for origin in raw.split(",") if origin.strip())


def die_with_parent(parent_pid: int | None = None) -> str:
    """Make this process receive SIGTERM when its parent exits, however it exits.

    Returns how: ``"prctl"`` (the kernel signals us), ``"poll"`` (a thread checks the
    parent id every second), or ``"orphaned"`` when the parent was already gone (SIGTERM sent
    to ourselves at once).
    """
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    how = "poll"
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                how = "prctl"
        except (OSError, AttributeError):  # no libc symbol: fall back to polling
            pass
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os.kill(os.getpid(), signal.SIGTERM)
        return "orphaned"
    if how == "poll":
        def watch() -> None:
            while os.getppid() == parent_pid:
                threading.Event().wait(PARENT_POLL_SECONDS)
            log.warning("supervisor %d is gone; shutting down", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="watch-supervisor", daemon=True).start()
    return how


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, which notices at once when a worker dies mid-ping.

    After a worker starts, the supervisor closes its own copy of the worker's end of the
    health-check pipe (the worker holds its copy, passed at spawn); then a worker's death
    closes the pipe and the ping in progress returns at once instead of waiting out
    ``timeout_worker_healthcheck``.
    """

    def _release_worker_ends(self) -> None:
        for worker in self.processes:
            if worker.process.pid is not None:  # started: the child has its own copy
                worker.child_conn.close()

    def init_processes(self) -> None:
        super().init_processes()
        self._release_worker_ends()

    def restart_all(self) -> None:
        try:
            super().restart_all()
        finally:
            self._release_worker_ends()

    def keep_subprocess_alive(self) -> None:
        self._release_worker_ends()  # workers added since (SIGTTIN)
        super().keep_subprocess_alive()
        self._release_worker_ends()


def run_workers(app: str, workers: int, **options) -> None:
    """``uvicorn.run(app, workers=workers, **options)`` under :class:`Supervisor`."""
    import uvicorn

    config = uvicorn.Config(app, workers=workers, **options)
    Supervisor(config, sockets=[config.bind_socket()]).run()
