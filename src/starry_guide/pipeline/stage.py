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
import re
import shutil
import signal
import socket
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


def import_papermill():
    """``import papermill``, without the import-time cost of a format checker it never uses.

    Papermill imports nbformat, which imports jsonschema; jsonschema registers its optional
    "iri" format checker when ``rfc3987_syntax`` is installed (it is, through Jupyter's
    ``jsonschema[format-nongpl]``), and importing that package compiles 39 lark grammars:
    3.3 s of the 4.6 s a stage's runner took to start (cProfile), paid by every notebook
    stage. Neither nbformat's notebook schemas nor Papermill check any format, so the
    runner imports jsonschema without that checker; a later ``import rfc3987_syntax`` in
    this process still works.

    Returns
    -------
    module
        The ``papermill`` module.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import papermill  # jsonschema's checkers were set up already: nothing to save

        return papermill
    sys.modules["rfc3987_syntax"] = None  # an optional import that then raises ImportError
    try:
        import papermill
    finally:
        del sys.modules["rfc3987_syntax"]
    return papermill


def execute(notebook: Path, output: Path, cwd: Path, parameters: dict | None = None) -> None:
    """Run ``notebook`` with Papermill into ``output``; raise :class:`StageFailed` on error.

    The kernel draws figures inline, so they are stored in the executed notebook."""
    papermill = import_papermill()

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


def keep_failed(executed: Path, root: Path) -> str:
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
        raise StageFailed(f"{exc}\n{keep_failed(executed, root)}") from None
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
