"""The champion's tracked lineage chain (starry_guide.artifacts.lineage): pure logic, plus its
round trip through champion.json as the select stage writes and reads it."""

from __future__ import annotations

import copy

import numpy as np

from starry_guide.artifacts import lineage
from starry_guide.artifacts.reports import read_json, write_json

FINGERPRINT = {"data": "d" * 16, "params": "p" * 16}


def record(promoted: bool, tried: list[dict] | None = None, source: str = "models/champion",
           champion: str = "persistence_logistic") -> dict:
    """A decision as champion.decision_record writes it (numpy numbers included)."""
    return {
        "promoted": promoted,
        "reason": "persistence_logistic vs calibrated_persistence: promoted — ...",
        "best_candidate": "persistence_logistic",
        "incumbent": "calibrated_persistence",
        "incumbent_model": {"candidate": "calibrated_persistence", "model_id": "aaaa",
                            "source": source, "scores": {"validation": {"brier": 0.17}}},
        "champion": {"candidate": champion, "model_id": "bbbb"},
        "challenger": None, "gate": {}, "ranking": [], "model_ids": {}, "rolled_back": [],
        "tried": tried if tried is not None else [
            {"candidate": "persistence_logistic", "model_id": "bbbb", "passed": promoted,
             "reasons": ["Brier improves"], "brier_difference": np.float64(-0.0049123456789),
             "ci_low": np.float64(-0.00861234567), "ci_high": np.float64(-0.0013),
             "confidence": 0.975, "nights": np.int64(623), "losing_horizons": []}],
    }


def test_params_fingerprint_follows_the_decision_params_only():
    params = {"seed": 1, "train": {"C": 0.1}, "select": {"confidence": 0.95},
              "serve": {"port": 8000}}
    same = copy.deepcopy(params)
    assert lineage.params_fingerprint(params) == lineage.params_fingerprint(same)
    same["serve"]["port"] = 9000  # the service's knobs do not shape a decision
    assert lineage.params_fingerprint(params) == lineage.params_fingerprint(same)
    same["train"]["C"] = 0.01
    assert lineage.params_fingerprint(params) != lineage.params_fingerprint(same)
    assert len(lineage.params_fingerprint(params)) == 16


def test_data_fingerprint_follows_names_and_bytes(tmp_path):
    assert lineage.data_fingerprint(tmp_path / "missing") == ""
    folder = tmp_path / "processed"
    folder.mkdir()
    (folder / "rows.parquet").write_bytes(b"abc")
    first = lineage.data_fingerprint(folder)
    assert first == lineage.data_fingerprint(folder)
    (folder / "rows.parquet").write_bytes(b"abd")
    second = lineage.data_fingerprint(folder)
    assert second != first
    (folder / "rows.parquet").rename(folder / "other.parquet")
    assert lineage.data_fingerprint(folder) not in (first, second)


def test_decision_entries_record_promotions_and_gate_runs_only():
    promoted = lineage.decision_entry(record(True, source="baseline"), FINGERPRINT)
    assert promoted["event"] == "promoted" and promoted["first"] is True
    assert promoted["champion"] == {"candidate": "persistence_logistic", "model_id": "bbbb"}
    assert promoted["incumbent"] == {"candidate": "calibrated_persistence",
                                     "model_id": "aaaa", "source": "baseline"}
    assert promoted["tried"][0]["ci_high"] < 0 and "reasons" not in promoted["tried"][0]
    assert promoted["data"] == "d" * 16 and promoted["params"] == "p" * 16
    kept = lineage.decision_entry(record(False, champion="calibrated_persistence"), FINGERPRINT)
    assert kept["event"] == "kept" and kept["first"] is False
    # no challenger ranked above the champion: the gate did not run, nothing to record
    assert lineage.decision_entry(record(False, tried=[]), FINGERPRINT) is None
    # the baseline crowned as the first champion (nothing passed, nothing tried) is recorded
    crowned = lineage.decision_entry(record(True, tried=[], source="baseline",
                                            champion="calibrated_persistence"), FINGERPRINT)
    assert crowned["event"] == "promoted" and crowned["first"] and crowned["tried"] == []


def test_the_chain_grows_by_new_decisions_and_never_by_repeats(tmp_path):
    entry = lineage.decision_entry(record(True, source="baseline"), FINGERPRINT)
    history = lineage.chain(None, entry)
    assert len(history) == 1
    path = tmp_path / "champion.json"
    write_json(path, {"model_id": "bbbb", "candidate": "persistence_logistic",
                      "history": history})
    card = read_json(path)
    # the same decision again (numpy values, unrounded) equals the entry read back
    again = lineage.decision_entry(record(True, source="baseline"), FINGERPRINT)
    assert lineage.chain(card, again) == card["history"]
    assert lineage.chain(card, None) == card["history"]
    write_json(tmp_path / "again.json", {**card, "history": lineage.chain(card, again)})
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    # the same decision worded differently (a newer release's text) replaces the last entry
    reworded = {**record(True, source="baseline"), "reason": "in other words"}
    rewritten = lineage.chain(card, lineage.decision_entry(reworded, FINGERPRINT))
    assert len(rewritten) == 1 and rewritten[0]["reason"] == "in other words"
    # a different decision (other data) is a new entry; the input is not modified
    other = lineage.decision_entry(record(False), {**FINGERPRINT, "data": "e" * 16})
    grown = lineage.chain(card, other)
    assert [e["event"] for e in grown] == ["promoted", "kept"]
    assert len(card["history"]) == 1
    # a rollback is always a new entry, with who and why
    back = lineage.chain({"model_id": "aaaa", "history": grown}, lineage.rollback_entry(
        {"candidate": "calibrated_persistence", "model_id": "aaaa"},
        {"candidate": "persistence_logistic", "model_id": "bbbb"}, "complaints", "ana"))
    assert back[-1] == {"event": "rollback",
                        "champion": {"candidate": "calibrated_persistence", "model_id": "aaaa"},
                        "incumbent": {"candidate": "persistence_logistic", "model_id": "bbbb"},
                        "reason": "complaints", "by": "ana"}


def test_a_card_from_before_the_history_starts_the_chain_with_itself():
    legacy = {"candidate": "persistence_logistic", "model_id": "bbbb", "rolled_back": []}
    history = lineage.previous_history(legacy)
    assert [e["event"] for e in history] == ["recorded"]
    assert history[0]["champion"] == {"candidate": "persistence_logistic", "model_id": "bbbb"}
    assert lineage.previous_history(None) == [] == lineage.previous_history({})
    assert lineage.previous_history({"model_id": "x", "history": []}) == []


def test_two_rollbacks_with_different_reasons_are_both_recorded():
    def rollback(reason):
        return lineage.rollback_entry({"candidate": "calibrated_persistence", "model_id": "aaaa"},
                                      {"candidate": "persistence_logistic", "model_id": "bbbb"},
                                      reason, "ana")
    history = lineage.extend(lineage.extend([], rollback("complaints")), rollback("again"))
    assert [e["reason"] for e in history] == ["complaints", "again"]
