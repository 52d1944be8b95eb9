"""Error replies that are safe for any client input: one place for every endpoint.

A malformed request gets a 4xx whose ``detail`` names the field (``loc``) and says what is
wrong (``msg``); it never echoes a large or non-JSON input back and never carries a
traceback. Before this module, FastAPI's 422 handler returned each error's ``input``: a
``NaN``, ``Infinity`` or ``1e400`` in a number field, or invalid UTF-8, made the reply itself
unencodable, and the client got a 500.

:func:`install` registers the handlers on an app; :func:`body_not_json` is what the request
guard (:mod:`starry_guide.serve.http.guard`) answers for a body that is not valid UTF-8 JSON, and
:func:`json_error_location` finds the field where a JSON parser stopped, so that even "number
out of range" (a 5000-digit integer) or "recursion limit exceeded" name the field.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from starry_guide.serve.store.database import StoreUnavailable

#: an input is echoed back only when it is a scalar at most this long once written out
MAX_ECHO_CHARS = 64
#: messages and location parts are cut to these lengths
MAX_MESSAGE_CHARS = 300
MAX_LOC_PART_CHARS = 64
MAX_LOC_PARTS = 12
#: at most this many errors in one reply (a 240-row body can hold thousands)
MAX_ERRORS = 20

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[{}\[\],:]')
_POSITION = re.compile(r"at line (\d+) column (\d+)")

log = logging.getLogger(__name__)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_scalar(value) -> tuple[bool, object]:
    """``(True, value)`` when ``value`` may be echoed: a short string or a finite number."""
    if value is None or isinstance(value, bool):
        return True, value
    if isinstance(value, int):
        return (len(str(value)) <= 20 if abs(value) < 10**21 else False), value
    if isinstance(value, float):
        return math.isfinite(value), value
    if isinstance(value, str) and len(value) <= MAX_ECHO_CHARS:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return False, None
        return True, value
    return False, None


def safe_location(loc: Sequence) -> list:
    """A ``loc`` made of short strings and integers, at most :data:`MAX_LOC_PARTS` long."""
    out: list = []
    for part in list(loc)[:MAX_LOC_PARTS]:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
        else:
            text = part if isinstance(part, str) else repr(part)
            out.append(_cut(text.encode("utf-8", "replace").decode("utf-8"),
                            MAX_LOC_PART_CHARS))
    if len(loc) > MAX_LOC_PARTS:
        out.append("…")
    return out


def safe_errors(errors: Sequence[dict], body: bytes | None = None) -> list[dict]:
    """Validation errors as JSON-safe dicts: ``loc``, ``msg``, ``type`` and, only when it is a
    short scalar, ``input``.

    A ``json_invalid`` error (the body did not parse) gets the location of the field where
    the parser stopped, found in ``body``.
    """
    out = []
    for error in list(errors)[:MAX_ERRORS]:
        kind = str(error.get("type", "value_error"))
        loc = list(error.get("loc", ()))
        msg = str(error.get("msg", ""))
        if kind == "json_invalid" and body is not None:
            found = _POSITION.search(msg)
            if found:
                loc = [*loc[:1], *json_error_location(body, int(found[1]), int(found[2]))]
            msg = json_message(msg)
        item = {"loc": safe_location(loc), "msg": _cut(msg, MAX_MESSAGE_CHARS), "type": kind}
        if "input" in error and kind != "json_invalid":
            ok, value = _safe_scalar(error["input"])
            if ok:
                item["input"] = value
        out.append(item)
    if len(errors) > MAX_ERRORS:
        out.append({"loc": [], "msg": f"… and {len(errors) - MAX_ERRORS} more error(s)",
                    "type": "too_many_errors"})
    return out


def json_message(parser_message: str) -> str:
    """A JSON parser's message, said for a client: what is wrong, and where."""
    msg = parser_message.removeprefix("Invalid JSON: ")
    if msg.startswith("number out of range"):
        msg = ("a number is out of range (more digits than any float or int field takes); "
               + msg)
    elif msg.startswith("recursion limit exceeded"):
        msg = "the body is nested too deeply; " + msg
    elif msg.startswith("expected value"):
        msg += " (NaN and Infinity are not JSON numbers; send finite numbers or null)"
    elif msg.startswith("invalid unicode code point") or "utf-8" in msg.lower():
        msg = "the body is not valid UTF-8; " + msg
    return "body is not valid JSON: " + msg


