"""Where a ``POST /v1/nowcast`` spends its time: py-spy samples a real ``starry serve`` (one
worker, the committed champion, a SQLite store, write-rate limit raised out of the way) while
``benchmarks/loadgen.py`` keeps 10 clients busy, then prints the top frames.

py-spy samples only the thread holding the GIL (``--gil``): on this server the GIL is the
scarce resource — the event loop (HTTP, validation, features, ONNX, answers) and the store's
writer thread (building and executing the inserts) take turns with it, while the fsync of a
commit and onnxruntime's kernels run without it. Two views of the samples (py-spy's collapsed
stacks):

* **inclusive**: the share of samples in which a function is on the stack (itself or
  anything it calls) — what a flame graph's widths show;
* **self**: the share in which it is the innermost frame.

    uv run python benchmarks/profile_nowcast.py [--seconds 8] [--clients 10] [--out FILE]
    uv run python benchmarks/profile_nowcast.py --get '/v1/night?lat=36.1&lon=-79.95'

``--get PATH`` profiles a cached read instead (a station ``kgso`` with 10 real hours is
registered first, so ``/v1/stations/kgso/nowcast`` and ``.../night`` answer).

Needs ``models/champion/bundle`` and ``data/processed/observations.parquet`` (``make repro``)
and permission to ptrace the server (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "champion" / "bundle"
sys.path.insert(0, str(ROOT))
from benchmarks import loadgen  # noqa: E402
from starry_guide.serve import launch  # noqa: E402
from tests.serve.conftest import request_body  # noqa: E402  (the tests' real-data request)

#: frames under which everything runs (the CLI, uvicorn's and asyncio's loops, the thread
#: pool's worker): listed they would only say "100 %"
SCAFFOLDING = ("<frozen runpy>", "typer/", "click/", "starry_guide/cli.py", "uvicorn/main.py",
               "uvicorn/server.py", "uvicorn/_compat.py", "asyncio/runners.py",
               "asyncio/base_events.py", "asyncio/events.py", "threading.py",
               "concurrent/futures/thread.py", "uvloop/")


def frame_name(frame: str) -> str:
    """``function (path:line)`` -> ``function (module path)``, without the line and the
    virtualenv's prefix, so that samples of one function add up."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})"


#: where a sample's time goes, first match from the top: (share, frames that mark it)
CATEGORIES = (
    ("store: building and executing the inserts", ("Store.log_predictions",)),
    ("forecast: repairs, features, ONNX (core.inference.infer)", ("infer (",)),
    ("thread hand-offs (thread pool, writer thread)", (
        "run_in_threadpool", "ThreadPoolExecutor.submit", "Condition.notify",
        "run_sync_in_worker_thread")),
    ("batching and answers (service.py around infer)", (
        "Service.forecast_many", "Service._answer_pending", "Service._settle",
        "Service._committed", "Service._commit")),
    ("request arrays (recent_hours)", ("recent_hours",)),
    ("body validation (pydantic-core)", ("model_validate_json",)),
    # the reads themselves, not ReadShortcut.__call__, which every request passes through
    ("cached read (serve/reads.py)", ("Reads.", "ReadShortcut._send", "respond (")),
    ("writing the response (uvicorn's send, the socket)", (
        "RequestResponseCycle.send", "CoalescingTransport")),
    ("FastAPI's routing, dependencies and route (under the middleware)", (
        "ExceptionMiddleware.__call__ (starlette/middleware/exceptions.py",)),
    ("the nowcast shortcut (serialising the answer)", ("NowcastShortcut.__call__",)),
    ("the request guard (reading the body, the JSON check)", ("RequestGuard._guarded",)),
)
OTHER = "uvicorn's parsing, the event loop, metrics, FastAPI's outer layers"


def categories(collapsed: str) -> list[tuple[str, float]]:
    """Share of the samples in each of :data:`CATEGORIES` (else :data:`OTHER`)."""
    shares: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        category = next((name for name, marks in CATEGORIES
                         if any(mark in stack for mark in marks)), OTHER)
        shares[category] += n
    return [(name, round(100 * shares[name] / total, 1))
            for name in [*(name for name, _ in CATEGORIES), OTHER] if shares[name]]


def top_frames(collapsed: str, limit: int) -> dict:
    """The ``limit`` functions with the most inclusive and the most self samples, from
    py-spy's collapsed (``--format raw``) output."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        total += n
        for name in set(frames):
            if not any(part in name for part in SCAFFOLDING):
                inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    share = lambda counter: [(name, round(100 * n / total, 1))  # noqa: E731
                             for name, n in counter.most_common(limit)]
    return {"samples": total, "inclusive": share(inclusive), "self": share(own)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--out", type=Path, help="also write the collapsed stacks here")
    parser.add_argument("--get", metavar="PATH", help="profile GET PATH instead")
    parser.add_argument("--read", type=Path, metavar="FILE",
                        help="only summarise collapsed stacks written before by --out")
    args = parser.parse_args()
    if args.read:
        report(args.read.read_text(), args.limit, None, args.clients)
        return
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or \
        shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: `uv sync` (it is a dev dependency)")
    observations = pd.read_parquet(ROOT / "data" / "processed" / "observations.parquet")
    body = request_body(observations)
    with tempfile.TemporaryDirectory(prefix="starry-profile-") as tmp:
        token = "profile-feed-token-0123456789"
        server = launch.start(BUNDLE, Path(tmp) / "store.sqlite", "--rate-per-s", "1000000",
                              "--rate-burst", "1000000", cwd=ROOT,
                              env={"STARRY_FEED_TOKEN": token})
        try:
            if args.get:
                auth = {"Authorization": f"Bearer {token}"}
                httpx.put(f"{server.url}/v1/stations/kgso", headers=auth,
                          json=body["station"]).raise_for_status()
                httpx.post(f"{server.url}/v1/stations/kgso/observations", headers=auth,
                           json={"observations": body["observations"]}).raise_for_status()
                request = loadgen.encode_get(args.get, server.port)
            else:
                request = loadgen.encode_post("/v1/nowcast", body, server.port)
            loadgen.closed_loop(server.port, request, args.clients, 1.0)  # warm up
            stacks = Path(tmp) / "stacks.txt"
            # --subprocesses: `starry serve` runs uvicorn's worker as a child process
            spy = subprocess.Popen([py_spy, "record", "--pid", str(server.process.pid),
                                    "--subprocesses", "--gil", "--rate", "250", "--format", "raw",
                                    "--duration", str(int(args.seconds)), "--output",
                                    str(stacks), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            result: dict = {}
            load = threading.Thread(target=lambda: result.update(loadgen.closed_loop(
                server.port, request, args.clients, args.seconds + 1.0)))
            load.start()
            _, err = spy.communicate()
            load.join()
            if spy.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')}")
            collapsed = stacks.read_text()
            if args.out:
                args.out.write_text(collapsed)
        finally:
            server.stop()
    report(collapsed, args.limit, result, args.clients)


def report(collapsed: str, limit: int, load: dict | None, clients: int) -> None:
    top = top_frames(collapsed, limit)
    if load is not None:
        print(f"load while sampled ({clients} clients): {load}")
    print(f"{top['samples']} samples (1-minute load average now: {os.getloadavg()[0]:.1f})")
    print("\nwhere the GIL time goes:")
    for name, percent in categories(collapsed):
        print(f"  {percent:5.1f} %  {name}")
    for view in ("inclusive", "self"):
        print(f"\n{view}:")
        for name, percent in top[view]:
            print(f"  {percent:5.1f} %  {name}")


if __name__ == "__main__":
    main()
