"""``POST /v1/admin/reload``: reload the served model without a restart (the machinery, and
the ``SIGHUP`` way in, are :mod:`starry_guide.serve.reload`)."""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Header, HTTPException, Request

from starry_guide.artifacts.bundle import BundleError
from starry_guide.serve.reload import reloader_for

TOKEN_ENV = "STARRY_ADMIN_TOKEN"

router = APIRouter()


def _authorised(authorization: str | None) -> None:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise HTTPException(403, detail=f"admin endpoints are off: start the server with "
                                        f"{TOKEN_ENV} set")
    expected = f"Bearer {token}".encode()
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
        raise HTTPException(401, detail="a valid 'Authorization: Bearer <token>' is required",
                            headers={"WWW-Authenticate": "Bearer"})


@router.post("/v1/admin/reload", tags=["admin"],
             responses={401: {"description": "missing or wrong bearer token"},
                        403: {"description": f"admin endpoints off ({TOKEN_ENV} not set)"},
                        409: {"description": "the new bundle failed verification; the "
                                             "current model stays"}})
async def reload(request: Request,
                 authorization: str | None = Header(None)) -> dict:
    """Fetch the champion's bundle again (registry alias or bundle folder), verify it and
    serve it from now on; answers in flight finish with the model they started with."""
    _authorised(authorization)
    try:
        return await reloader_for(request.app).reload()
    except BundleError as exc:
        raise HTTPException(409, detail=f"reload refused, the current model stays: {exc}") \
            from None
