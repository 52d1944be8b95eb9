"""nbval over notebooks/: re-run each stage notebook and compare with its stored outputs.

They run in a temporary copy of the project with a temporary MLflow store, so the test never
touches the user's data/, models/, reports/ or mlflow.db. The notebooks run in order (each
reads what the previous one wrote), exactly as `starry notebooks` produced the stored outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from starry_guide.ingest import packaged
from starry_guide.pipeline.refresh import copy_project, state_before
from starry_guide.pipeline.stage import INLINE_BACKEND, STAGE_NOTEBOOKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.notebooks
def test_notebooks_reproduce_their_stored_outputs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    copy_project(ROOT, project)
    packaged.ensure(project)  # a fresh clone has not run the stations stage
    # figures inline, as `make notebooks` stored them, whatever MPLBACKEND the caller has
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MPLBACKEND": INLINE_BACKEND}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "notebooks" / "sanitize.cfg"),
         "-p", "no:cacheprovider", "-q", "notebooks"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # the notebooks wrote into the copy, not into the project
    assert (project / "data" / "processed" / "rows.parquet").is_file()


@pytest.mark.notebooks
@pytest.mark.skipif(not os.environ.get("NB"), reason="`make nbval NB=02_train` checks one "
                                                     "notebook alone")
def test_one_notebook_reproduces_its_stored_outputs() -> None:
    """The analyst's loop: nbval over one notebook, started from the state the earlier
    notebooks leave (saved by `make notebooks` under .cache/notebooks/, or rebuilt)."""
    wanted = os.environ["NB"].removesuffix(".ipynb")
    stage = next((s for s, name in STAGE_NOTEBOOKS.items()
                  if wanted in (s, name.removesuffix(".ipynb"))), None)
    assert stage, f"NB={wanted}: not a stage or notebook ({', '.join(STAGE_NOTEBOOKS)})"
    project = state_before(ROOT, stage)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project.parent / 'mlflow.db'}",
           "MPLBACKEND": INLINE_BACKEND}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "notebooks" / "sanitize.cfg"),
         "-p", "no:cacheprovider", "-q", f"notebooks/{STAGE_NOTEBOOKS[stage]}"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
