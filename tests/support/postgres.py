"""A real PostgreSQL 15 server for the tests, started in a temporary data directory.

``initdb``/``postgres`` refuse to run as root, so as root they run as the ``postgres`` user
(Debian's package creates it). The server listens on a free loopback port (or the address
given, e.g. inside a network namespace) with trust authentication and is stopped (and its
directory removed) at the end. :class:`PostgresServer` can also be stopped and started again
in the same data directory, on the same port — a database restart, as the fault tests need.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BIN = Path(os.environ.get("STARRY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A throw-away PostgreSQL in its own directory.

    Parameters
    ----------
    host : the address it listens on (default loopback)
    port : default a free loopback port
    trusted_network : a CIDR whose clients are trusted too (e.g. a namespace's subnet);
        by default only loopback connects
    prefix : a command prefix the server runs under (e.g. ``ip netns exec NS``)
    """

    def __init__(self, database: str = "starry", *, host: str = "127.0.0.1",
                 port: int | None = None, trusted_network: str | None = None,
                 prefix: Sequence[str] = ()):
        if not (BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL binaries not found in {BIN}: run `make "
                               "system-deps` (installs Debian's postgresql-15)")
        self.database = database
        self.host = host
        self.port = port or free_port()
        self.prefix = list(prefix)
        self.root = Path(tempfile.mkdtemp(prefix="starry-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        subprocess.run(_as_server_user([str(BIN / "initdb"), "-D", str(self.data), "-U",
                                        "postgres", "--auth=trust", "--encoding=UTF8",
                                        "--no-sync"]), check=True, capture_output=True)
        if trusted_network:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {trusted_network} trust\n")
        self.process: subprocess.Popen | None = None
        self._log = None
        self.start()
        self._run([str(BIN / "createdb"), "-h", self.host, "-p", str(self.port), "-U",
                   "postgres", database])

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its database (``postgresql+psycopg://``)."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *cmd], check=True, capture_output=True)

    def ready(self) -> bool:
        return subprocess.run([*self.prefix, str(BIN / "pg_isready"), "-h", self.host, "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def start(self, seconds: float = 30) -> None:
        """Start the server (again) and return once it accepts connections."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*self.prefix, *_as_server_user([
                str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.sockets), "-h", self.host, "-c", "fsync=on"])],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + seconds
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("PostgreSQL did not start:\n"
                                   + self.log_path.read_text(errors="replace"))
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (SIGINT: sessions are ended, a clean shutdown — what a
        restart does) or ``immediate`` (SIGQUIT: no checkpoint, crash recovery on start)."""
        signals = {"fast": "-INT", "immediate": "-QUIT"}
        if self.process is not None and self.process.poll() is None:
            # the postmaster runs as the postgres user under runuser: signal it by its pid
            pid = (self.data / "postmaster.pid").read_text().split()[0] \
                if (self.data / "postmaster.pid").exists() else None
            if pid:
                subprocess.run(["kill", signals[mode], pid], capture_output=True)
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        """Stop it and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server(database: str = "starry") -> Iterator[str]:
    """Start a throw-away PostgreSQL; yield a SQLAlchemy URL (``postgresql+psycopg://``)."""
    with running_postgres(database) as server:
        yield server.url


@contextmanager
def running_postgres(database: str = "starry", **options) -> Iterator[PostgresServer]:
    """A :class:`PostgresServer` (``options`` as its own), removed at the end."""
    server = PostgresServer(database, **options)
    try:
        yield server
    finally:
        server.remove()
