"""MkDocs hook (``hooks:`` in ``mkdocs.yml``): the site's *Champion history* page gets the
dates this machine's MLflow store holds.

The committed page (``docs/generated/champion-history.md``) is built from tracked files only,
so it is the same in every clone; the dates of the decisions live in the MLflow store of the
machine that made them. At site-build time this hook re-renders that one page with
:func:`starry_guide.docs.pages.history_page` and the dates of
:func:`starry_guide.docs.pages.mlflow_dates`
(none when the store is absent or does not hold the decision).

Only when asked (``STARRY_DOCS_DATES=1``, which ``make docs-serve`` sets): the ``docs`` stage's
``site/`` is a DVC output whose hash is in ``dvc.lock``, so it must not depend on a
machine's MLflow store — a fresh clone and this workspace build the same site.
"""

from __future__ import annotations

import os
from pathlib import Path

HISTORY_PAGE = "generated/champion-history.md"
DATES_ENV = "STARRY_DOCS_DATES"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Re-render the history page with this machine's MLflow dates; other pages unchanged."""
    if page.file.src_uri != HISTORY_PAGE or os.environ.get(DATES_ENV) != "1":
        return markdown
    from starry_guide.docs import pages as docs

    root = Path(config.config_file_path).resolve().parent
    if not (root / "models" / "champion" / "champion.json").is_file():
        return markdown
    entries = docs._history(root)
    dates = docs.mlflow_dates(root, entries)
    return docs.history_page(root, dates) if any(dates) else markdown
