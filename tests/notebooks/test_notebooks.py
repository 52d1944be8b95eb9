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

from starry_guide.notebook import copy_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.notebooks
def test_notebooks_reproduce_their_stored_outputs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    copy_project(ROOT, project)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "notebooks" / "sanitize.cfg"),
         "-p", "no:cacheprovider", "-q", "notebooks"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # the notebooks wrote into the copy, not into the project
    assert (project / "data" / "processed" / "rows.parquet").is_file()
