"""The Papermill runner that ``dvc.yaml`` calls: one stage = one notebook.

A stage's notebook writes every output into a staging folder (``.staging/<stage>/``, the same
layout as the project). Only when the whole notebook succeeds are the outputs that
``dvc.yaml`` declares for the stage moved into place, so a failing cell leaves the previous
good outputs untouched (the stages declare ``persist: true`` so DVC does not delete them
first). The executed notebook is kept as a report, with Papermill's timestamps removed so
that identical runs give identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml
from traitlets.config import Config

from starry_guide.artifacts.reports import replace_atomically
from starry_guide.pipeline.tracking import STAGE_RUN_TAG

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
#: one file per running stage: who runs it, and the tag of its MLflow runs
RUNNERS_DIR = STAGING_DIR / "runners"
#: every MLflow run a stage's notebook starts carries this tag naming the stage run (set
#: through MLflow's ``MLFLOW_RUN_CONTEXT``), so that a killed stage's runs can be closed

_VOLATILE_KEYS = ("start_time", "end_time", "duration", "input_path", "output_path")

# CurveZMQ-encrypt kernel traffic when the kernel supports it; ipykernel >= 7.3 otherwise
# prints a plain-TCP warning on every stage run
_KERNEL_CONFIG = Config()
_KERNEL_CONFIG.KernelManager.transport_encryption = "auto"


class StageFailed(RuntimeError):
    """A stage's notebook raised; the message carries the failing cell's error."""


class StageInterrupted(KeyboardInterrupt):
    """The stage runner got SIGTERM, SIGHUP or SIGINT; its MLflow runs were closed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.at_ms = int(time.time() * 1000)


def _interrupt(signum, frame) -> None:
    raise StageInterrupted(signum)


def _mlflow_uri(root: Path) -> str:
    # the store the stage's kernel will use (tracking.tracking_uri, without params.yaml)
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (tells a reused pid apart), None when
    unknown, ``"zombie"`` for a process that has exited but not been reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "zombie" if fields[0] == "Z" else fields[19]


def _alive(marker: dict) -> bool:
    try:
        os.kill(marker["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return marker.get("started") is None or _process_start(marker["pid"]) == marker["started"]


def close_abandoned_runs(root: Path) -> list[str]:
    """Close as ``KILLED`` the MLflow runs of stage runners on this machine that died without
    cleaning up (``kill -9``, a crash, the machine's OOM killer); called as each stage
    starts. Returns the closed run ids."""
    folder = root / RUNNERS_DIR
    closed: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if marker.get("host") != socket.gethostname() or _alive(marker):
            continue  # another machine's runner, or one still running
        from starry_guide.pipeline import tracking

        closed += tracking.close_stage_runs(
            marker["uri"], marker["stage_run"], "KILLED",
            f"stage '{marker['stage']}' (runner pid {marker['pid']}) died without finishing")
        path.unlink(missing_ok=True)
    return closed


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
    # the source notebook's refresh key (`make notebooks`) says which inputs its *stored*
    # outputs came from; copied into a stage's executed report it would depend on whether
    # the source was refreshed before or after the stage ran (a fresh clone and this
    # workspace would write different reports from the same inputs)
    nb.get("metadata", {}).pop("starry_guide", None)
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


#: the kernel draws figures inline (ipykernel's default), whatever MPLBACKEND the caller set
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _analyst_cell_number(cells: list[dict], cell_index: int, injected: bool) -> int:
    """The failing cell's number as the analyst sees it: its position among the notebook's
    code cells, counting from 1, without the cell Papermill injects after ``parameters``."""
    if injected:
        tagged = [i for i, c in enumerate(cells)
                  if "parameters" in c.get("metadata", {}).get("tags", [])]
        if tagged and cell_index > tagged[0]:
            cell_index -= 1  # the injected cell sits right after the parameters cell
    return sum(1 for c in cells[:cell_index + 1] if c["cell_type"] == "code")


def failure_message(name: str, cells: list[dict], exc, injected: bool) -> str:
    """What an analyst needs from a failed cell: its number as they see it, their own line
    of code (the traceback frame inside the cell), and the error.

    ``cells`` are the notebook's cells as written (before Papermill ran it); ``exc`` is
    Papermill's ``PapermillExecutionError``."""
    number = _analyst_cell_number(cells, exc.cell_index, injected)
    frames = [_ANSI.sub("", frame) for frame in exc.traceback]
    if exc.exec_count is not None:
        frames = [f.replace(f"Cell In[{exc.exec_count}]", f"Cell In[{number}]") for f in frames]
    own = [f for f in frames if f.lstrip().startswith("Cell In[")]
    # the analyst's frame(s), then the innermost library frame that raised, then the error
    shown = own + [f for f in frames[-2:-1] if f not in own] + frames[-1:]
    source = "\n".join(f"    {line}" for line in exc.source.splitlines())
    return (f"{name}: cell [{number}] raised {exc.ename}: {exc.evalue}\n"
            f"  the cell:\n{source}\n  traceback (your code first):\n"
            + "\n".join(shown))


def execute(notebook: Path, output: Path, cwd: Path, parameters: dict | None = None) -> None:
    """Run ``notebook`` with Papermill into ``output``; raise :class:`StageFailed` on error.

    The kernel draws figures inline, so they are stored in the executed notebook."""
    import papermill

    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel inherits the environment
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters or {}, cwd=str(cwd),
            kernel_name="python3", progress_bar=False, log_output=False,
            config=_KERNEL_CONFIG,
        )
    except papermill.PapermillExecutionError as exc:
        raise StageFailed(failure_message(notebook.name, cells, exc,
                                           injected=bool(parameters))) from None
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend


def _keep_failed(executed: Path, root: Path) -> str:
    """Move a failed run's notebook to ``reports/failed/``; say where it went."""
    if not executed.exists():
        return "(the kernel died before the notebook was written)"
    failed = root / FAILED_DIR / executed.name
    failed.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(executed), failed)
    return f"the failed notebook, with every output up to the error: {failed}"


