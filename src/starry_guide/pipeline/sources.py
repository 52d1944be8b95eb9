"""The notebooks' cells without their outputs (``notebooks/.sources/*.py``, the
``notebook_sources`` stage): what the pipeline stages depend on, so that refreshing a
notebook's stored outputs re-runs no stage while an edited cell re-runs its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from starry_guide.pipeline.stage import declared_outputs

SOURCES_STAGE = "notebook_sources"
SOURCES_DIR = Path("notebooks") / ".sources"
_SOURCES_HEADER = ("# Generated from notebooks/{name} by `starry notebook-sources` (dvc stage "
                   "notebook_sources).\n# The notebook's cells without their outputs: the "
                   "pipeline stage depends on this view, so\n# refreshing stored outputs "
                   "(`make notebooks`) never makes it stale. Edit the notebook, not this.\n")


def source_view(notebook: Path, code_only: bool = False) -> str:
    """The notebook's cells as text (code and markdown, in order; ``code_only``: code
    cells only) — everything the analyst wrote, none of the outputs or metadata."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parts = []
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or (code_only and cell["cell_type"] != "code"):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code":
            source = "\n".join(f"# {line}".rstrip() for line in source.splitlines())
        marker = "# %%" if cell["cell_type"] == "code" else f"# %% [{cell['cell_type']}]"
        parts.append(marker + (f" tags={sorted(tags)}" if tags else "") + "\n" + source)
    return "\n\n".join(parts) + "\n"


def write_source_views(root: Path) -> list[Path]:
    """Write ``notebooks/.sources/NAME.py`` for every view the ``notebook_sources`` stage
    declares; a file is rewritten only when its text changes."""
    written = []
    for view in declared_outputs(root, SOURCES_STAGE):
        notebook = root / "notebooks" / (view.stem + ".ipynb")
        text = _SOURCES_HEADER.format(name=notebook.name) + "\n" + source_view(notebook)
        target = root / view
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def update_source_views(root: Path) -> str:
    """Bring the ``notebook_sources`` stage up to date (``dvc repro`` of that stage only), so
    that rewriting stored outputs leaves ``dvc status`` clean; returns what happened."""
    if not (root / ".dvc").is_dir():
        write_source_views(root)
        return "source views written (not a DVC repository)"
    result = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item",
                             SOURCES_STAGE], cwd=root, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        return (f"warning: `dvc repro --single-item {SOURCES_STAGE}` failed; run it before "
                f"`dvc repro`:\n{result.stderr.strip()}")
    return f"dvc stage {SOURCES_STAGE} up to date (stages see only notebook sources)"