def json_error_location(body: bytes, line: int, column: int) -> list:
    """The path (keys and indexes) of the value a JSON parser was reading at ``line``,
    ``column`` (1-based, as parsers report them) of ``body``.

    A regular expression skips over strings and scalars, so this costs little even for a
    body at the size limit; it is only called for bodies that failed to parse.
    """
    offset = 0
    for _ in range(line - 1):
        newline = body.find(b"\n", offset)
        if newline < 0:
            break
        offset = newline + 1
    end = min(len(body), offset + max(column - 1, 0))
    stack: list[list] = []  # [kind, key_or_index]; kind b"{" or b"["
    expect_key = False
    last_string: bytes | None = None
    for token in _TOKENS.finditer(body, 0, end):
        text = token.group()
        if text == b"{":
            stack.append([b"{", None])
            expect_key = True
        elif text == b"[":
            stack.append([b"[", 0])
        elif text in (b"}", b"]"):
            if stack:
                stack.pop()
            expect_key = False
        elif text == b",":
            if stack and stack[-1][0] == b"[":
                stack[-1][1] += 1
            elif stack:
                stack[-1][1] = None
                expect_key = True
        elif text == b":":
            if stack and stack[-1][0] == b"{" and last_string is not None:
                stack[-1][1] = last_string[1:-1].decode("utf-8", "replace")
            expect_key = False
        else:  # a string
            last_string = text if expect_key else None
    return [key for _, key in stack if key is not None]


