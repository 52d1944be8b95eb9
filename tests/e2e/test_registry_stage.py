"""The select stage and the registry, for real: `starry stage select` in a copy of the project
against a real MLflow SQLite store. Forced failures — ONNX parity, a registry write, a
registry read — must leave `@champion` and `models/champion/` exactly as they were; the
promotion that then succeeds, the rollback and the history are checked end to end.

The copy (pvlib's three stations) trains small candidates with a deliberately weak baseline
(a huge prior shrinks calibrated persistence to climatology), so that the persistence logistic is
promoted for sure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from starry_guide.docs import pages as docs
from starry_guide.ingest import packaged
from starry_guide.pipeline.refresh import copy_project
from tests.support.project import run, set_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "starry-guide-clear-sky"
pytestmark = pytest.mark.e2e


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def alias_version(db: Path, alias: str = "champion") -> str | None:
    with sqlite3.connect(db) as con:
        row = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND "
                          "alias = ?", (MODEL, alias)).fetchone()
    return None if row is None else str(row[0])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    copy = tmp / "project"
    copy_project(ROOT, copy)
    packaged.ensure(copy)  # a fresh clone has not run the stations stage
    db = tmp / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    set_params(copy, **{"data.stations": ["greensboro_nc", "sand_point_ak", "miami_fl"],
                        "split.unseen_stations": ["sand_point_ak"],
                        "train.candidates": ["calibrated_persistence"],
                        "train.search.budget": 0,
                        "train.calibrated_persistence.prior_strength": 1.0e6,
                        "select.bootstrap_samples": 300})
    for stage in ("prepare", "train"):
        run([str(BIN / "starry"), "stage", stage], copy, env)
    return copy, env, db


def select(copy: Path, env: dict, check: bool = True):
    return run([str(BIN / "starry"), "stage", "select"], copy, env, check=check)


def champion_card(copy: Path) -> dict:
    return json.loads((copy / "models/champion/champion.json").read_text())


def test_alias_moves_only_after_a_verified_export_and_rollback_is_recorded(project,
                                                                           monkeypatch):
    copy, env, db = project
    starry = str(BIN / "starry")

    # 1. first decision: no champion anywhere, so calibrated persistence is crowned
    select(copy, env)
    first = champion_card(copy)
    assert first["candidate"] == "calibrated_persistence"
    assert alias_version(db) == "1"
    assert [(e["event"], e["first"]) for e in first["history"]] == [("promoted", True)]
    decision = json.loads((copy / "reports/select_decision.json").read_text())
    assert decision["incumbent_model"]["source"] == "baseline"

    # 2. a better candidate arrives: the persistence logistic must be promoted over it
    set_params(copy, **{"train.candidates": ["calibrated_persistence",
                                             "persistence_logistic"]})
    run([starry, "stage", "train"], copy, env)
    kept = tree_digest(copy / "models/champion")

    # 2a. ONNX parity fails: the stage fails before the registry is touched
    set_params(copy, **{"select.onnx_parity_tolerance": 0.0})
    failed = select(copy, env, check=False)
    assert failed.returncode != 0
    assert "ONNX parity check failed" in failed.stdout + failed.stderr
    assert "previous outputs were left in place" in failed.stdout + failed.stderr
    assert alias_version(db) == "1"
    assert tree_digest(copy / "models/champion") == kept
    set_params(copy, **{"select.onnx_parity_tolerance": 1.0e-4})

    # 2b. the registry refuses the alias move (a real SQLite failure, from a trigger)
    with sqlite3.connect(db) as con:
        for op in ("INSERT", "UPDATE"):
            con.execute(f"CREATE TRIGGER refuse_{op.lower()} BEFORE {op} ON "
                        "registered_model_aliases BEGIN SELECT RAISE(ABORT, "
                        "'forced registry failure'); END")
    try:
        failed = select(copy, env, check=False)
    finally:
        with sqlite3.connect(db) as con:
            con.execute("DROP TRIGGER refuse_insert")
            con.execute("DROP TRIGGER refuse_update")
    message = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "cannot record the decision in the model registry" in message
    assert alias_version(db) == "1"
    assert tree_digest(copy / "models/champion") == kept

    # 2c. the registry cannot be read: a clear error, never "no champion, use the baseline"
    with sqlite3.connect(db) as con:
        con.execute("ALTER TABLE registered_model_aliases RENAME TO aliases_away")
    try:
        failed = select(copy, env, check=False)
    finally:
        with sqlite3.connect(db) as con:
            con.execute("ALTER TABLE aliases_away RENAME TO registered_model_aliases")
    message = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "cannot read the registered model" in message
    assert alias_version(db) == "1"
    assert tree_digest(copy / "models/champion") == kept

    # 2d. nothing forced: promoted, with its evidence, and the alias moves
    select(copy, env)
    second = champion_card(copy)
    assert second["candidate"] == "persistence_logistic"
    decision = json.loads((copy / "reports/select_decision.json").read_text())
    assert decision["promoted"] and decision["incumbent_model"]["model_id"] == first["model_id"]
    assert decision["tried"][0]["passed"] and decision["tried"][0]["ci_high"] < 0
    promoted_version = alias_version(db)
    assert promoted_version not in (None, "1")
    # the tracked chain: the first champion, then this promotion with its evidence (the
    # failed attempts above left no entry)
    assert second["history"][:-1] == first["history"]
    entry = second["history"][-1]
    assert (entry["event"], entry["champion"]["model_id"], entry["incumbent"]["model_id"]) == (
        "promoted", second["model_id"], first["model_id"])
    assert entry["tried"][0]["ci_high"] < 0 and entry["data"] and entry["params"]

    # 3. roll back, with a reason: the alias and models/champion/ return to version 1
    result = run([starry, "champion", "rollback", "1", "--reason", "complaints from users",
                  "--by", "tester"], copy, env)
    assert "v1" in result.stdout
    assert alias_version(db) == "1"
    back = champion_card(copy)
    assert back["model_id"] == first["model_id"]
    # one writer, one shape: the card keeps the station maps the restored bundle serves
    served = json.loads((copy / "models/champion/bundle/model_card.json").read_text())
    assert set(back) == set(first)
    assert back["station_calibration"] == served.get("station_calibration", {}) \
        == first["station_calibration"]
    assert back["rolled_back"] == [{"model_id": second["model_id"],
                                    "candidate": "persistence_logistic",
                                    "reason": "complaints from users", "by": "tester"}]
    assert back["history"] == [*second["history"], {
        "event": "rollback", "reason": "complaints from users", "by": "tester",
        "champion": {"candidate": "calibrated_persistence", "model_id": first["model_id"]},
        "incumbent": {"candidate": "persistence_logistic", "model_id": second["model_id"]}}]

    # 4. history: the two decisions and the rollback (the failed attempts left no run)
    history = json.loads(run([starry, "champion", "history", "--json"], copy, env).stdout)
    assert [(e["event"], e["candidate"], e["promoted"]) for e in history] == [
        ("decision", "calibrated_persistence", True),
        ("decision", "persistence_logistic", True),
        ("rollback", "calibrated_persistence", True)]
    assert history[1]["incumbent_model_id"] == first["model_id"]
    assert history[1]["ci_high"] < 0
    assert history[2]["reason"] == "complaints from users" and history[2]["by"] == "tester"
    text = run([starry, "champion", "history"], copy, env).stdout
    assert "PROMOTED" in text and "rolled back from" in text

    # 5. the model rolled back from is not tried again; a re-run changes nothing
    select(copy, env)
    decision = json.loads((copy / "reports/select_decision.json").read_text())
    assert not decision["promoted"]
    assert "rolled back from" in decision["reason"]
    assert alias_version(db) == "1"
    outputs = (tree_digest(copy / "models/champion"),
               (copy / "reports/select_decision.json").read_text(),
               (copy / "reports/metrics/select.json").read_text())
    assert champion_card(copy)["history"] == back["history"]  # no gate ran: no entry
    select(copy, env)
    assert (tree_digest(copy / "models/champion"),
            (copy / "reports/select_decision.json").read_text(),
            (copy / "reports/metrics/select.json").read_text()) == outputs

    # 6. the docs: the chain from the tracked file (no dates), and the site build adds this
    # machine's MLflow dates, each event matched to its run
    page = docs.history_page(copy)
    assert "| 3 | — | rollback |" in page and "complaints from users (by tester)" in page
    assert "rolled back to calibrated_persistence from persistence_logistic" in page
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    dates = docs.mlflow_dates(copy, back["history"])
    assert dates == [e["date"] for e in history]  # the first time each was decided
    assert all(d in docs.history_page(copy, dates) for d in dates)
