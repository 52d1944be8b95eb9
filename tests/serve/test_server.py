"""End to end against a real uvicorn process over HTTP (`starry serve`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.serve.conftest import fresh_postgres_database, request_body

STARRY = [sys.executable, "-m", "starry_guide.cli"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[(1, "sqlite"), (2, "sqlite"), (2, "postgresql")],
                ids=["1-worker-sqlite", "2-workers-sqlite", "2-workers-postgresql"])
def server(bundle_dir, tmp_path_factory, request):
    # two worker processes share one store: its locking must lose nothing
    workers, backend = request.param
    if backend == "sqlite":
        log = f"sqlite:///{tmp_path_factory.mktemp('server') / 'store.sqlite'}"
    else:
        log = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    port = free_port()
    process = subprocess.Popen(
        [*STARRY, "serve", "--bundle", str(bundle_dir), "--port", str(port),
         "--store", log, "--workers", str(workers)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError(process.stdout.read())
    yield url, log
    process.terminate()
    process.wait(timeout=10)


def test_nowcast_over_http(server, observations):
    url, _ = server
    response = httpx.post(f"{url}/v1/nowcast", json=request_body(observations), timeout=10)
    assert response.status_code == 200
    assert len(response.json()["forecasts"]) == 12
    assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "Starry Guide"


def test_concurrent_requests_all_reach_the_log(server, observations):
    url, log = server
    engine = sa.create_engine(log)
    with engine.connect() as db:
        before = db.exec_driver_sql("SELECT COUNT(*) FROM predictions").scalar()
    bodies = [request_body(observations, start=1000 + 13 * i) for i in range(60)]
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda b: client.post(f"{url}/v1/nowcast", json=b), bodies))
    assert all(r.status_code == 200 for r in responses)
    ids = {r.json()["prediction_id"] for r in responses}
    assert len(ids) == 60
    with engine.connect() as db:
        logged = {row[0] for row in db.exec_driver_sql("SELECT prediction_id FROM predictions")}
        rows = db.exec_driver_sql("SELECT COUNT(*) FROM prediction_horizons").scalar()
        if engine.dialect.name == "sqlite":
            assert db.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    assert ids <= logged
    assert len(logged) == before + 60 and rows == (before + 60) * 12


def test_refuses_to_start_on_a_corrupt_bundle(bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "feature_spec.json").write_text("{}")
    result = subprocess.run([*STARRY, "serve", "--bundle", str(copy), "--port",
                             str(free_port())], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "cannot start" in result.stderr and "feature_spec.json is corrupt" in result.stderr


def test_refuses_to_start_without_a_champion(tmp_path, monkeypatch):
    result = subprocess.run([*STARRY, "serve", "--port", str(free_port())], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ,
                                 "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode != 0
    assert "no champion yet" in result.stderr
