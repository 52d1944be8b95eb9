"""A real PostgreSQL 15 server for the tests, started in a temporary data directory.

``initdb``/``postgres`` refuse to run as root, so as root they run as the ``postgres`` user
(Debian's package creates it). The server listens on a free loopback port with trust
authentication and is stopped (and its directory removed) at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
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


@contextmanager
def postgres_server(database: str = "starry") -> Iterator[str]:
    """Start a throw-away PostgreSQL; yield a SQLAlchemy URL (``postgresql+psycopg://``)."""
    if not (BIN / "postgres").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {BIN}: run `make system-deps` "
                           "(installs Debian's postgresql-15)")
    root = Path(tempfile.mkdtemp(prefix="starry-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(_as_server_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                    "--auth=trust", "--encoding=UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        _as_server_user([str(BIN / "postgres"), "-D", str(data), "-p", str(port),
                         "-k", str(sockets), "-h", "127.0.0.1", "-c", "fsync=on"]),
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run([str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True)
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start:\n"
                                   + (root / "server.log").read_text(errors="replace"))
            time.sleep(0.2)
        subprocess.run([str(BIN.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", database], check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
