"""The app factory: the FastAPI application around a loaded service — middleware (request
guard, CORS, metrics), the routers, the OpenAPI schema, the web app — and the factories
uvicorn's worker processes call. No router imports this module.

Start it with ``starry serve`` (see the Serving page of the docs).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.config import ServeSettings
from starry_guide.serve import deps, process, reload
from starry_guide.serve.http import errors
from starry_guide.serve.http.guard import RequestGuard
from starry_guide.serve.nowcast_shortcut import NowcastShortcut
from starry_guide.serve.planning import place
from starry_guide.serve.push import nudger as nudges
from starry_guide.serve.push.vapid import Keys, default_key_file
from starry_guide.serve.reads import Reads, ReadShortcut
from starry_guide.serve.routes import admin, events, feed, forecast, push
from starry_guide.serve.schemas import (
    FeedbackRequest,
    NightRequest,
    NowcastRequest,
    PushSubscriptionRequest,
)
from starry_guide.serve.service import Service
from starry_guide.serve.store import database as store
from starry_guide.serve.store.database import Store
from starry_guide.serve.web import docs_ui, webapp


class Metrics:
    """ASGI middleware: counts responses by endpoint and status and times the ``/v1/``
    endpoints — every response, the guard's refusals included.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every request in
    extra tasks and streams (measured: a pass-through one left a bare endpoint 40 % of its
    throughput).
    """

    ENDPOINTS = frozenset({"/v1/nowcast", "/v1/night", "/v1/feedback", "/healthz",
                           "/metrics", "/docs", "/openapi.json", "/v1/push/key",
                           "/v1/push/subscriptions"})

    def __init__(self, app, service: Service):
        self.app = app
        self.service = service
        # the labelled children, looked up once each: ``labels()`` takes a lock and builds
        # its key on every call (endpoints are a fixed set, statuses a handful)
        self._latency: dict[str, object] = {}
        self._requests: dict[tuple[str, int], object] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # unknown paths share one label: a scanner must not blow up the metrics' cardinality
        endpoint = scope["path"] if scope["path"] in self.ENDPOINTS else "other"
        start = time.perf_counter()
        status = 500

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            if endpoint.startswith("/v1/"):
                latency = self._latency.get(endpoint)
                if latency is None:
                    latency = self._latency[endpoint] = self.service.latency.labels(endpoint)
                latency.observe(time.perf_counter() - start)
            requests = self._requests.get((endpoint, status))
            if requests is None:
                requests = self._requests[endpoint, status] = self.service.requests.labels(
                    endpoint, str(status))
            requests.inc()


def create_app(service: Service, limits: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application around a loaded :class:`Service`, guarded by ``limits``
    (default: :class:`~starry_guide.config.ServeSettings`' defaults, CORS off)."""
    limits = limits or ServeSettings()
    place.start_clock()  # STARRY_CLOCK_START (tests, demos): a bad value stops here
    # Web Push: the VAPID key (created on first start) and this process's decider
    push_keys = Keys.load(default=default_key_file(service.store.path))
    nudger = nudges.Nudger(service, push_keys) if nudges.enabled() else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # everything loaded so far (pandas, skyfield, onnxruntime, the bundle) lives as long
        # as the process: keep it out of the cyclic GC's full collections, which otherwise
        # walk those millions of objects in the middle of requests
        gc.collect()
        gc.freeze()
        deciding = None if nudger is None else asyncio.create_task(nudger.run_forever())
        yield
        if deciding is not None:  # no pass is left half done: claims wait for the next
            deciding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deciding
            nudger.close()
        # uvicorn has drained the requests in flight (SIGTERM): close the store cleanly
        service.close()

    app = FastAPI(title="Starry Guide", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Will the night sky be clear in the next 1-12 hours, and when "
                              "is the best time to look up?")
    app.state.service = service
    app.state.push_keys = push_keys
    app.state.nudger = nudger
    app.state.reads = Reads(service)  # station and place answers, computed once
    app.include_router(docs_ui.router)  # /docs: Swagger UI from the package's own files

    errors.install(app)
    # outermost last: the metrics see every reply, CORS headers go on the guard's refusals too
    try:
        feeder = deps.load_token()  # the feeder is not rate-limited
    except deps.FeedTokenError:
        feeder = None  # the feed itself says why it is off
    # innermost: a cached read asked again is answered before FastAPI's routing
    app.add_middleware(ReadShortcut, reads=app.state.reads)
    # a valid POST /v1/nowcast goes straight to the service; errors use the app's handlers
    app.add_middleware(NowcastShortcut, service=service,
                       exception_handlers=app.exception_handlers)
    app.add_middleware(RequestGuard, limits=limits, trusted_token=feeder)
    if limits.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(limits.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"],
                           max_age=600)
    app.add_middleware(Metrics, service=service)
    app.include_router(feed.router)
    app.include_router(events.router)
    app.include_router(admin.router)  # POST /v1/admin/reload
    app.include_router(push.router)  # /v1/push/...: Web Push subscriptions

    def openapi() -> dict:
        # the JSON bodies parsed by json_body() are documented here, where FastAPI's own
        # body parameters would have put them
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (NowcastRequest, NightRequest, FeedbackRequest,
                          PushSubscriptionRequest):
                model_schema = model.model_json_schema(
                    ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = errors.document(schema)  # every 4xx/503 the service sends
        return app.openapi_schema

    app.openapi = openapi

    app.include_router(forecast.build_router(limits.max_body_bytes))
    webapp.install(app)  # the web app at /
    return app


def app_from_environment() -> FastAPI:
    """The app for one of several uvicorn worker processes (``starry serve --workers N``):
    the bundle, store and limits come from ``STARRY_BUNDLE``, ``STARRY_STORE_URL`` and
    ``STARRY_SERVE_SETTINGS``, set by ``starry serve`` after it has checked them. The worker
    exits (gracefully) when its supervisor dies."""
    supervisor = os.environ.get(process.SUPERVISOR_VARIABLE)
    process.die_with_parent(int(supervisor) if supervisor else None)
    opened = Store(os.environ[store.URL_ENV],
                   location_decimals=int(os.environ.get("STARRY_STORE_LOCATION_DECIMALS",
                                                        store.LOCATION_DECIMALS)),
                   retention_days=int(os.environ.get("STARRY_STORE_RETENTION_DAYS", 0)))
    return create_app(Service(load_bundle(Path(os.environ["STARRY_BUNDLE"])), opened,
                              max_station_km=float(os.environ.get(
                                  "STARRY_MAX_STATION_KM", place.DEFAULT_MAX_STATION_KM))),
                      process.settings_from_environment())


def app_from_source():
    """The uvicorn factory of ``starry serve --workers N``: fetch the bundle from
    ``STARRY_BUNDLE_SOURCE`` (again on every worker (re)start), then build the app as
    :func:`app_from_environment` does."""
    text = os.environ.get(reload.SOURCE_ENV)
    if text:  # each process downloads into its own folder: workers start side by side
        source = reload.BundleSource.parse(text, Path(".staging") / "serve" / str(os.getpid()))
        os.environ["STARRY_BUNDLE"] = str(Path(source.fetch()).resolve())
    return app_from_environment()
