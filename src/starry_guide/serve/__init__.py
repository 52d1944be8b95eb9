"""The production side: the real-time API around the champion's bundle.

:mod:`~starry_guide.serve.app` (the app factory), :mod:`~starry_guide.serve.deps`
(dependencies), :mod:`~starry_guide.serve.schemas` (request and response bodies),
:mod:`~starry_guide.serve.service` (nowcasts, station plans, the model swap),
``routes/`` (forecast, feed, events, admin), ``http/`` (request guard, protocol, errors),
``store/`` (the serving store and its migrations), ``planning/`` (place, planner, night),
``web/`` (the web app and Swagger UI), :mod:`~starry_guide.serve.reload`,
:mod:`~starry_guide.serve.process` and :mod:`~starry_guide.serve.launch` (running it), and
:mod:`~starry_guide.serve.snapshot` (the store as files). It never imports training code.
"""
