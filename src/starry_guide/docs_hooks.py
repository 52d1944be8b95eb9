"""MkDocs hook (``hooks:`` in ``mkdocs.yml``): the site's *Champion history* page gets the
dates this machine's MLflow store holds.

The committed page (``docs/generated/champion-history.md``) is built from tracked files only,
so it is the same in every clone; the dates of the decisions live in the MLflow store of the
machine that made them. At site-build time this hook re-renders that one page with
:func:`starry_guide.docs.history_page` and the dates of :func:`starry_guide.docs.mlflow_dates`
(none when the store is absent or does not hold the decision).
"""

from __future__ import annotations

from pathlib import Path

HISTORY_PAGE = "generated/champion-history.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Re-render the history page with this machine's MLflow dates; other pages unchanged."""
    if page.file.src_uri != HISTORY_PAGE:
        return markdown
    from starry_guide import docs

    root = Path(config.config_file_path).resolve().parent
    if not (root / "models" / "champion" / "champion.json").is_file():
        return markdown
    entries = docs._history(root)
    dates = docs.mlflow_dates(root, entries)
    return docs.history_page(root, dates) if any(dates) else markdown
