"""A running service picks up a new champion — on SIGHUP or the authenticated admin endpoint —
without dropping answers in flight (a real uvicorn process, real bundles, real requests)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from starry_guide.artifacts import bundle as transfer
from starry_guide.artifacts import onnx_export
from starry_guide.core import features, models
from tests.serve.conftest import request_body
from tests.support.server import free_port, wait_for_workers, wait_until_healthy, worker_pids

STARRY = [sys.executable, "-m", "starry_guide.cli"]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-reload-token"


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory, rows, observations, settings):
    """A second real bundle (calibrated persistence), to switch to."""
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    model = models.build_candidate("calibrated_persistence", {"prior_strength": 1.0},
                                   settings.seed, 2)
    model.fit(train[columns], train["clear"])
    destination = tmp_path_factory.mktemp("other") / "bundle"
    onnx_export.write_bundle(
        model, columns, destination,
        card={"model_name": "test", "version": "8", "candidate": "calibrated_persistence"},
        feature_spec=transfer.feature_spec(settings),
        climate=onnx_export.climatology(observations, -12, 2),
        X_check=rows[rows["split"] == "held_out"])
    return destination


def replace_folder(source: Path, target: Path) -> None:
    staged = target.with_name(target.name + ".new")
    shutil.copytree(source, staged)
    old = target.with_name(target.name + ".old")
    target.rename(old)
    staged.rename(target)
    shutil.rmtree(old)


@pytest.fixture()
def server(bundle_dir, tmp_path):
    served = tmp_path / "champion" / "bundle"
    shutil.copytree(bundle_dir, served)
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(served), "--port", str(port), "--store", store,
         "--rate-per-s", "0"],  # load from one client address: no write-rate limit
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "STARRY_ADMIN_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    yield url, served, store, process
    process.terminate()
    process.wait(timeout=10)


def served_version(url: str) -> str:
    return httpx.get(f"{url}/healthz", timeout=5).json()["model_version"]


def test_admin_reload_needs_the_token(server):
    url, *_ = server
    assert httpx.post(f"{url}/v1/admin/reload").status_code == 401
    wrong = httpx.post(f"{url}/v1/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert served_version(url) == "7"


def test_reload_under_load_drops_nothing(server, other_bundle, observations):
    url, served, store, _ = server
    bodies = [request_body(observations, start=1000 + 13 * i) for i in range(40)]
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set() or i < 5:
                r = http.post(f"{url}/v1/nowcast", json=bodies[(k * 7 + i) % len(bodies)])
                results.append((r.status_code, r.json().get("model_version", r.text)))
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    replace_folder(other_bundle, served)  # what `dvc repro` / a rollback does to the folder
    answer = httpx.post(f"{url}/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "8"
    assert answer.json()["previous"]["model_version"] == "7"
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    versions = [v for _, v in results]
    assert "7" in versions and "8" in versions  # requests ran before and after the swap
    assert served_version(url) == "8"
    engine = sa.create_engine(store)
    with engine.connect() as db:
        logged = dict(db.exec_driver_sql(
            "SELECT model_version, COUNT(*) FROM predictions GROUP BY model_version").all())
    engine.dispose()
    assert logged == {v: versions.count(v) for v in set(versions)}  # every answer stored


def test_sighup_reloads_and_a_bad_bundle_keeps_the_model(server, other_bundle):
    url, served, _, process = server
    replace_folder(other_bundle, served)
    process.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while served_version(url) != "8" and time.time() < deadline:
        time.sleep(0.2)
    assert served_version(url) == "8"
    # a corrupt bundle is refused and the current model keeps serving
    (served / "model.onnx").write_bytes(b"not a model")
    answer = httpx.post(f"{url}/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30)
    assert answer.status_code == 409 and "current model stays" in answer.json()["detail"]
    assert served_version(url) == "8"


def test_sighup_to_the_supervisor_replaces_every_worker(bundle_dir, other_bundle, tmp_path,
                                                        observations):
    served = tmp_path / "champion" / "bundle"
    shutil.copytree(bundle_dir, served)
    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(served), "--port", str(port), "--workers", "2",
         "--store", f"sqlite:///{tmp_path / 'store.sqlite'}", "--rate-per-s", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        old_workers = set(wait_for_workers(url, process, 2))
        replace_folder(other_bundle, served)
        process.send_signal(signal.SIGHUP)
        statuses, body = [], request_body(observations)
        deadline = time.time() + 120
        # requests keep flowing through the restart, on a fresh connection each time: some
        # land on an old worker as it stops, and are answered (a stopping worker drains,
        # serve/protocol.py), never dropped
        while time.time() < deadline:
            r = httpx.post(f"{url}/v1/nowcast", json=body, timeout=30)
            statuses.append(r.status_code)
            workers = set(worker_pids(process.pid))
            if len(workers) == 2 and not workers & old_workers:
                break  # both replaced: the supervisor retires an old one once its
                #        replacement is ready
        assert not set(worker_pids(process.pid)) & old_workers, "the restart did not finish"
        assert {served_version(url) for _ in range(12)} == {"8"}
        assert set(statuses) == {200}
    finally:
        process.terminate()
        process.wait(timeout=30)
