"""A pipeline stage killed while its notebook has MLflow runs open leaves them RUNNING for
ever — unless the runner closes them: on SIGTERM at once (KILLED), and after `kill -9` when
the next stage starts. Real `starry stage` processes, real Papermill kernels, a real MLflow
SQLite store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import nbformat
import psutil
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]

SLOW_CELL = """
import pathlib, time, mlflow
mlflow.set_experiment("starry-guide/killed")
with mlflow.start_run(run_name="parent") as parent:
    with mlflow.start_run(run_name="child", nested=True) as child:
        pathlib.Path("../started").write_text(parent.info.run_id + " " + child.info.run_id)
        time.sleep(600)
"""
QUICK_CELL = """
import pathlib
pathlib.Path("../.staging/train/out.txt").parent.mkdir(parents=True, exist_ok=True)
pathlib.Path("../.staging/train/out.txt").write_text("done")
"""
DVC_YAML = """stages:
  prepare:
    cmd: starry stage prepare
    outs: [out_prepare.txt]
  train:
    cmd: starry stage train
    outs: [out.txt]
"""


def notebook(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def project(tmp_path):
    """A project whose 'prepare' stage opens MLflow runs and then hangs, and whose 'train'
    stage finishes at once."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    shutil.copyfile(ROOT / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text(DVC_YAML)
    notebook(root / "notebooks" / "01_prepare.ipynb", SLOW_CELL)
    notebook(root / "notebooks" / "02_train.ipynb", QUICK_CELL)
    return root


def start_stage(root: Path, stage: str, uri: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "starry_guide.cli", "stage", stage],
                            cwd=root, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for_runs(root: Path, runner: subprocess.Popen) -> list[str]:
    started = root / "started"
    deadline = time.time() + 180
    while not started.exists() and time.time() < deadline:
        assert runner.poll() is None, runner.stdout.read()
        time.sleep(0.2)
    assert started.exists(), "the notebook never opened its runs"
    return started.read_text().split()


def statuses(uri: str, run_ids: list[str]) -> list[str]:
    client = MlflowClient(tracking_uri=uri)
    return [client.get_run(r).info.status for r in run_ids]


def kernels_of(runner: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(runner.pid).children(recursive=True)


def test_sigterm_closes_the_stage_runs_as_killed(project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = start_stage(project, "prepare", uri)
    run_ids = wait_for_runs(project, runner)
    assert statuses(uri, run_ids) == ["RUNNING", "RUNNING"]
    kernels = kernels_of(runner)
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 128 + signal.SIGTERM, output
    assert "closed as KILLED" in output
    assert statuses(uri, run_ids) == ["KILLED", "KILLED"]
    run = MlflowClient(tracking_uri=uri).get_run(run_ids[0])
    assert "SIGTERM" in run.data.tags["starry_closed_because"]
    psutil.wait_procs(kernels, timeout=30)
    assert not (project / ".staging" / "runners").exists() or not list(
        (project / ".staging" / "runners").iterdir())


def test_runs_of_a_stage_killed_outright_are_closed_when_the_next_stage_starts(project,
                                                                             tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = start_stage(project, "prepare", uri)
    run_ids = wait_for_runs(project, runner)
    kernels = kernels_of(runner)
    for process in [psutil.Process(runner.pid), *kernels]:  # the whole pipeline, kill -9
        process.kill()
    runner.wait(timeout=30)
    psutil.wait_procs(kernels, timeout=30)
    assert statuses(uri, run_ids) == ["RUNNING", "RUNNING"]  # nothing could close them

    # an unrelated run of someone else's that is still open must be left alone
    mlflow.set_tracking_uri(uri)
    other = MlflowClient(tracking_uri=uri).create_run(
        MlflowClient(tracking_uri=uri).get_run(run_ids[0]).info.experiment_id).info.run_id

    following = start_stage(project, "train", uri)
    output, _ = following.communicate(timeout=300)
    assert following.returncode == 0, output
    assert statuses(uri, run_ids) == ["KILLED", "KILLED"]
    reason = MlflowClient(tracking_uri=uri).get_run(run_ids[1]).data.tags["starry_closed_because"]
    assert "stage 'prepare'" in reason and "died" in reason
    assert statuses(uri, [other]) == ["RUNNING"]
