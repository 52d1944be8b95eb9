"""Logged models travel: they load outside this repository, and with a tracking server their
artifacts live in the server's artifact store (a real `mlflow server`, started here)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from starry_guide.core import features, splits
from starry_guide.pipeline import registry, tracking, training

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LOAD_OUTSIDE = """
import importlib.util, json, sys
repo, uri, data = sys.argv[1:4]
# forget this checkout's code (the editable install points at src/): only the model's own
# copy of starry_guide may be used
sys.path = [p for p in sys.path if not p.startswith(repo + "/src") and p not in ("", repo)]
assert importlib.util.find_spec("starry_guide") is None, "starry_guide still importable"
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(uri)
out = model.predict(pd.read_parquet(data))
print(json.dumps({"columns": list(out.columns),
                  "signature": model.metadata.get_output_schema().input_names(),
                  "p": out["p_clear"].tolist(),
                  "code": sys.modules["starry_guide"].__file__}))
"""


@pytest.fixture(scope="module")
def rows(observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    return rows


def small(settings, root: Path):
    train = dataclasses.replace(settings.train,
                                candidates=("calibrated_persistence", "logistic_regression"))
    return dataclasses.replace(settings, train=train, project_root=root)


def test_a_logged_model_loads_and_predicts_outside_the_repository(rows, settings, tmp_path,
                                                                  tracking_uri):
    project = small(settings, tmp_path / "project")
    results = training.fit_candidates(rows, project)
    training.log_candidates(results, rows, project, tmp_path)
    X, _ = training.split_xy(rows, "held_out", project)
    X.head(40).to_parquet(tmp_path / "x.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("PYTHONPATH", None)
    for name in ("logistic_regression", "calibrated_persistence"):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_OUTSIDE, str(ROOT), results[name].model_uri,
             str(tmp_path / "x.parquet")],
            cwd=elsewhere, env=env, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        answer = __import__("json").loads(out.stdout.strip().splitlines()[-1])
        assert answer["columns"] == answer["signature"] == ["p_clear"]
        assert not answer["code"].startswith(str(ROOT / "src"))  # the model's own copy
        np.testing.assert_allclose(answer["p"],
                                   training.predict_clear(results[name].model, X.head(40)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    """A real tracking server with its own artifact store, on a free port."""
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        yield url, artifacts
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_with_a_tracking_server_artifacts_go_to_the_servers_store(rows, settings, tmp_path,
                                                                 mlflow_server, monkeypatch):
    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    project_root = tmp_path / "project"
    project_root.mkdir()
    monkeypatch.chdir(project_root)
    project = small(settings, project_root)
    results = training.fit_candidates(rows, project)
    training.log_candidates(results, rows, project, tmp_path)
    experiment = mlflow.get_experiment_by_name(tracking.TRAIN_EXPERIMENT)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    uri = results["logistic_regression"].model_uri
    version = registry.register(mlflow.MlflowClient(), project.select.model_name, uri,
                                results["logistic_regression"].model_id,
                                {"candidate": "logistic_regression"})
    # the model's files are in the server's artifact store, none on this side
    stored = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "estimator.skops" for p in stored), stored[:20]
    assert not (project_root / "mlartifacts").exists() and not (project_root / "mlruns").exists()
    loaded = registry.load_version(version)
    X, _ = training.split_xy(rows, "held_out", project)
    np.testing.assert_allclose(training.predict_clear(loaded, X.head(30)),
                               training.predict_clear(results["logistic_regression"].model,
                                                      X.head(30)))