def problem(status: int, loc: Sequence, msg: str, kind: str,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A 4xx (or 503) reply in the shape of FastAPI's validation errors."""
    return JSONResponse({"detail": [{"loc": safe_location(loc),
                                     "msg": _cut(msg, MAX_MESSAGE_CHARS), "type": kind}]},
                        status_code=status, headers=headers)


def body_not_json(body: bytes, parser_message: str) -> JSONResponse:
    """400 for a body that is not valid UTF-8 JSON, naming where the parser stopped."""
    errors = safe_errors([{"type": "json_invalid", "loc": ("body",), "msg": parser_message}],
                         body)
    return JSONResponse({"detail": errors}, status_code=400)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    body = getattr(exc, "body", None)
    return JSONResponse({"detail": safe_errors(exc.errors(),
                                               body if isinstance(body, bytes) else None)},
                        status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if isinstance(detail, list):
        detail = safe_errors(detail)
    elif not isinstance(detail, str):
        detail = str(detail)
    return JSONResponse({"detail": detail if isinstance(detail, list)
                         else _cut(detail, MAX_MESSAGE_CHARS)},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with ``Retry-After`` while the database is out of reach (or the pool has no free
    connection in time): the operation wrote nothing, and retrying it is safe."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    retry = StoreUnavailable.retry_after_s
    return problem(503, [], f"the store is unavailable right now; nothing was written. Retry "
                   f"after {retry} s", "store_unavailable", headers={"Retry-After": str(retry)})


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # the traceback goes to the server's log, never to the client
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


class ErrorItem(BaseModel):
    """One thing wrong with a request."""

    loc: list[str | int] = Field(description="where: `body`, `query`, `header` or `path`, "
                                             "then the field's keys and indexes",
                                 examples=[["body", "observations", 3, "temperature_c"]])
    msg: str = Field(description="what is wrong, and what to send instead")
    type: str = Field(description="a stable error code (e.g. `rate_limited`, "
                                  "`body_too_large`, `greater_than_equal`)")
    input: str | int | float | bool | None = Field(
        None, description="the value sent, only when it is a short string or a finite number")


class Problem(BaseModel):
    """The body of every 4xx the guard and the validators answer (and of 503 overload)."""

    detail: list[ErrorItem]


class Message(BaseModel):
    """The body of an endpoint's own refusal (401, 403, 404, 409): one sentence."""

    detail: str


#: the statuses the request guard and the HTTP protocol answer before any endpoint runs:
#: status -> (to which operations: every one ``"*"``, those with a request body ``"body"``,
#: writes ``"write"``; what it means; the media types sent — ``json`` is a :class:`Problem`,
#: ``text`` a plain sentence from the protocol, before the request reached the app)
GUARD_RESPONSES = {
    400: ("body", "the body is not valid UTF-8 JSON with finite numbers; `loc` says where it "
                  "broke", ("json",)),
    408: ("*", "the request did not arrive in time: the body not complete "
               "`serve.body_timeout_s` after the headers (JSON), or the headers not complete "
               "`serve.header_timeout_s` after connecting (plain text); the connection is "
               "closed", ("json", "text")),
    413: ("body", "the body is over the size limit (`serve.max_body_bytes`); the connection "
                  "is closed", ("json",)),
    415: ("body", "the body is not `application/json` (UTF-8)", ("json",)),
    422: ("input", "a field is missing, of the wrong type or out of range; `loc` names it",
          ("json",)),
    429: ("write", "too many write requests from this address (`serve.rate_per_s`, bursts of "
                   "`serve.rate_burst`; the feeder's token is exempt); retry after "
                   "`Retry-After` seconds", ("json",)),
    431: ("*", "the request line and headers are too large (plain text); the connection is "
               "closed", ("text",)),
    503: ("*", "the server is at its limit of requests in progress (`serve.max_in_flight`), "
               "or its store (the database) is unreachable, restarting or too slow (`type` "
               "`store_unavailable`: nothing was written); retry after `Retry-After` seconds",
          ("json",)),
}
WRITE_METHODS = ("post", "put", "patch", "delete")
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}
_CONTENT = {"json": ("application/json", {"$ref": "#/components/schemas/Problem"}),
            "text": ("text/plain", {"type": "string"})}


def document(schema: dict) -> dict:
    """Add to an OpenAPI ``schema`` (in place) every refusal the service really answers.

    The guard's and the protocol's statuses (:data:`GUARD_RESPONSES`, ``Retry-After`` on 429
    and 503) go on each operation they apply to, with the body that is sent (:class:`Problem`
    or plain text); where an endpoint documents the same status with its own body (``/healthz``
    503 *degraded*), either may come. Endpoints' own refusals (401, 403, 404, 409) get
    :class:`Message`. FastAPI's ``HTTPValidationError``, which promises fields the safe
    handlers never send, is replaced by :class:`Problem`. Returns ``schema``.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, Message):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    message = {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
    for path in schema.get("paths", {}).values():
        for method, operation in path.items():
            if method not in (*WRITE_METHODS, "get", "head"):
                continue
            responses = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            applies = {"*": True, "body": has_body, "write": method in WRITE_METHODS,
                       "input": has_body or bool(operation.get("parameters"))}
            for status, (scope, text, kinds) in GUARD_RESPONSES.items():
                if not applies[scope]:
                    continue
                entry = responses.setdefault(str(status), {})
                own = entry.get("content", {}).get("application/json", {}).get("schema")
                content = dict(_CONTENT[kind] for kind in kinds)
                content = {media: {"schema": item} for media, item in content.items()}
                if own is not None and own.get("$ref") not in (
                        None, "#/components/schemas/HTTPValidationError"):
                    content["application/json"] = {"schema": {"anyOf": [
                        own, {"$ref": "#/components/schemas/Problem"}]}}
                    entry["description"] = f"{entry.get('description', '')}; or: {text}"
                else:
                    entry["description"] = text
                entry["content"] = content
                if status in (429, 503):
                    entry["headers"] = _RETRY_AFTER
            for status, entry in responses.items():
                if status in ("401", "403", "404", "409") and "content" not in entry:
                    entry["content"] = message
    info = schema.setdefault("info", {})
    info["description"] = (info.get("description", "") + "\n\nEvery request meets the "
                           "request guard before any endpoint: the refusals it may answer "
                           "(400, 408, 413, 415, 429, 503, and 431 from the protocol) are "
                           "listed on each operation they apply to, with the body sent. A "
                           "request carrying a body is checked the same way whatever its "
                           "operation.").strip()
    text = repr(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and f"/{unused}'" not in text:
            components.pop(unused)
    return schema


def install(app: FastAPI) -> None:
    """Register the safe handlers for validation errors, HTTP errors and server errors."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(sa.exc.TimeoutError, _store_unavailable)  # the pool's wait
    app.add_exception_handler(Exception, _server_error)
