"""Baselines for the API benchmark, served the same way as the real app.

* ``/v1/nowcast``: a bare FastAPI endpoint returning a constant (``async``, like the real
  handlers, so neither pays for a thread-pool hop);
* ``/v1/validated``: the same, after validating the request body exactly as the real
  ``/v1/nowcast`` does — the cost of the HTTP contract before any forecasting.
"""

from typing import Annotated

from fastapi import Depends, FastAPI

from starry_guide.serve.deps import json_body
from starry_guide.serve.schemas import NowcastRequest

app = FastAPI()


@app.post("/v1/nowcast")
async def constant() -> dict:
    return {"p_clear": 0.5}


@app.post("/v1/validated")
async def validated(body: Annotated[NowcastRequest, Depends(json_body(NowcastRequest))]) -> dict:
    return {"p_clear": 0.5, "hours": len(body.observations)}
