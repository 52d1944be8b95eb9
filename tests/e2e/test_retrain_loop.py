"""The model lifecycle as one loop, on real parts: a copy of the project with its own git,
DVC and MLflow SQLite store; `starry serve` (a real uvicorn) serving the champion's bundle
from `models/champion/bundle`; `starry replay` feeding a real station file hour by hour;
`starry store snapshot`, the `monitor` stage and `starry retrain` (snapshot + `dvc repro`).

* **Control** — a station whose sky did not change (station ``calm``: Greensboro's own
  autumn, as recorded): the monitor does not recommend retraining, `starry retrain` re-runs
  the pipeline on the new production data, and the gate keeps the champion.
* **Shift** — a station whose nights cloud over from 10 September on (``shifted``: the
  replay's ``shift-clear-rate`` fault): the monitor recommends retraining, `starry retrain`
  trains on the production data (the station's adaptation map learns the new sky), the gate
  promotes a new champion on the recent production window with its evidence, and the running
  service picks it up on the authenticated admin reload while answering requests — none
  dropped — and serves the station's nowcasts with its map.

The copy uses pvlib's three stations and two small candidates (a deliberately weak
calibrated-persistence baseline, so that the persistence logistic — robust to missing inputs,
as the gate's input-profile tests require — is the first champion).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from starry_guide.ingest import packaged
from starry_guide.pipeline.refresh import copy_project
from tests.support import project
from tests.support.project import set_params
from tests.support.server import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FEED_TOKEN = "retrain-loop-feeder-token-0123456789"
ADMIN_TOKEN = "retrain-loop-admin-token-0123456789"
START, HOURS = "2001-09-03", 12 * 168  # twelve weeks from a Monday
SHIFT = "shift-clear-rate@2001-09-10"
run = functools.partial(project.run, timeout=1200)  # every command bounded
pytestmark = pytest.mark.e2e


def read(copy: Path, name: str) -> dict:
    return json.loads((copy / name).read_text())


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrain")
    copy = tmp / "project"
    copy_project(ROOT, copy, with_code=True)
    packaged.ensure(copy)  # a fresh clone has not run the stations stage
    store = f"sqlite:///{tmp / 'store.sqlite'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_MKDOCS_2_WARNING": "1",
           "STARRY_FEED_TOKEN": FEED_TOKEN, "STARRY_ADMIN_TOKEN": ADMIN_TOKEN,
           "STARRY_STORE_URL": store}
    set_params(copy, **{"data.stations": ["greensboro_nc", "sand_point_ak", "miami_fl"],
                        "split.unseen_stations": ["sand_point_ak"],
                        "train.candidates": ["calibrated_persistence", "persistence_logistic"],
                        "train.search.budget": 0,
                        "train.calibrated_persistence.prior_strength": 1.0e6,
                        "select.bootstrap_samples": 300})
    run(["git", "init", "-q"], copy, env)
    run([str(BIN / "dvc"), "init", "-q"], copy, env)
    run([str(BIN / "dvc"), "repro"], copy, env)
    first = read(copy, "models/champion/champion.json")
    assert first["candidate"] == "persistence_logistic"

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "starry"), "serve", "--bundle", str(copy / "models/champion/bundle"),
         "--port", str(port), "--store", store],
        cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield copy, env, url, first
    finally:
        server.terminate()
        server.wait(timeout=30)


def replay(copy: Path, env: dict, url: str, station: str, *faults: str) -> None:
    run([str(BIN / "starry"), "replay", "greensboro_nc", "--url", url, "--station-id", station,
         "--start", START, "--hours", str(HOURS), "--seed", "7",
         *[arg for fault in faults for arg in ("--fault", fault)]], copy, env)


def monitor_verdict(copy: Path, env: dict) -> dict:
    """The monitor stage on a fresh snapshot, judging the champion in production now."""
    run([str(BIN / "starry"), "store", "snapshot", "--out", "data/production"], copy, env)
    run([str(BIN / "dvc"), "repro", "--single-item", "monitor"], copy, env)
    return read(copy, "reports/metrics/monitor.json")


def served_version(url: str) -> str:
    return httpx.get(f"{url}/healthz", timeout=10).json()["model_version"]


def test_no_shift_no_promotion_then_a_shift_is_retrained_promoted_and_served(loop):
    copy, env, url, first = loop
    assert served_version(url) == first["model_id"]

    # control: the sky as it was -> nothing to act on, and a retrain changes nothing
    replay(copy, env, url, "calm")
    report = monitor_verdict(copy, env)
    assert report["stations"]["calm"]["retrain_recommended"] is False, report["reasons"]
    run([str(BIN / "starry"), "retrain"], copy, env)
    decision = read(copy, "reports/select_decision.json")
    assert decision["recent_window"]["stations"] == ["calm"]
    assert decision["recent_window"]["used_by_gate"] is True
    print(f"\ncontrol: {decision['reason']}")
    assert decision["promoted"] is False, decision["reason"]
    assert read(copy, "models/champion/champion.json")["model_id"] == first["model_id"]

    # the world changes at a second station: its nights cloud over
    replay(copy, env, url, "shifted", SHIFT)
    report = monitor_verdict(copy, env)
    assert report["retrain_recommended"] is True
    assert report["stations"]["shifted"]["retrain_recommended"] is True, report["reasons"]
    assert report["stations"]["calm"]["retrain_recommended"] is False

    run([str(BIN / "starry"), "retrain"], copy, env)
    decision = read(copy, "reports/select_decision.json")
    print(f"\nshift: {decision['reason']}")
    assert decision["promoted"] is True, decision["reason"]
    assert decision["incumbent_model"]["model_id"] == first["model_id"]
    winner = next(t for t in decision["tried"] if t["passed"])
    assert winner["recent"]["ci_high"] < 0  # significantly better on the recent window
    assert winner["ci_low"] <= 0  # and not significantly worse on validation
    champion = read(copy, "models/champion/champion.json")
    assert champion["model_id"] == winner["model_id"] != first["model_id"]
    maps = champion["station_calibration"]
    print(f"station maps: {maps}")
    assert maps["shifted"]["a"] < -0.3  # its nights are cloudier than the model thought
    assert abs(maps["shifted"]["a"]) > 3 * abs(maps["calm"]["a"])

    # the running service picks the new champion up, answering throughout
    statuses, stop = [], threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                r = http.get(f"{url}/v1/stations/shifted/nowcast")
                statuses.append(r.status_code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    answer = httpx.post(f"{url}/v1/admin/reload",
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == champion["model_id"]
    assert answer.json()["previous"]["model_version"] == first["model_id"]
    assert statuses and set(statuses) == {200}
    assert served_version(url) == champion["model_id"]

    # the next hour's nowcast for the shifted station comes from the new model, with its map
    replay_next = ["--start", "2001-11-26", "--hours", "3"]
    run([str(BIN / "starry"), "replay", "greensboro_nc", "--url", url, "--station-id",
         "shifted", *replay_next, "--fault", SHIFT], copy, env)
    nowcast = httpx.get(f"{url}/v1/stations/shifted/nowcast", timeout=10).json()
    assert nowcast["model_version"] == champion["model_id"]
