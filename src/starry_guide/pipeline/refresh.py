"""Keeping the committed notebooks' outputs (what nbval compares against) up to date:
``starry notebooks`` / ``make notebooks`` re-runs only the stale ones, each in a temporary
copy of the project (:func:`copy_project`), and records a refresh key per notebook so an
unchanged one is not run again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import yaml

from starry_guide.pipeline.sources import source_view
from starry_guide.pipeline.stage import (
    STAGE_NOTEBOOKS,
    StageFailed,
    declared_outputs,
    execute,
    keep_failed,
    strip_volatile_metadata,
)

REFRESH_CACHE = Path(".cache") / "notebooks"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


#: what every notebook reads besides its stage's own inputs
_COMMON_INPUTS = ("params.yaml", "uv.lock", "src/starry_guide/config.py")


def _files_digest(root: Path, paths: list[str]) -> str:
    files = []
    for name in paths:
        path = root / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return _digest(*(part for f in files if f.exists()
                     for part in (str(f.relative_to(root)), f.read_bytes())))


def stage_inputs(root: Path, stage: str) -> list[str]:
    """The dependencies ``dvc.yaml`` declares for ``stage`` that no stage produces and that
    are not notebooks: its code and raw data. With the parameters and the locked
    dependencies, they are what DVC itself re-runs the stage for."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    produced = {str(p) for name in spec for p in declared_outputs(root, name)}
    entry = spec.get(stage)
    if entry is None:  # not a pipeline stage here: be conservative
        return ["src", "data/raw"]
    deps = [next(iter(d)) if isinstance(d, dict) else str(d) for d in entry.get("deps", [])]
    return [d for d in deps if d not in produced and not d.startswith("notebooks/")
            and not any(d.startswith(p.rstrip("/") + "/") for p in produced)]


def refresh_keys(root: Path) -> dict[str, tuple[str, str]]:
    """Per stage: (key of the project state its notebook starts from, key of its outputs).

    A notebook's stored outputs depend on its own cells, its stage's inputs
    (:func:`stage_inputs`), the parameters and dependencies, and on the state the earlier
    notebooks left — which depends on *their* code cells (markdown never runs) and inputs.
    So a stored notebook is out of date exactly when its cells changed or DVC would re-run
    its stage or an earlier one (``starry notebooks --force`` re-runs regardless)."""
    state = _files_digest(root, list(_COMMON_INPUTS))
    keys = {}
    for stage, name in STAGE_NOTEBOOKS.items():
        notebook = root / "notebooks" / name
        inputs = _files_digest(root, stage_inputs(root, stage))
        keys[stage] = (state, _digest(state, inputs, source_view(notebook)))
        state = _digest(state, inputs, source_view(notebook, code_only=True))
    return keys


def _stored_key(notebook: Path) -> str | None:
    meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    return meta.get("starry_guide", {}).get("refreshed_from")


def _set_stored_key(notebook: Path, key: str) -> None:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {})["starry_guide"] = {"refreshed_from": key}
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                        encoding="utf-8")


def stale_notebooks(root: Path) -> list[str]:
    """The stages whose stored notebook was not produced from the current sources."""
    keys = refresh_keys(root)
    return [stage for stage, name in STAGE_NOTEBOOKS.items()
            if _stored_key(root / "notebooks" / name) != keys[stage][1]]


class _Workspace:
    """``.cache/notebooks/work/``: a copy of the project (``project/``) with its own MLflow
    store, in which the notebooks run in order as nbval runs them. The state after each
    notebook is saved under ``.cache/notebooks/snapshots/<key>/`` (see :func:`refresh_keys`)
    and restored to the same absolute path, so MLflow's artifact paths stay valid."""

    def __init__(self, root: Path):
        self.root = root
        self.keys = refresh_keys(root)
        self.order = list(STAGE_NOTEBOOKS)
        cache = root / REFRESH_CACHE
        self.work, self.snapshots = cache / "work", cache / "snapshots"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        wanted = {self.keys[s][0] for s in self.order}
        for old in self.snapshots.iterdir():  # keep only states the current sources can use
            if old.name not in wanted:
                shutil.rmtree(old)
        self.current: int | None = None  # index of the last notebook run in `work`

    @property
    def project(self) -> Path:
        return self.work / "project"

    def notebook(self, k: int) -> Path:
        return self.project / "notebooks" / STAGE_NOTEBOOKS[self.order[k]]

    def _snapshot(self, k: int) -> Path:
        """Where the state after notebooks 0..k is saved."""
        return self.snapshots / self.keys[self.order[k + 1]][0]

    def reach(self, k: int) -> None:
        """Make ``work`` hold the state after notebooks 0..k-1 (the state notebook ``k``
        starts from): restore the nearest saved state and run what is missing."""
        if self.current != k - 1:
            start = next((j for j in range(k - 1, -1, -1) if self._snapshot(j).is_dir()), -1)
            if self.work.exists():
                shutil.rmtree(self.work)
            if start >= 0:
                shutil.copytree(self._snapshot(start), self.work, symlinks=True)
            else:
                copy_project(self.root, self.project)
            self.current = start
        while self.current < k - 1:
            self.run(self.current + 1)

    def run(self, k: int) -> Path:
        """Run notebook ``k`` (its current source) in ``work``; save the state after it."""
        nb = self.notebook(k)
        shutil.copyfile(self.root / "notebooks" / nb.name, nb)
        self.current = None  # unknown until the notebook succeeded
        try:
            execute(nb, nb, cwd=nb.parent)
        except StageFailed as exc:
            raise StageFailed(f"{exc}\n{keep_failed(nb, self.root)}") from None
        self.current = k
        if k + 1 < len(self.order) and not self._snapshot(k).exists():
            shutil.copytree(self.work, self._snapshot(k), symlinks=True)
        return nb

    @contextlib.contextmanager
    def store(self):
        """Point MLflow (and the kernels, through the environment) at the copy's store."""
        before = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{self.work / 'mlflow.db'}"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before


