"""The Starry Guide web app: static files in ``serve/app/`` (packaged with the wheel), served
by the API process itself at ``/`` — no CDN, no build step, nothing fetched from elsewhere.

``/`` is the page, ``/sw.js`` its service worker (served from the root so that it may
control the whole origin), ``/app/*`` the scripts, styles, icon and manifest.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

APP_DIR = Path(__file__).resolve().parent / "app"
#: revalidate on every load (ETag / Last-Modified make that a 304): an updated server is
#: never hidden behind a stale cached script
NO_STALE = {"Cache-Control": "no-cache"}


class _AppFiles(StaticFiles):
    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_STALE)
        return response


def install(app: FastAPI) -> None:
    """Serve the web app from ``app`` (called once by :func:`starry_guide.serve.app.create_app`)."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(APP_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers=NO_STALE)

    @app.get("/sw.js", include_in_schema=False)
    def service_worker() -> FileResponse:
        return FileResponse(APP_DIR / "sw.js", media_type="text/javascript; charset=utf-8",
                            headers={**NO_STALE, "Service-Worker-Allowed": "/"})

    app.mount("/app", _AppFiles(directory=APP_DIR), name="app")
