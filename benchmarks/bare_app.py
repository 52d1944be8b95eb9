"""The baseline for the API benchmark: a bare FastAPI endpoint that returns a constant."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/nowcast")
def constant() -> dict:
    return {"p_clear": 0.5}
