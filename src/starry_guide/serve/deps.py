"""FastAPI dependencies the routers share: the service, a JSON body parsed and validated
once, and the feeder's bearer token."""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from starry_guide.serve.reads import Reads
from starry_guide.serve.service import Service


def get_service(request: Request) -> Service:
    """The app's :class:`~starry_guide.serve.service.Service`."""
    return request.app.state.service


def get_reads(request: Request) -> Reads:
    """The app's :class:`~starry_guide.serve.reads.Reads` (station and place answers)."""
    return request.app.state.reads


async def service_dependency(request: Request) -> Service:
    """:func:`get_service` as a route dependency. ``async`` because FastAPI runs a plain
    ``def`` dependency in its thread pool: a thread hop per request for a dictionary lookup
    (measured with py-spy on ``POST /v1/nowcast``: 11 % of the server's GIL time)."""
    return request.app.state.service


def json_body(model: type[BaseModel]) -> Callable[[Request], Awaitable[BaseModel]]:
    """A dependency that validates the request body straight from its JSON bytes.

    pydantic-core parses and validates in one pass (``model_validate_json``), where a
    FastAPI body parameter first builds Python objects with ``json.loads`` — measured on a
    nowcast body, an endpoint that only validates kept 73 % of a bare endpoint's throughput
    this way and 43 % FastAPI's way. Errors are FastAPI's usual 422 with ``loc`` starting
    at ``body``; :mod:`starry_guide.serve.http.errors` makes them safe to send.
    """

    async def validated(request: Request) -> BaseModel:
        raw = await request.body()
        try:
            # strict: a boolean or a numeric string is not a number (JSON has those types)
            return model.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])}
                 for error in exc.errors(include_url=False)], body=raw) from None

    return validated


def body_schema(model: type[BaseModel]) -> dict:
    """``openapi_extra`` declaring ``model`` as the required JSON body."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
        "example": (model.model_config.get("json_schema_extra") or {}).get("examples", [None])[0],
    }}}}


TOKEN_ENV = "STARRY_FEED_TOKEN"
TOKEN_FILE_ENV = "STARRY_FEED_TOKEN_FILE"
MIN_TOKEN_CHARS = 16
class FeedTokenError(ValueError):
    """The configured feed token is unusable (the message says why and what to do)."""


def load_token(token_file: str | os.PathLike | None = None) -> str | None:
    """The feeder token: from ``token_file`` (or the file named by ``STARRY_FEED_TOKEN_FILE``)
    if given, else from ``STARRY_FEED_TOKEN``; None when neither is set.

    Raises
    ------
    FeedTokenError
        an unreadable, group/world-readable or empty file, or a token under 16 characters.
    """
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FeedTokenError(f"feed token file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise FeedTokenError(f"feed token file {path} is readable by others; "
                                 f"`chmod 600 {path}`")
        source = f"feed token file {path}"
    else:
        token = (os.environ.get(TOKEN_ENV) or "").strip()
        source = f"env {TOKEN_ENV}"
        if not token:
            return None
    if len(token) < MIN_TOKEN_CHARS:
        raise FeedTokenError(f"{source}: the token has {len(token)} characters; use at least "
                             f"{MIN_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`)")
    return token


_NOT_LOADED = object()


def require_feeder(request: Request) -> None:
    """Dependency: the request carries the configured feeder token."""
    token = getattr(request.app.state, "feed_token", _NOT_LOADED)
    if token is _NOT_LOADED:
        try:
            token = load_token()
        except FeedTokenError as exc:
            raise HTTPException(403, detail=f"the feed is off: {exc}") from None
        request.app.state.feed_token = token
    if token is None:
        raise HTTPException(403, detail=(
            "the feed is off: no feeder token is configured on this server; start it with "
            f"--feed-token-file FILE or set {TOKEN_ENV} (at least {MIN_TOKEN_CHARS} characters)"))
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        raise HTTPException(401, detail="send the feeder token as 'Authorization: Bearer "
                                        "<token>'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise HTTPException(403, detail="the feeder token is not valid")




def get_push_keys(request: Request):
    """The server's VAPID :class:`~starry_guide.serve.push.vapid.Keys`."""
    return request.app.state.push_keys


def get_nudger(request: Request):
    """This process's push decider (:class:`~starry_guide.serve.push.nudger.Nudger`), or
    None when it does not run here (``starry serve --no-nudge``)."""
    return getattr(request.app.state, "nudger", None)
