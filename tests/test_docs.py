"""Generated pages: numbers formatted for people, a gate line that cannot contradict itself,
the verification table, the OpenAPI page."""

from __future__ import annotations

import numpy as np
import pandas as pd

from starry_guide.core import evaluate
from starry_guide.docs import pages as docs


def test_counts_are_integers_and_metrics_have_four_significant_digits():
    assert docs.fmt(20784.0, "rows") == "20\u2009784"
    assert docs.fmt(178.0, "nights") == "178"
    assert docs.fmt(0.183016, "brier") == "0.183"
    assert docs.fmt(0.0249408, "bss") == "0.02494"
    assert docs.fmt(-0.253027) == "-0.253"
    assert docs.fmt(float("nan")) == "—" and docs.fmt(None) == "—"
    assert docs.fmt(True) == "yes"
    table = docs._table(pd.DataFrame({"rows": [20784.0], "brier": [0.1830161]},
                                     index=["test"]))
    assert "20\u2009784" in table and "0.183" in table and "20784.0" not in table


SELECT = {"champion": "calibrated_persistence"}


def test_the_gate_line_says_who_is_champion_and_never_contradicts_itself():
    kept = docs._decision_line(SELECT["champion"], {"promoted": False, "best_candidate": "stack",
                                        "reason": "not significant"})
    assert kept.startswith("**the champion stays: `calibrated_persistence`**")
    promoted = docs._decision_line("stack", {
        "promoted": True, "best_candidate": "stack", "reason": "significant"})
    assert promoted.startswith("**new champion: `stack`**")
    # a fresh clone: no champion yet, the best candidate fails, the baseline is crowned
    first = docs._decision_line(SELECT["champion"], {"promoted": True, "best_candidate": "stack",
                                         "reason": "stack not promoted; the incumbent "
                                                   "becomes the champion"})
    assert first.startswith("**first champion: `calibrated_persistence`**")
    assert "new champion" not in first


def test_when_we_said_70_percent_clear_it_was_clear_this_often():
    horizons = np.array([1] * 4 + [2] * 4)
    p = np.array([0.9, 0.8, 0.2, 0.75, 0.71, 0.1, 0.1, 0.3])
    y = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    table = evaluate.verification_by_horizon(y, p, horizons, said=0.7)
    assert table.loc[1, "said_clear"] == 3 and table.loc[1, "came_true"] == 2 / 3
    assert table.loc[2, "said_clear"] == 1 and table.loc[2, "came_true"] == 1.0
    assert table.loc[1, "clear_rate"] == 0.5 and table.loc[2, "forecasts"] == 4
    assert abs(table.loc[1, "mean_forecast"] - (0.9 + 0.8 + 0.75) / 3) < 1e-12


def test_the_openapi_page_lists_endpoints_parameters_and_schemas():
    schema = {
        "info": {"title": "Starry Guide", "version": "1", "description": "Clear skies?"},
        "paths": {"/v1/night": {"get": {
            "summary": "Tonight", "parameters": [
                {"name": "latitude", "in": "query", "required": True,
                 "schema": {"type": "number", "description": "degrees north"}}],
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Night"}}}}}}}},
        "components": {"schemas": {"Night": {
            "properties": {"windows": {"type": "array", "items": {"type": "string"}}},
            "required": ["windows"]}}},
    }
    page = docs.api_page(schema)
    assert "## `GET /v1/night`" in page
    assert "| `latitude` | query | yes | number | degrees north |" in page
    assert "[Night](#night)" in page and "### Night" in page
    assert "| `windows` | array of string | yes |" in page


def test_the_metrics_page_orders_horizons_and_nights_as_numbers(tmp_path):
    """JSON keys are strings: "10" sorted before "2" and "30" before "7" on the page."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = docs.metrics_page(root, tmp_path)
    headers = [line for line in page.splitlines() if line.startswith("| BSS \\ horizon")]
    assert headers
    for header in headers:
        cells = [cell.strip() for cell in header.split("|")[2:-1]]
        assert cells == [str(h) for h in range(1, 13)], header
    adaptation = page.split("### Adaptation at a new place")[1].split("##")[0]
    nights = [line.split("|")[1].strip() for line in adaptation.splitlines()
              if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert nights == sorted(nights, key=int) and len(nights) >= 2
    assert "e+0" not in adaptation  # scored rows are counts


def test_numeric_index_sorts_json_keys_as_integers():
    frame = pd.DataFrame({"bss": [0.1, 0.2, 0.3]}, index=["10", "2", "1"])
    assert list(docs._numeric_index(frame).index) == [1, 2, 10]


def test_a_challengers_evidence_names_each_test_with_its_own_ci():
    text = docs._ci_text({
        "candidate": "persistence_blend", "brier_difference": -0.00065, "confidence": 0.9917,
        "ci_low": -0.0031, "ci_high": 0.0018, "passed": False,
        "recent": {"brier_difference": 0.0021, "ci_low": -0.0077, "ci_high": 0.0137},
        "transfer": {"brier_difference": -0.00097, "ci_low": -0.0037, "ci_high": 0.0011}})
    assert text.startswith("`persistence_blend` validation ΔBrier -0.00065, 99.2% CI "
                           "-0.00310 … +0.00180; recent window ΔBrier +0.00210, CI -0.00770 … "
                           "+0.01370; new places ΔBrier -0.00097, CI -0.00370 … +0.00110")
    assert text.endswith("— failed")


def test_the_monitoring_page_prints_counts_as_integers():
    import re
    from pathlib import Path

    page = docs.monitoring_page(Path(__file__).resolve().parents[1])
    assert "No production traffic yet" not in page  # the committed snapshot has traffic
    performance = page.split("## Realised performance")[1].split("## Per station")[0]
    assert not re.search(r"\d\.0000\b", performance), performance
    assert "| all stations |" in performance


def test_the_short_horizon_caveat_follows_the_champions_numbers():
    gaining = docs._short_horizon_caveat({"2": 0.02, "1": 0.01, "10": 0.03}, {"1": 0.007})
    assert "gains least there — BSS at 1 h 0.01, at best 0.03 on the held-out months" in gaining
    losing = docs._short_horizon_caveat({"1": -0.01, "2": 0.02}, {"1": 0.01, "2": -0.002})
    assert "no better than calibrated persistence at 1 h (held-out months); 2 h (new places)" \
        in losing


def test_the_night_definition_names_the_right_twilight():
    assert docs._twilight(-12).startswith("nautical twilight is over")
    assert docs._twilight(-18).startswith("astronomical twilight is over")
    assert docs._twilight(-6).startswith("civil twilight is over")


def test_select_metrics_round_trip_keeps_every_split(tmp_path):
    from starry_guide.artifacts import select_metrics

    record = select_metrics.SelectMetrics(
        champion="a", selection_metric="brier",
        scores={"validation": {"brier": 0.1}, "held_out": {"brier": 0.2},
                "unseen": {"brier": 0.3}, "recent": {"brier": 0.4}},
        candidates_held_out={"a": {"brier": 0.2}}, loso_headline="a")
    path = record.write(tmp_path / "select.json")
    assert select_metrics.read(path) == record
    assert set(__import__("json").loads(path.read_text())) >= {"recent", "validation",
                                                               "champion"}