def run_stage(stage: str, root: Path) -> Path:
    """Execute ``stage``'s notebook and publish its declared outputs.

    Returns the executed notebook's path. On failure the executed notebook is saved under
    ``reports/failed/`` and :class:`StageFailed` is raised; no declared output is touched.
    """
    if stage not in STAGE_NOTEBOOKS:
        raise StageFailed(f"unknown stage {stage!r}; stages: {', '.join(STAGE_NOTEBOOKS)}")
    close_abandoned_runs(root)
    stage_run = uuid.uuid4().hex
    uri = _mlflow_uri(root)
    marker = root / RUNNERS_DIR / f"{stage_run}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({
        "stage": stage, "stage_run": stage_run, "pid": os.getpid(),
        "started": _process_start(os.getpid()), "host": socket.gethostname(), "uri": uri,
        "since": time.time()}), encoding="utf-8")
    # every MLflow run the notebook starts is tagged with this stage run
    context_before = os.environ.get("MLFLOW_RUN_CONTEXT")
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps(
        {**json.loads(context_before or "{}"), STAGE_RUN_TAG: stage_run})
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, _interrupt)
                    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        return _run_stage(stage, root)
    except StageFailed:
        _close_runs(uri, stage_run, "FAILED", f"stage '{stage}' failed")
        raise
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        _close_runs(uri, stage_run, "KILLED", f"stage '{stage}' was interrupted by "
                    f"{signal.Signals(signum).name}",
                    getattr(exc, "at_ms", int(time.time() * 1000)))
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if context_before is None:
            os.environ.pop("MLFLOW_RUN_CONTEXT", None)
        else:
            os.environ["MLFLOW_RUN_CONTEXT"] = context_before
        marker.unlink(missing_ok=True)


def _close_runs(uri: str, stage_run: str, status: str, reason: str,
                since_ms: int | None = None) -> None:
    from starry_guide.pipeline import tracking

    # a second signal while closing would leave them open: ignore it for these moments
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if main else None
    try:
        tracking.close_stage_runs(uri, stage_run, status, reason, since_ms)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _run_stage(stage: str, root: Path) -> Path:
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
    except StageFailed as exc:
        raise StageFailed(f"{exc}\n{_keep_failed(executed, root)}") from None
    strip_volatile_metadata(executed)
    missing = [p for p in declared_outputs(root, stage) if not (staging / p).exists()]
    if missing:
        raise StageFailed(
            f"{notebook.name} finished but did not write {', '.join(map(str, missing))}, "
            f"which dvc.yaml declares for stage '{stage}'"
        )
    for path in declared_outputs(root, stage):
        replace_atomically(staging / path, root / path)
    shutil.rmtree(staging, ignore_errors=True)
    return root / EXECUTED_DIR / notebook.name


SOURCES_STAGE = "notebook_sources"
SOURCES_DIR = Path("notebooks") / ".sources"
REFRESH_CACHE = Path(".cache") / "notebooks"
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
            raise StageFailed(f"{exc}\n{_keep_failed(nb, self.root)}") from None
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
