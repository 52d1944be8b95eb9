"""The request guard: limits every request meets before any endpoint sees it (ASGI middleware).

In order, for each HTTP request:

1. **rate limit** — write requests (POST, PUT, PATCH, DELETE) from one client address draw
   from a token bucket (``rate_per_s``, ``rate_burst``); an empty bucket gets 429 with
   ``Retry-After``. The address is uvicorn's ``client``, which honours ``X-Forwarded-For``
   only from trusted proxies (uvicorn's ``--forwarded-allow-ips``). The observation
   feeder, which proves who it is with its bearer token, is not rate-limited.
2. **concurrency** — at most ``max_in_flight`` requests in progress; more get 503 with
   ``Retry-After`` at once instead of waiting in an unbounded queue. An event stream
   (``text/event-stream``) stops counting once its response has started: it lasts as long
   as its listener, and open connections have their own limit (``max_connections``).
3. **content type** — a request with a body must send it as ``application/json`` (or
   ``application/*+json``, UTF-8): anything else gets 415. Browsers send ``text/plain``,
   forms and multipart across origins without a CORS preflight; refusing them closes that
   cross-site write path.
4. **body size and time** — a declared ``Content-Length`` over ``max_body_bytes`` gets 413
   without reading; otherwise the body (chunked or not) is read here, counted as it arrives —
   413 as soon as it passes the limit — and must be complete within ``body_timeout_s`` of
   the headers (408 otherwise). Both replies close the connection.
5. **JSON** — the body must be UTF-8 JSON with finite numbers and nesting the parser
   accepts; otherwise 400 naming where it broke (:mod:`starry_guide.serve.http.errors`).

Only then is the endpoint called, with the body replayed from memory. The limits hold per
worker process: with ``--workers N`` each worker has its own buckets and its own
``max_in_flight``, so a client may get up to N times the rate when its connections land on
different workers.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
import time
from collections import OrderedDict

import pydantic_core

from starry_guide.config import ServeSettings
from starry_guide.serve.http import errors

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: at most this many client addresses' buckets are kept (least recently seen dropped)
MAX_TRACKED_CLIENTS = 10_000
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
#: a number whose exponent has three or more digits may overflow to infinity
_HUGE_EXPONENT = re.compile(rb"[eE][+-]?\d{3,}")
#: the same with a lower-case ``e``: a pattern starting with a literal is searched for with
#: a fast scan for that byte, a character class byte by byte (5 vs 23 µs on a nowcast body,
#: whose field names hold many ``e``s but no ``E``)
_HUGE_EXPONENT_LOWER = re.compile(rb"e[+-]?\d{3}")


def _may_overflow(body: bytes) -> bool:
    """Whether ``body`` holds an exponent of three or more digits (:data:`_HUGE_EXPONENT`)."""
    return (_HUGE_EXPONENT_LOWER.search(body) is not None
            or (b"E" in body and _HUGE_EXPONENT.search(body) is not None))


class TokenBuckets:
    """Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_TRACKED_CLIENTS):
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0.0 when granted, else the seconds until one is free."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _non_finite_path(value, path: list) -> list | None:
    """The path of the first infinite float in a parsed JSON value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite_path(item, [*path, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_finite_path(item, [*path, i])
            if found is not None:
                return found
    return None


class RequestGuard:
    """ASGI middleware enforcing :class:`~starry_guide.config.ServeSettings` (see the
    module's docstring). Plain ASGI, like the metrics middleware: Starlette's
    ``BaseHTTPMiddleware`` would cost a bare endpoint more than half its throughput."""

    def __init__(self, app, limits: ServeSettings, trusted_token: str | None = None):
        self.app = app
        self.limits = limits
        self._trusted = f"Bearer {trusted_token}".encode() if trusted_token else None
        self.in_flight = 0
        self.buckets = (TokenBuckets(limits.rate_per_s, limits.rate_burst)
                        if limits.rate_per_s > 0 else None)
        self._retry = {"Retry-After": str(limits.retry_after_s)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        method = scope["method"]
        if (self.buckets is not None and method in WRITE_METHODS
                and not self._is_trusted(scope)):
            client = scope.get("client")
            wait = self.buckets.take(client[0] if client else "?")
            if wait:
                seconds = max(1, math.ceil(wait))
                await errors.problem(
                    429, [], f"too many write requests from your address (limit "
                    f"{limits.rate_per_s:g}/s, bursts of {limits.rate_burst}); retry in "
                    f"{seconds} s", "rate_limited", {"Retry-After": str(seconds)}
                )(scope, receive, send)
                return
        if self.in_flight >= limits.max_in_flight:
            await errors.problem(503, [], f"the server is at its limit of "
                                 f"{limits.max_in_flight} requests in progress; retry shortly",
                                 "overloaded", self._retry)(scope, receive, send)
            return
        self.in_flight += 1
        held = True

        async def send_releasing_streams(message) -> None:
            # an event stream (SSE) is answered for as long as its client listens: it gives
            # its slot back once it has started, bounded by the connection limit instead
            nonlocal held
            if held and message["type"] == "http.response.start" and any(
                    key == b"content-type" and value.startswith(b"text/event-stream")
                    for key, value in message.get("headers", ())):
                held = False
                self.in_flight -= 1
            await send(message)

        try:
            await self._guarded(scope, receive, send_releasing_streams)
        finally:
            if held:
                self.in_flight -= 1

    def _is_trusted(self, scope) -> bool:
        if self._trusted is None:
            return False
        sent = _header(scope, b"authorization")
        return sent is not None and hmac.compare_digest(sent.strip(), self._trusted)

    async def _guarded(self, scope, receive, send) -> None:
        limits = self.limits
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        has_body = chunked or (length is not None and length.strip() not in (b"", b"0"))
        if not has_body:
            await self.app(scope, receive, send)
            return
        media = (_header(scope, b"content-type") or b"").decode("latin-1")
        kind, _, params = media.partition(";")
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.IGNORECASE)
        if not _JSON_TYPE.match(kind.strip().lower()) or (
                charset and charset[1].lower() not in ("utf-8", "utf8")):
            shown = errors._cut(media, 60) or "none"
            await errors.problem(
                415, ["header", "content-type"], f"send the body as application/json "
                f"(UTF-8); got content type {shown!r}", "unsupported_media_type",
                {"Connection": "close"})(scope, receive, send)
            return
        if length is not None and not chunked and (
                not length.strip().isdigit() or int(length) > limits.max_body_bytes):
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        deadline = time.monotonic() + limits.body_timeout_s
        more = True
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time()
                                          + limits.body_timeout_s):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left; nobody to answer
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > limits.max_body_bytes:
                        await self._too_large(scope, receive, send)
                        return
        except TimeoutError:
            waited = limits.body_timeout_s - max(0.0, deadline - time.monotonic())
            await errors.problem(
                408, ["body"], f"the body was not complete {waited:.0f} s after the "
                f"headers ({len(body)} bytes received); send it at once", "body_timeout",
                {"Connection": "close"})(scope, receive, send)
            return
        body = bytes(body)
        try:
            parsed = pydantic_core.from_json(body, allow_inf_nan=False)
        except ValueError as exc:
            await errors.body_not_json(body, str(exc))(scope, receive, send)
            return
        if _may_overflow(body):
            where = _non_finite_path(parsed, [])
            if where is not None:
                await errors.problem(
                    400, ["body", *where], "number out of range: it overflows to "
                    "infinity; send a finite number", "finite_number")(scope, receive, send)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        await errors.problem(
            413, ["body"], f"the body is over the limit of {self.limits.max_body_bytes} "
            "bytes; send fewer observations per request", "body_too_large",
            {"Connection": "close"})(scope, receive, send)
