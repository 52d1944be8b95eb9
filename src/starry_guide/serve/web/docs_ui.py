"""The service's ``/docs``: Swagger UI served from the package's own files (no CDN).

FastAPI's built-in page loads Swagger UI from a CDN, so it is blank offline. The app is
created with ``docs_url=None`` and includes :data:`router`, which serves the same page with
Swagger UI's files from ``serve/static/swagger-ui/`` (from the npm package
``swagger-ui-dist``, pinned by ``vendor/package-lock.json``; ``make vendor`` refreshes them).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).parent / "static" / "swagger-ui"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "favicon-32x32.png": "image/png"}
PREFIX = "/docs/assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this service's OpenAPI schema, every asset from this service."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} — API",
        swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{PREFIX}/favicon-32x32.png")


@router.get(PREFIX + "/{name}")
async def swagger_asset(name: str) -> FileResponse:
    """One of Swagger UI's files; anything else is a 404."""
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})
