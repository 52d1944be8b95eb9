"""The baseline for the API benchmark: a bare FastAPI endpoint that returns a constant
(``async``, like the real handlers, so neither pays for a thread-pool hop)."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/nowcast")
async def constant() -> dict:
    return {"p_clear": 0.5}
