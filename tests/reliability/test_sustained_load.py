"""A busy evening, bounded to ~25 s: closed-loop clients on keep-alive connections against a
real uvicorn process and a real SQLite store. Every answered prediction is in the store, and
the store's files stay under the stated bound while the load runs: the WAL under
Maintenance.WAL_LIMIT_BYTES plus 32 MiB of headroom (one maintenance period of writes at the
highest rate seen here, twice over), the database under 8 KiB per stored prediction."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

from starry_guide.serve.store.database import Maintenance
from tests.reliability.conftest import FAST, GRACEFUL, start_server

SECONDS = 25.0
CLIENTS = 16
WAL_BOUND = Maintenance.WAL_LIMIT_BYTES + 32 * 1024 * 1024
DATABASE_BYTES_PER_PREDICTION = 8 * 1024


async def client(port: int, request: bytes, stop: float, ids: list[str],
                 statuses: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            statuses.append(int(head[9:12]))
            if head.startswith(b"HTTP/1.1 200"):
                ids.append(json.loads(body)["prediction_id"])
    finally:
        writer.close()


async def load(port: int, request: bytes, ids: list[str], statuses: list[int]) -> None:
    stop = time.monotonic() + SECONDS
    await asyncio.gather(*(client(port, request, stop, ids, statuses)
                           for _ in range(CLIENTS)))


def test_sustained_load_loses_nothing_and_the_store_stays_bounded(bundle_dir, tmp_path,
                                                                   body):
    server = start_server(bundle_dir, tmp_path, *FAST)
    payload = json.dumps(body).encode()
    request = (b"POST /v1/nowcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    wal = server.store.with_name(server.store.name + "-wal")
    largest = {"wal": 0, "database": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            for name, path in (("wal", wal), ("database", server.store)):
                try:
                    largest[name] = max(largest[name], path.stat().st_size)
                except FileNotFoundError:
                    pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    ids: list[str] = []
    statuses: list[int] = []
    try:
        asyncio.run(load(server.port, request, ids, statuses))
    finally:
        done.set()
        watcher.join()
        assert server.stop() in GRACEFUL, server.log()

    assert ids and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    with sqlite3.connect(server.store) as db:
        stored = {row[0] for row in db.execute("SELECT prediction_id FROM predictions")}
    missing = set(ids) - stored
    assert not missing, f"{len(missing)} answered predictions are not in the store"
    assert largest["wal"] <= WAL_BOUND, (largest, len(ids))
    assert server.store.stat().st_size <= len(ids) * DATABASE_BYTES_PER_PREDICTION + 2**20
    assert not wal.exists() or wal.stat().st_size == 0  # a clean stop leaves no WAL behind
    print(f"\n{len(ids)} nowcasts in {SECONDS:g} s ({len(ids) / SECONDS:.0f}/s); largest WAL "
          f"{largest['wal'] / 2**20:.1f} MiB, database {largest['database'] / 2**20:.1f} MiB")
