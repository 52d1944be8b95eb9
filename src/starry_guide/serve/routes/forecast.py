"""The forecast endpoints: ``POST /v1/nowcast``, ``GET``/``POST /v1/night``,
``POST /v1/feedback``, ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_core import to_json

from starry_guide.serve.deps import (
    body_schema,
    get_nudger,
    get_reads,
    json_body,
    service_dependency,
)
from starry_guide.serve.reads import respond
from starry_guide.serve.schemas import (
    DARK_SKY_MAG,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    NightRequest,
    NightResponse,
    NowcastRequest,
    NowcastResponse,
    bounds,
)
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import (
    FeedbackExists,
    StoreUnavailable,
    UnknownPrediction,
)

ServiceDep = Annotated[Service, Depends(service_dependency)]


def build_router(max_body_bytes: int) -> APIRouter:
    """The forecast routes; ``max_body_bytes`` is the limit their documentation states."""
    router = APIRouter()
    too_large = {413: {"description": f"request body over {max_body_bytes} bytes"}}
    invalid = {422: {"description": "Validation Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}

    # CPU-bound handlers run on the event loop: in a thread pool they would only contend for
    # the GIL (measured: 10 clients got half the throughput of one)
    @router.post("/v1/nowcast", response_model=NowcastResponse,
              responses={**too_large, **invalid}, openapi_extra=body_schema(NowcastRequest))
    async def nowcast(
        service: ServiceDep,
        body: Annotated[NowcastRequest, Depends(json_body(NowcastRequest))],
    ) -> Response:
        """P(clear sky) at each hour 1-12 ahead of the latest observation."""
        nowcast = await service.nowcast(body.station, body.observations)
        # built with the response's types: serialise once instead of re-validating
        return Response(to_json(nowcast), media_type="application/json")

    @router.get("/v1/night", response_model=NightResponse, responses={
        304: {"description": "`If-None-Match` names the current plan: no body"}})
    async def night(
        request: Request,
        lat: Annotated[float, Query(**bounds("latitude"), description="latitude, degrees north",
                                    examples=[36.1])],
        lon: Annotated[float, Query(**bounds("longitude"), description="longitude, degrees east",
                                    examples=[-79.95])],
        date: Annotated[dt.date | Literal["tonight"], Query(
            description="local date the night begins (YYYY-MM-DD), or `tonight`",
            examples=["tonight"])] = "tonight",
        elevation_m: Annotated[float, Query(**bounds("elevation_m"),
                                            description="metres above sea level")] = 0.0,
        dark_sky_mag: Annotated[float, Query(ge=15, le=22.5, description=DARK_SKY_MAG)
                                ] = 21.587,
    ) -> Response:
        """Tonight's plan for a place from climatology (no observations): the nearest
        station's record within the server's distance limit, else a latitude/season prior,
        said so in `climatology`. Planned for the place rounded as the store keeps places
        (2 decimals by default, about 1 km), computed once per place, night and model and
        then served as it is (`ETag`, `Last-Modified`, `Cache-Control`; `304` to a matching
        `If-None-Match`)."""
        reads = get_reads(request)
        return respond(request, await reads.place_night(lat, lon, elevation_m, date,
                                                        dark_sky_mag),
                       again=lambda: reads.place_night(lat, lon, elevation_m, date,
                                                       dark_sky_mag))

    @router.post("/v1/night", response_model=NightResponse,
              responses={**too_large, **invalid}, openapi_extra=body_schema(NightRequest))
    async def night_with_observations(
        service: ServiceDep,
        body: Annotated[NightRequest, Depends(json_body(NightRequest))],
    ) -> NightResponse:
        """Tonight's timeline, with P(clear) nowcast from recent observations."""
        return await service.night(body)

    @router.post("/v1/feedback", response_model=FeedbackResponse,
              responses={**too_large, **invalid, 404: {"description": "unknown prediction_id"},
                         409: {"description": "this prediction already has feedback"}},
              openapi_extra=body_schema(FeedbackRequest))
    def feedback(
        service: ServiceDep,
        body: Annotated[FeedbackRequest, Depends(json_body(FeedbackRequest))],
    ) -> FeedbackResponse:
        """What the user actually saw (once per prediction): a signal for monitoring,
        independent of the feed's observations."""
        try:
            feedback_id = service.store.add_feedback(body.prediction_id, body.observed,
                                                     body.observed_at)
        except UnknownPrediction as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except FeedbackExists as exc:
            raise HTTPException(409, detail=str(exc)) from None
        service.feedback.labels(body.observed).inc()
        return FeedbackResponse(feedback_id=feedback_id, prediction_id=body.prediction_id)

    @router.get("/healthz", response_model=Health, responses={503: {
        "model": Health, "description": "the store is unreachable (`status` = `unavailable`: "
                                        "a load balancer should take this host out) or its "
                                        "maintenance is failing (`degraded`)"}})
    def healthz(service: ServiceDep, request: Request) -> Response:
        """Liveness, the model being served, the store's upkeep and the push decider's last
        pass; 503 while the store (the database) cannot be reached within its deadline or
        its maintenance is failing."""
        maintenance = service.store.maintenance.status()
        store = {"backend": service.store.dialect, "maintenance": maintenance}
        status = "degraded" if maintenance["state"] == "failing" else "ok"
        try:
            service.store.ping()
        except StoreUnavailable as exc:
            status = "degraded" if status == "degraded" else "unavailable"
            store["error"] = str(exc)
        nudger = get_nudger(request)
        return JSONResponse({"status": status, "model_version": service.bundle.version,
                             "candidate": service.bundle.card.get("candidate"),
                             "store": store,
                             "push": None if nudger is None else nudger.status()},
                            status_code=200 if status == "ok" else 503,
                            headers=None if status == "ok" else {
                                "Retry-After": str(StoreUnavailable.retry_after_s)})

    @router.get("/metrics", include_in_schema=False)
    def metrics(service: ServiceDep) -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    return router
