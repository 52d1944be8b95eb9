"""A lean closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending the
same pre-encoded request as soon as its previous response has arrived.

Why not httpx: on this 2-core machine an httpx client spends ~2 ms of CPU per request, so it
-- not the server -- set the pace, and a bare endpoint measured ~500 requests/s. Raw asyncio
streams (on uvloop) cost a few tens of microseconds, so the numbers describe the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np


def encode_post(path: str, body: dict, port: int) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


def encode_get(path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


async def _connection(port: int, request: bytes, stop: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _run(port: int, request: bytes, clients: int, seconds: float,
               warmup: int) -> dict:
    warm: list[float] = []
    for _ in range(warmup):  # warm up code paths (and the sun cache) before measuring
        await _connection(port, request, time.perf_counter() + 0.2, warm)
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, start + seconds, latencies)
                           for _ in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests_per_s": round(len(ms) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "requests": len(ms) + len(warm)}


def closed_loop(port: int, request: bytes, clients: int, seconds: float,
                warmup: int = 1) -> dict:
    """Requests/s and p50/p99 latency (ms) of ``clients`` connections for ``seconds``, and
    the number of ``requests`` sent in all (the warm-up's included)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(_run(port, request, clients, seconds, warmup))
    return uvloop.run(_run(port, request, clients, seconds, warmup))


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its live descendants
    (uvicorn's workers), from /proc. Unlike latency, CPU per request barely moves when
    other work shares the machine, so it compares servers measured at different loads."""
    family = {pid}
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    grew = True
    while grew:
        grew = False
        for child, fields in stats.items():
            if child not in family and int(fields[1]) in family:
                family.add(child)
                grew = True
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in family if p in stats) / _TICKS


def measure(pid: int, port: int, request: bytes, clients: int, seconds: float) -> dict:
    """:func:`closed_loop` plus the server's CPU milliseconds per request (``pid``: the
    server process)."""
    before = cpu_seconds(pid)
    result = closed_loop(port, request, clients, seconds)
    result["cpu_ms_per_request"] = round(
        (cpu_seconds(pid) - before) * 1000 / max(1, result.pop("requests")), 3)
    return result
