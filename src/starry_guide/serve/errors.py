"""Error replies that are safe for any client input: one place for every endpoint.

A malformed request gets a 4xx whose ``detail`` names the field (``loc``) and says what is
wrong (``msg``); it never echoes a large or non-JSON input back and never carries a
traceback. Before this module, FastAPI's 422 handler returned each error's ``input``: a
``NaN``, ``Infinity`` or ``1e400`` in a number field, or invalid UTF-8, made the reply itself
unencodable, and the client got a 500.

:func:`install` registers the handlers on an app; :func:`body_not_json` is what the request
guard (:mod:`starry_guide.serve.guard`) answers for a body that is not valid UTF-8 JSON, and
:func:`json_error_location` finds the field where a JSON parser stopped, so that even "number
out of range" (a 5000-digit integer) or "recursion limit exceeded" name the field.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """A 4xx reply in the shape of FastAPI's validation errors."""
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


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # the traceback goes to the server's log, never to the client
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


def install(app: FastAPI) -> None:
    """Register the safe handlers for validation errors, HTTP errors and server errors."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
