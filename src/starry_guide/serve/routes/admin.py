"""Reloading the served model without a restart — after a promotion or a rollback.

Two ways in, one code path: ``SIGHUP`` to the server process, or ``POST /v1/admin/reload``
with ``Authorization: Bearer <STARRY_ADMIN_TOKEN>`` (the endpoint is off, 403, when the
variable is not set). The new bundle is fetched again from where the service got its first
one — the registry alias (``starry serve``'s default) or the bundle folder (``--bundle``) —
verified (every file's SHA-256, the feature list this code builds) in a worker thread, and
only then swapped in, in one step on the event loop. Requests already being answered finish
with the model they started with; nothing is dropped, and a bundle that fails verification
leaves the old model serving (the endpoint answers 409 with the reason).

With ``--workers N`` each worker is its own process and the endpoint reloads only the worker
that answers it; send ``SIGHUP`` to ``starry serve`` (uvicorn's supervisor) instead: it
replaces the workers one at a time, each new one started by :func:`app_from_source` — which
fetches the champion again — and ready before the old one finishes its answers and exits.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Header, HTTPException, Request

from starry_guide.artifacts.bundle import Bundle, BundleError, load_bundle, resolve_alias
from starry_guide.core import features

TOKEN_ENV = "STARRY_ADMIN_TOKEN"
#: where the served bundle comes from: ``path:<folder>`` or ``alias:<model name>@<alias>``
SOURCE_ENV = "STARRY_BUNDLE_SOURCE"

router = APIRouter()


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


def swap(service, bundle: Bundle) -> None:
    """Serve ``bundle`` from now on. Checks first that this code builds its features (as the
    service does at start); raises :class:`BundleError` and changes nothing otherwise. No
    ``await`` inside: on the event loop, requests see the old model or the new, never half."""
    settings = bundle.feature_settings
    columns = features.feature_columns(settings)
    if columns != bundle.features:
        raise BundleError(f"{bundle.path}: the bundle's features differ from this code's "
                          "feature function; the current model stays")
    service.features = settings
    service.horizons = bundle.horizons
    service.target_sun_column = columns.index("target_sun_elevation_deg")
    service.night_max_sun = float(bundle.spec["night_max_sun_elevation_deg"])
    info = service.registry._names_to_collectors.get("starry_model_info")
    if info is not None:  # the Prometheus gauge names the model being served
        info.labels(service.bundle.version, str(service.bundle.card.get("candidate", ""))).set(0)
        info.labels(bundle.version, str(bundle.card.get("candidate", ""))).set(1)
    service.bundle = bundle


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
            swap(self.service, bundle)
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


def app_from_source():
    """The uvicorn factory of ``starry serve --workers N``: fetch the bundle from
    ``STARRY_BUNDLE_SOURCE`` (again on every worker (re)start), then build the app as
    :func:`starry_guide.serve.api.app_from_environment` does."""
    from starry_guide.serve import api

    text = os.environ.get(SOURCE_ENV)
    if text:  # each process downloads into its own folder: workers start side by side
        source = BundleSource.parse(text, Path(".staging") / "serve" / str(os.getpid()))
        os.environ["STARRY_BUNDLE"] = str(Path(source.fetch()).resolve())
    return api.app_from_environment()


def _authorised(authorization: str | None) -> None:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise HTTPException(403, detail=f"admin endpoints are off: start the server with "
                                        f"{TOKEN_ENV} set")
    expected = f"Bearer {token}".encode()
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
        raise HTTPException(401, detail="a valid 'Authorization: Bearer <token>' is required",
                            headers={"WWW-Authenticate": "Bearer"})


@router.post("/v1/admin/reload", tags=["admin"],
             responses={401: {"description": "missing or wrong bearer token"},
                        403: {"description": f"admin endpoints off ({TOKEN_ENV} not set)"},
                        409: {"description": "the new bundle failed verification; the "
                                             "current model stays"}})
async def reload(request: Request,
                 authorization: str | None = Header(None)) -> dict:
    """Fetch the champion's bundle again (registry alias or bundle folder), verify it and
    serve it from now on; answers in flight finish with the model they started with."""
    _authorised(authorization)
    try:
        return await reloader_for(request.app).reload()
    except BundleError as exc:
        raise HTTPException(409, detail=f"reload refused, the current model stays: {exc}") \
            from None
