"""The Papermill runner that ``dvc.yaml`` calls: one stage = one notebook.

A stage's notebook writes every output into a staging folder (``.staging/<stage>/``, the same
layout as the project). Only when the whole notebook succeeds are the outputs that
``dvc.yaml`` declares for the stage moved into place, so a failing cell leaves the previous
good outputs untouched (the stages declare ``persist: true`` so DVC does not delete them
first). The executed notebook is kept as a report, with Papermill's timestamps removed so
that identical runs give identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from traitlets.config import Config

#: stage name -> notebook under notebooks/
STAGE_NOTEBOOKS = {
    "prepare": "01_prepare.ipynb",
    "train": "02_train.ipynb",
    "select": "03_select.ipynb",
    "monitor": "05_monitor.ipynb",
}
EXECUTED_DIR = Path("reports") / "notebooks"
FAILED_DIR = Path("reports") / "failed"
STAGING_DIR = Path(".staging")

_VOLATILE_KEYS = ("start_time", "end_time", "duration", "input_path", "output_path")

# CurveZMQ-encrypt kernel traffic when the kernel supports it; ipykernel >= 7.3 otherwise
# prints a plain-TCP warning on every stage run
_KERNEL_CONFIG = Config()
_KERNEL_CONFIG.KernelManager.transport_encryption = "auto"


class StageFailed(RuntimeError):
    """A stage's notebook raised; the message carries the failing cell's error."""


def declared_outputs(root: Path, stage: str) -> list[Path]:
    """The ``outs``, ``metrics`` and ``plots`` files that ``dvc.yaml`` declares for ``stage``."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    entry = spec["stages"][stage]
    paths = []
    for key in ("outs", "metrics", "plots"):
        for item in entry.get(key, []):
            paths.append(Path(next(iter(item)) if isinstance(item, dict) else item))
    return paths


def strip_volatile_metadata(path: Path) -> None:
    """Remove Papermill's timestamps, random ids and absolute paths from an executed
    notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    papermill = nb.get("metadata", {}).get("papermill", {})
    for key in _VOLATILE_KEYS:
        papermill.pop(key, None)
    papermill.pop("environment_variables", None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        if "injected-parameters" in meta.get("tags", []):
            cell["id"] = "injected-parameters"  # Papermill draws a random id each run
        for key in _VOLATILE_KEYS:
            meta.get("papermill", {}).pop(key, None)
        meta.pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                    encoding="utf-8")


def _replace(staged: Path, target: Path) -> None:
    """Move ``staged`` onto ``target``: a rename, so readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        backup = target.with_name(target.name + ".previous")
        if backup.exists():
            shutil.rmtree(backup)
        if target.exists():
            target.rename(backup)
        staged.rename(target)
        if backup.exists():
            shutil.rmtree(backup)
    else:
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)


def execute(notebook: Path, output: Path, cwd: Path, parameters: dict | None = None) -> None:
    """Run ``notebook`` with Papermill into ``output``; raise :class:`StageFailed` on error."""
    import papermill

    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters or {}, cwd=str(cwd),
            kernel_name="python3", progress_bar=False, log_output=False,
            config=_KERNEL_CONFIG,
        )
    except papermill.PapermillExecutionError as exc:
        raise StageFailed(
            f"{notebook.name}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}\n"
            + "".join(exc.traceback[-3:])
        ) from None


def run_stage(stage: str, root: Path) -> Path:
    """Execute ``stage``'s notebook and publish its declared outputs.

    Returns the executed notebook's path. On failure the executed notebook is saved under
    ``reports/failed/`` and :class:`StageFailed` is raised; no declared output is touched.
    """
    if stage not in STAGE_NOTEBOOKS:
        raise StageFailed(f"unknown stage {stage!r}; stages: {', '.join(STAGE_NOTEBOOKS)}")
    notebook = root / "notebooks" / STAGE_NOTEBOOKS[stage]
    staging = root / STAGING_DIR / stage
    if staging.exists():
        shutil.rmtree(staging)
    executed = staging / EXECUTED_DIR / notebook.name
    executed.parent.mkdir(parents=True)
    try:
        # a path relative to the project keeps the executed notebook free of machine paths
        execute(notebook, executed, cwd=notebook.parent,
                parameters={"output_dir": str(STAGING_DIR / stage)})
    except StageFailed:
        failed = root / FAILED_DIR / notebook.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        if executed.exists():
            shutil.move(str(executed), failed)
        raise
    strip_volatile_metadata(executed)
    missing = [p for p in declared_outputs(root, stage) if not (staging / p).exists()]
    if missing:
        raise StageFailed(
            f"{notebook.name} finished but did not write {', '.join(map(str, missing))}, "
            f"which dvc.yaml declares for stage '{stage}'"
        )
    for path in declared_outputs(root, stage):
        _replace(staging / path, root / path)
    shutil.rmtree(staging, ignore_errors=True)
    return root / EXECUTED_DIR / notebook.name


def refresh_committed(root: Path, stages: list[str] | None = None) -> list[Path]:
    """Re-execute the notebooks in ``notebooks/`` the way nbval does — in a temporary copy of
    the project with a temporary MLflow store — and write them back with their outputs."""
    stages = stages or list(STAGE_NOTEBOOKS)
    written = []
    with tempfile.TemporaryDirectory(prefix="starry-notebooks-") as tmp:
        copy = Path(tmp) / "project"
        copy_project(root, copy)
        env_before = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        try:
            for stage in STAGE_NOTEBOOKS:
                nb = copy / "notebooks" / STAGE_NOTEBOOKS[stage]
                execute(nb, nb, cwd=nb.parent)
                strip_volatile_metadata(nb)
                if stage in stages:
                    shutil.copyfile(nb, root / "notebooks" / nb.name)
                    written.append(root / "notebooks" / nb.name)
        finally:
            if env_before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = env_before
    return written


def copy_project(root: Path, destination: Path, with_code: bool = False,
                 with_packaged: bool = True) -> None:
    """The files a pipeline run needs (params, dvc.yaml, notebooks, raw data, the production
    snapshot), nothing else;
    ``with_code`` adds what `dvc repro` hashes and builds too (src/, docs/, mkdocs.yml,
    uv.lock). ``with_packaged=False`` leaves out the ``stations`` stage's output
    (``data/raw/packaged/``), so the copy fetches it as a fresh clone does."""
    destination.mkdir(parents=True)
    names = ["params.yaml", "dvc.yaml",
             *(["mkdocs.yml", ".dvcignore", "uv.lock"] if with_code else [])]
    for name in names:
        shutil.copyfile(root / name, destination / name)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "generated")
    for folder in ["notebooks", *(["src", "docs"] if with_code else [])]:
        shutil.copytree(root / folder, destination / folder, ignore=ignore)
    raw = root / "data" / "raw"
    if raw.is_dir():
        skip = shutil.ignore_patterns("packaged") if not with_packaged else None
        shutil.copytree(raw, destination / "data" / "raw", ignore=skip)
    production = root / "data" / "production"
    if production.is_dir():
        shutil.copytree(production, destination / "data" / "production")
