"""The analyst's edit → refresh → test loop on one notebook (issue: "well under a minute plus
that notebook's own run time").

In a fresh temporary copy of the project (its own `.cache/notebooks/`, MLflow store and
outputs), measured in one run:

* baseline — the old loop: refresh every notebook from scratch (`refresh_committed(force)`),
  which is also what the first `make notebooks` in a new clone pays;
* the notebook's own run time: one Papermill execution of it, from the saved state;
* the loop: edit a markdown cell of NB, `make notebooks` (refresh_committed: only NB runs,
  from the saved state the earlier notebooks left), then nbval over NB alone
  (`make nbval NB=...`: restore that state, run NB under nbval);
* overhead = loop − 2 × the notebook's own run time (refresh and test each run it once).

Each run is appended to ``benchmarks/results/notebook_loop.json`` (``runs``), with the load
average at its start and end.

    .venv/bin/python benchmarks/notebook_loop.py [02_train] [--in-place]

``--in-place`` uses the project itself and the state a previous `make notebooks` saved
(skipping the from-scratch baseline; run `.venv/bin/starry notebooks --force` first to time
it), runs the analyst's own commands (`make notebooks`, `make nbval NB=...`, each a process of
its own), and puts the notebook's bytes back afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starry_guide.pipeline import refresh
from starry_guide.pipeline import stage as notebook

ROOT = Path(__file__).resolve().parents[1]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return round(time.perf_counter() - start, 1)


def make(target: str, *variables: str) -> str:
    """``make TARGET`` in the project, as the analyst types it; its output."""
    result = subprocess.run(["make", "--no-print-directory", target, *variables], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def kernel_start(tmp: Path) -> None:
    """Papermill on a one-cell notebook (``import starry_guide``): what every notebook run
    pays before its first cell."""
    path = tmp / "kernel.ipynb"
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "k", "metadata": {},
                   "outputs": [], "source": ["import starry_guide"]}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    notebook.execute(path, path, cwd=tmp)


def loop(project: Path, stage: str, tmp: Path, commands: bool = False) -> dict:
    """Edit a markdown cell of ``stage``'s notebook, refresh, nbval it alone; time each.
    With ``commands`` (the project itself), the refresh and the test are the analyst's own
    commands, ``make notebooks`` and ``make nbval NB=...``, each a process of its own."""
    path = project / "notebooks" / notebook.STAGE_NOTEBOOKS[stage]
    nb = json.loads(path.read_text())
    markdown = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    markdown["source"] = [*markdown["source"], "\n\nAn analyst's new sentence."]
    path.write_text(json.dumps(nb, indent=1))
    before = {p.name: p.read_bytes() for p in (project / "notebooks").glob("*.ipynb")}
    refreshed: list = []
    if commands:
        refresh = timed(lambda: make("notebooks"))
        refreshed = [project / "notebooks" / name for name, data in before.items()
                     if (project / "notebooks" / name).read_bytes() != data]
        # a markdown edit: the notebook is re-executed and written back (its stored key
        # changes), the others are untouched
        assert [p.name for p in refreshed] == [path.name], refreshed
    else:
        refresh = timed(lambda: refreshed.extend(refresh.refresh_committed(project)))
        assert [p.name for p in refreshed] == [path.name], refreshed  # that notebook alone
    state = refresh.state_before(project, stage)
    own = timed(lambda: notebook.execute(state / "notebooks" / path.name, tmp / "own.ipynb",
                                         cwd=state / "notebooks"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{state.parent / 'mlflow.db'}",
           "MPLBACKEND": notebook.INLINE_BACKEND}

    def nbval() -> None:  # what `make nbval NB=...` does
        work = refresh.state_before(project, stage)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
             "--nbval-sanitize-with", str(ROOT / "tests" / "notebooks" / "sanitize.cfg"),
             "-p", "no:cacheprovider", "-q", f"notebooks/{path.name}"],
            cwd=work, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[-3000:]

    test = timed(lambda: make("nbval", f"NB={path.stem}") if commands else nbval())
    total = round(refresh + test, 1)
    return {"notebook_own_run_s": own, "refresh_after_markdown_edit_s": refresh,
            "nbval_this_notebook_s": test, "loop_s": total,
            "overhead_beyond_two_runs_s": round(total - 2 * own, 1)}


def main(name: str = "02_train", in_place: bool = False) -> dict:
    stage = next(s for s, nb in notebook.STAGE_NOTEBOOKS.items() if nb.startswith(name))
    out = {"notebook": notebook.STAGE_NOTEBOOKS[stage],
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_average_1min_at_start": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="starry-loop-") as tmp:
        if in_place:
            # the project itself, with the state `make notebooks` saved; the notebook's
            # bytes are put back afterwards
            path = ROOT / "notebooks" / notebook.STAGE_NOTEBOOKS[stage]
            original = path.read_bytes()
            try:
                out |= loop(ROOT, stage, Path(tmp), commands=True)
                out["commands"] = ["make notebooks", f"make nbval NB={name}"]
                # the loop's fixed costs, apart from the notebook's own run: `make notebooks`
                # with nothing stale (uv's check, the stale check, the sources stage) and a
                # Papermill kernel start (a one-cell notebook)
                out["make_notebooks_nothing_stale_s"] = timed(lambda: make("notebooks"))
                out["kernel_start_one_cell_s"] = timed(lambda: kernel_start(Path(tmp)))
            finally:
                path.write_bytes(original)
        else:
            copy = Path(tmp) / "project"
            refresh.copy_project(ROOT, copy, with_code=True)
            out["baseline_refresh_all_from_scratch_s"] = timed(
                lambda: refresh.refresh_committed(copy, force=True))
            out |= loop(copy, stage, Path(tmp))
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out, indent=2))
    # every run is kept (the loop's time on this shared machine varies with its load)
    results = ROOT / "benchmarks" / "results" / "notebook_loop.json"
    results.parent.mkdir(exist_ok=True)
    earlier = json.loads(results.read_text()).get("runs", []) if results.is_file() else []
    results.write_text(json.dumps({"runs": [*earlier, out]}, indent=2) + "\n")
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--in-place"]
    main(*args, in_place="--in-place" in sys.argv)
