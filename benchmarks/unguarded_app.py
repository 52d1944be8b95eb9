"""The API as it was before the request guard — the benchmark's "before" baseline only.

The same app, bundle and store as ``starry serve``, with the request guard
(:class:`starry_guide.serve.http.guard.RequestGuard`) taken out of the middleware stack, served
by uvicorn's stock httptools protocol (no header deadline) — so the benchmark measures what
the limits cost in the same run. Never serve this.

    STARRY_BUNDLE=... STARRY_STORE_URL=... uvicorn benchmarks.unguarded_app:app --factory
"""

import os
from pathlib import Path

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.serve.app import create_app
from starry_guide.serve.http.guard import RequestGuard
from starry_guide.serve.service import Service
from starry_guide.serve.store.database import URL_ENV, Store


def app():
    application = create_app(Service(load_bundle(Path(os.environ["STARRY_BUNDLE"])),
                                     Store(os.environ[URL_ENV])))
    application.user_middleware = [m for m in application.user_middleware
                                   if m.cls is not RequestGuard]
    return application
