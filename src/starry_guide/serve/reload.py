"""Reloading the served model without a restart — after a promotion or a rollback.

Two ways in, one code path: ``SIGHUP`` to the server process, or ``POST /v1/admin/reload``
with ``Authorization: Bearer <STARRY_ADMIN_TOKEN>`` (the endpoint is off, 403, when the
variable is not set). The new bundle is fetched again from where the service got its first
one — the registry alias (``starry serve``'s default) or the bundle folder (``--bundle``) —
verified (every file's SHA-256, the feature list this code builds) in a worker thread, and
only then swapped in, in one step on the event loop. Requests already being answered finish
with the model they started with; nothing is dropped, and a bundle that fails verification
leaves the old model serving (the endpoint answers 409 with the reason). The endpoint is
:mod:`starry_guide.serve.routes.admin`; this module is the machinery.

With ``--workers N`` each worker is its own process and the endpoint reloads only the worker
that answers it; send ``SIGHUP`` to ``starry serve`` (uvicorn's supervisor) instead: it
replaces the workers one at a time, each new one started by
:func:`starry_guide.serve.app.app_from_source` — which fetches the champion again — and
ready before the old one finishes its answers and exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from starry_guide.artifacts.bundle import load_bundle, resolve_alias

TOKEN_ENV = "STARRY_ADMIN_TOKEN"
#: where the served bundle comes from: ``path:<folder>`` or ``alias:<model name>@<alias>``
SOURCE_ENV = "STARRY_BUNDLE_SOURCE"

@dataclass(frozen=True)
class BundleSource:
    """Where to fetch the bundle from, again."""

    path: Path | None = None
    model_name: str | None = None
    alias: str | None = None
    cache_dir: Path | None = None

    def describe(self) -> str:
        return f"path:{self.path}" if self.path else f"alias:{self.model_name}@{self.alias}"

    @classmethod
    def parse(cls, text: str, cache_dir: Path | None = None) -> BundleSource:
        kind, _, rest = text.partition(":")
        if kind == "path" and rest:
            return cls(path=Path(rest))
        if kind == "alias" and "@" in rest:
            name, alias = rest.rsplit("@", 1)
            return cls(model_name=name, alias=alias,
                       cache_dir=cache_dir or Path(".staging") / "serve")
        raise ValueError(f"{SOURCE_ENV}={text!r}: expected path:FOLDER or alias:MODEL@ALIAS")

    def fetch(self) -> Path:
        """The folder of the current bundle (downloaded again for an alias)."""
        if self.path is not None:
            return self.path
        return resolve_alias(self.model_name, self.alias, self.cache_dir)


class Reloader:
    """Fetches, verifies and swaps in the bundle; one reload at a time."""

    def __init__(self, service, source: BundleSource) -> None:
        self.service = service
        self.source = source
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def reload(self) -> dict:
        async with self._lock:
            previous = self.service.bundle
            path = await asyncio.to_thread(self.source.fetch)
            bundle = await asyncio.to_thread(load_bundle, path)
            self.service.swap(bundle)
            self.reloads += 1
            return {"previous": {"model_version": previous.version,
                                 "candidate": previous.card.get("candidate")},
                    "model_version": bundle.version,
                    "candidate": bundle.card.get("candidate"),
                    "source": self.source.describe()}


def reloader_for(app) -> Reloader:
    """The app's reloader, made on first use from ``STARRY_BUNDLE_SOURCE`` (set by
    ``starry serve``), else the folder the current bundle was loaded from."""
    reloader = getattr(app.state, "reloader", None)
    if reloader is None:
        service = app.state.service
        text = os.environ.get(SOURCE_ENV)
        source = BundleSource.parse(text) if text else BundleSource(path=service.bundle.path)
        reloader = app.state.reloader = Reloader(service, source)
    return reloader


def install_sighup(app) -> None:
    """Reload on ``SIGHUP`` (call before the server starts; the handler runs the reload on
    the server's event loop)."""
    def handler(signum, frame) -> None:
        loop = asyncio.get_event_loop()

        def start() -> None:
            task = loop.create_task(reloader_for(app).reload())
            task.add_done_callback(_report)

        loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGHUP, handler)


def _report(task: asyncio.Task) -> None:
    import sys

    if task.cancelled():
        return
    if task.exception() is not None:
        print(f"reload on SIGHUP failed, the current model stays: {task.exception()}",
              file=sys.stderr, flush=True)
    else:
        done = task.result()
        print(f"reloaded on SIGHUP: now {done['candidate']} {done['model_version']}",
              file=sys.stderr, flush=True)
