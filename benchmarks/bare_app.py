"""Baselines for the API benchmark, served the same way as the real app.

* ``/v1/nowcast``: a bare FastAPI endpoint returning a constant (``async``, like the real
  handlers, so neither pays for a thread-pool hop);
* ``/v1/validated``: the same, after validating the request body exactly as the real
  ``/v1/nowcast`` does — the cost of the HTTP contract before any forecasting;
* ``GET /v1/constant/{size}``: a constant JSON answer of ``size`` bytes — the floor for a
  cached read answering that many bytes (a night plan is about ten times a nowcast, and on
  loopback writing the bytes is a good part of the cost).
"""

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, FastAPI, Response

from starry_guide.serve.deps import json_body
from starry_guide.serve.schemas import NowcastRequest

app = FastAPI()


@app.post("/v1/nowcast")
async def constant() -> dict:
    return {"p_clear": 0.5}


@lru_cache(maxsize=64)
def _constant(size: int) -> bytes:
    return b'{"padding": "' + b"x" * max(0, size - 15) + b'"}'


@app.get("/v1/constant/{size}")
async def constant_read(size: int) -> Response:
    return Response(_constant(size), media_type="application/json")


@app.post("/v1/validated")
async def validated(body: Annotated[NowcastRequest, Depends(json_body(NowcastRequest))]) -> dict:
    return {"p_clear": 0.5, "hours": len(body.observations)}