def refresh_committed(root: Path, stages: list[str] | None = None,
                      force: bool = False) -> list[Path]:
    """Re-execute the stored notebooks whose sources changed, the way nbval runs them — in a
    copy of the project with its own MLflow store — and write them back with their outputs.

    ``stages`` limits the refresh to these stages; ``force`` refreshes them even when their
    sources did not change. The project state after each notebook is kept under
    ``.cache/notebooks/`` (keyed by everything that produced it), so refreshing one notebook
    re-runs only that notebook when the earlier ones have not changed. Notebooks whose text
    comes out identical are not rewritten. Returns the notebooks that were refreshed.
    """
    _check_stages(stages)
    wanted = [s for s in STAGE_NOTEBOOKS if not stages or s in stages]
    stale = stale_notebooks(root)
    todo = wanted if force else [s for s in wanted if s in stale]
    space = _Workspace(root)
    refreshed = []
    with space.store():
        for stage in todo:
            k = space.order.index(stage)
            space.reach(k)
            nb = space.run(k)
            strip_volatile_metadata(nb)
            _set_stored_key(nb, space.keys[stage][1])
            target = root / "notebooks" / nb.name
            if target.read_bytes() != nb.read_bytes():
                shutil.copyfile(nb, target)
            refreshed.append(target)
    return refreshed


def state_before(root: Path, stage: str) -> Path:
    """The project copy in ``.cache/notebooks/work/`` holding the state ``stage``'s notebook
    starts from (restored, or made by running the earlier notebooks), for checking one
    notebook alone (``make nbval NB=02_train``). Returns the copy's folder; its MLflow store
    is ``../mlflow.db``."""
    _check_stages([stage])
    space = _Workspace(root)
    with space.store():
        space.reach(space.order.index(stage))
    shutil.copyfile(root / "notebooks" / STAGE_NOTEBOOKS[stage],
                    space.notebook(space.order.index(stage)))
    return space.project


def _check_stages(stages: list[str] | None) -> None:
    unknown = sorted(set(stages or []) - set(STAGE_NOTEBOOKS))
    if unknown:
        raise StageFailed(f"unknown stage(s) {', '.join(unknown)}; stages: "
                          f"{', '.join(STAGE_NOTEBOOKS)}")


def copy_project(root: Path, destination: Path, with_code: bool = False,
                 with_packaged: bool = True) -> None:
    """The files a pipeline run needs (params, dvc.yaml, notebooks, raw data, the production
    snapshot), nothing else; ``with_code`` adds what `dvc repro` hashes, runs and builds too
    (src/, scripts/, docs/, mkdocs.yml, uv.lock). ``with_packaged=False`` leaves out the
    ``stations`` stage's output (``data/raw/packaged/``), so the copy fetches it as a fresh
    clone does. A fresh clone has no such output yet: :func:`starry_guide.ingest.packaged.ensure`
    fetches it into the copy."""
    destination.mkdir(parents=True)
    names = ["params.yaml", "dvc.yaml",
             *(["mkdocs.yml", ".dvcignore", "uv.lock"] if with_code else [])]
    for name in names:
        shutil.copyfile(root / name, destination / name)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "generated")
    for folder in ["notebooks", *(["src", "docs", "scripts"] if with_code else [])]:
        shutil.copytree(root / folder, destination / folder, ignore=ignore)
    raw = root / "data" / "raw"
    if raw.is_dir():
        skip = shutil.ignore_patterns("packaged") if not with_packaged else None
        shutil.copytree(raw, destination / "data" / "raw", ignore=skip)
    production = root / "data" / "production"
    if production.is_dir():
        shutil.copytree(production, destination / "data" / "production")
