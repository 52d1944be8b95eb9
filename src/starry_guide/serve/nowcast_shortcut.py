"""``POST /v1/nowcast`` without FastAPI's routing: ASGI middleware, inside the request guard
and the metrics, that answers a nowcast whose body validates straight from the service.

Why: py-spy on ``POST /v1/nowcast`` at 10 clients put a fifth of the server's GIL time in
FastAPI's and Starlette's layers under the guard — routing, dependency solving, the
exception and exit-stack middleware, the response class — for a route whose work is one
``model_validate_json`` and one call of the service. The shortcut does exactly that work:

* the body (already read, size-checked and JSON-checked by the request guard, which
  replays it) is validated by the route's own model and options
  (:func:`starry_guide.serve.deps.json_body`: ``NowcastRequest.model_validate_json``,
  strict);
* :meth:`starry_guide.serve.service.Service.nowcast` answers it, as the route's handler
  does — the same batching, group commit and one inference chain; the answer is sent once
  its rows are committed, with the route's headers and the bytes the route's serialiser
  (pydantic-core ``to_json``) writes — by orjson, which writes them in half the time
  (:data:`ORJSON_OPTIONS`; tests/serve/test_nowcast_shortcut.py compares both on real and
  random answers).

Everything else takes the usual way through the app, so its answers stay the route's own,
byte for byte: any other path or method, and any body that fails validation (the app
validates it again and answers its 422 — invalid bodies are rare and cheap). An error
raised by the service (e.g. a 422 for hours that are not consecutive, a 503 when the store
is unreachable) is answered by the app's own exception handlers, looked up as Starlette
looks them up; an error without one (a 500) is re-raised to the app's server-error
handler, as from the route. The request guard (rate limit, in-flight limit, content type,
body size and deadline, JSON) and the metrics wrap this middleware, so they apply alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request

from starry_guide.serve.schemas import NowcastRequest
from starry_guide.serve.service import Service

PATH = "/v1/nowcast"
#: the route's response headers (``Response(..., media_type="application/json")``), after
#: its ``content-length``
CONTENT_TYPE = (b"content-type", b"application/json")
#: UTC datetimes with a ``Z``, as pydantic-core writes them; the rest of an answer (strings,
#: shortest round-trip floats, booleans, lists) orjson writes as pydantic-core does. Measured
#: on one answer in process: 5 µs instead of 12.
ORJSON_OPTIONS = orjson.OPT_UTC_Z


def answer_json(nowcast: dict) -> bytes:
    """A :class:`~starry_guide.serve.schemas.NowcastResponse` dict as the route's JSON."""
    return orjson.dumps(nowcast, option=ORJSON_OPTIONS)


class NowcastShortcut:
    """ASGI middleware: ``POST /v1/nowcast`` with a valid body straight to ``service`` (see
    the module docstring). ``exception_handlers``: the app's (``app.exception_handlers``,
    filled by :func:`starry_guide.serve.http.errors.install`), read at each error, so the
    shortcut answers an error as the route would."""

    def __init__(self, app, service: Service, exception_handlers: Mapping):
        self.app = app
        self.service = service
        self.exception_handlers = exception_handlers
        # ``starry_nowcast_shortcut_total{outcome}`` on /metrics: which way requests went
        outcomes = service.nowcast_shortcut
        self.answered = outcomes.labels("answered")
        self.failed = outcomes.labels("error")
        self.passed = outcomes.labels("passed")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages = []
        body = b""
        while True:  # the guard replays the body it has read as one message
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client left: the app sees it as it would have
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            # the route's validation (deps.json_body): strict, straight from the bytes
            request = NowcastRequest.model_validate_json(body, strict=True)
        except Exception:  # noqa: BLE001 - the app validates it again and says why
            request = None
        if request is None or messages[-1]["type"] != "http.request":
            self.passed.inc()
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            nowcast = await self.service.nowcast(request.station, request.observations)
        except Exception as exc:
            self.failed.inc()
            handler = self._handler(exc)
            if handler is None:
                raise  # the server-error handler outside answers 500 and logs it
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        self.answered.inc()
        answer = answer_json(nowcast)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(answer)).encode()), CONTENT_TYPE]})
        await send({"type": "http.response.body", "body": answer})

    def _handler(self, exc: Exception):
        """The handler Starlette's exception middleware would call for ``exc``: the first of
        its class's MRO registered, except the catch-all (``Exception``, 500), which the
        app's outermost server-error middleware applies."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None


def _replay(messages: list[dict], receive):
    """An ASGI ``receive`` giving ``messages`` again, then the connection's own."""
    pending = list(messages)

    async def replayed() -> dict:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
