"""``starry serve``'s app without the ``POST /v1/nowcast`` shortcut — for the tests only, so
that the shortcut's answers can be compared with the route's, each served by a real uvicorn.

The same factory as a ``starry serve --workers N`` worker (bundle, store and limits from
``STARRY_BUNDLE``, ``STARRY_STORE_URL`` and ``STARRY_SERVE_SETTINGS``), with
:class:`starry_guide.serve.nowcast_shortcut.NowcastShortcut` taken out of the middleware
stack (built at the first request), so every nowcast goes through FastAPI's route. Never
serve this.

    uvicorn tests.support.routed_app:app --factory \
        --http starry_guide.serve.http.protocol:GuardedHttpToolsProtocol
"""

from starry_guide.serve.app import app_from_environment
from starry_guide.serve.nowcast_shortcut import NowcastShortcut


def app():
    application = app_from_environment()
    application.user_middleware = [m for m in application.user_middleware
                                   if m.cls is not NowcastShortcut]
    return application
