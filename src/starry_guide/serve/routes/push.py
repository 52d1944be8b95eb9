"""Web Push subscriptions (an ``APIRouter`` included by the API): the server's VAPID public
key, subscribing and unsubscribing. What is pushed, when, is the decider's
(:mod:`starry_guide.serve.push`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from starry_guide.serve.deps import body_schema, get_push_keys, get_service, json_body
from starry_guide.serve.planning import place
from starry_guide.serve.push.endpoints import problem
from starry_guide.serve.push.subscriptions import PushStore
from starry_guide.serve.schemas import PushKey, PushSubscriptionCreated, PushSubscriptionRequest
from starry_guide.serve.service import Service, unprocessable

router = APIRouter(tags=["push"])
invalid = {422: {"description": "Validation Error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}


@router.get("/v1/push/key", response_model=PushKey)
def push_key(request: Request) -> PushKey:
    """The server's VAPID public key, for `PushManager.subscribe({applicationServerKey})`."""
    return PushKey(key=get_push_keys(request).public_key)


def _nearest_station(service: Service, latitude: float, longitude: float) -> dict:
    stations = service.store.stations()
    if stations:
        distances = [(place.distance_km(latitude, longitude, s["latitude"], s["longitude"]),
                      s["station_id"], s) for s in stations]
        km, _, station = min(distances, key=lambda d: (d[0], d[1]))
        if km <= service.max_station_km:
            return station
    raise unprocessable(["body", "latitude"], f"no station with live observations within "
                        f"{service.max_station_km:,.0f} km of ({latitude}, {longitude}); "
                        "nudges need a station's nowcast (climatology alone never nudges)")


def _subscribe(service: Service, body: PushSubscriptionRequest) -> tuple[dict, bool]:
    if body.station is not None:
        station = service.store.station(body.station)
        if station is None:
            raise unprocessable(["body", "station"], f"station {body.station!r} is not "
                                "registered (GET /v1/stations lists them)")
    else:
        station = _nearest_station(service, body.latitude, body.longitude)
    quiet = body.quiet_hours
    subscription_id, secret, new = PushStore(service.store).subscribe(
        endpoint=body.subscription.endpoint, p256dh=body.subscription.keys.p256dh,
        auth=body.subscription.keys.auth, station_id=station["station_id"],
        min_probability=body.min_probability, min_minutes=round(body.min_hours * 60),
        time_zone=body.timezone, quiet_start=quiet.start if quiet else None,
        quiet_end=quiet.end if quiet else None)
    return {"id": subscription_id, "secret": secret, "station": station["station_id"]}, new


@router.post("/v1/push/subscriptions", response_model=PushSubscriptionCreated,
             status_code=201, openapi_extra=body_schema(PushSubscriptionRequest),
             responses={**invalid, 200: {"model": PushSubscriptionCreated,
                                         "description": "the endpoint was subscribed "
                                         "already: its settings replaced, a new secret"}})
async def subscribe(
    request: Request,
    body: Annotated[PushSubscriptionRequest, Depends(json_body(PushSubscriptionRequest))],
) -> JSONResponse:
    """Subscribe a browser's push subscription to nudges for a station (or the nearest
    registered one to a place). Sending the same endpoint again updates it (the app does so
    on each start, which keeps it from expiring) and returns a new secret."""
    refused = problem(body.subscription.endpoint)
    if refused:
        raise unprocessable(["body", "subscription", "endpoint"], refused)
    created, new = await run_in_threadpool(_subscribe, get_service(request), body)
    return JSONResponse(created, status_code=201 if new else 200)


@router.delete("/v1/push/subscriptions/{subscription_id}", status_code=204,
               responses={401: {"description": "no bearer secret"},
                          403: {"description": "not this subscription's secret"},
                          404: {"description": "no such subscription"}})
def unsubscribe(subscription_id: str, request: Request) -> Response:
    """Delete a subscription and its record of pushes: send its secret as
    `Authorization: Bearer <secret>`."""
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        raise HTTPException(401, detail="send the subscription's secret as 'Authorization: "
                            "Bearer <secret>'", headers={"WWW-Authenticate": "Bearer"})
    outcome = PushStore(get_service(request).store).unsubscribe(subscription_id, sent.strip())
    if outcome == "unknown":
        raise HTTPException(404, detail=f"no subscription {subscription_id!r}")
    if outcome == "forbidden":
        raise HTTPException(403, detail="that is not this subscription's secret")
    return Response(status_code=204)
