"""Living documentation: pages generated from the pipeline's outputs, then ``mkdocs build``.

Generated pages and their figures go to ``docs/generated/`` (committed, so the site builds
from a fresh clone); hand-written pages stay in ``docs/``. Both are rebuilt atomically: a
failing build leaves the previous pages and ``site/`` in place.

Pages: the pipeline, the problem definition, the model card of the champion, the champion's
history, monitoring, accuracy you can check, model metrics, data quality, the HTTP API
(pre-rendered from the service's OpenAPI schema) and the executed notebooks. Figures are
drawn with the same plotting functions as the notebooks (:mod:`starry_guide.core.evaluate`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from starry_guide.artifacts import select_metrics
from starry_guide.artifacts.reports import read_json, replace_atomically, write_json
from starry_guide.config import Paths
from starry_guide.pipeline.stage import STAGE_NOTEBOOKS, STAGING_DIR

GENERATED = Path("docs") / "generated"
SITE = Path("site")
#: ``python -m mkdocs``, except that jsonschema (imported by mkdocs-jupyter's nbformat) does
#: not set up its optional "iri" format checker, whose grammars take over a second to compile;
#: nothing in the build checks formats (see starry_guide.pipeline.stage.import_papermill)
MKDOCS_COMMAND = ("import sys; sys.modules['rfc3987_syntax'] = None; "
                  "from mkdocs.__main__ import cli; cli()")
KEY_METRICS = ["brier", "bss", "roc_auc", "accuracy", "precision", "recall", "f1"]
#: columns that count things: shown as integers, never as 20784.0000
COUNT_COLUMNS = {"rows", "nights", "n_boot", "forecasts", "said_clear", "observed_hours",
                 "usable_night_hours", "horizon_h", "horizon (h)", "trials", "version",
                 "scored_rows", "labelled nights"}
#: what a confident forecast is, on the accuracy page
CONFIDENT = 0.7


class DocsError(RuntimeError):
    """The docs could not be generated or built; the message says which input or page."""


def fmt(value, column: str | None = None) -> str:
    """A value for a table: counts as integers, other numbers to 4 significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}".replace(",", "\u2009")
    if isinstance(value, numbers.Real):
        if column in COUNT_COLUMNS and float(value).is_integer():
            return f"{int(value):,}".replace(",", "\u2009")
        return f"{float(value):.4g}"
    return str(value)


def _table(frame: pd.DataFrame) -> str:
    """A Markdown table with :func:`fmt` applied to every cell (and the index)."""
    shown = frame.copy()
    shown.index = [fmt(i, frame.index.name) for i in frame.index]
    shown.index.name = frame.index.name
    for column in frame.columns:
        shown[column] = [fmt(v, str(column)) for v in frame[column]]
    return shown.to_markdown(disable_numparse=True)


def _in_ranking_order(frame: pd.DataFrame, ranking: list[str]) -> pd.DataFrame:
    """``frame``'s rows (candidates) in ``ranking`` order; any others after, as they were."""
    order = [n for n in ranking if n in frame.index]
    return frame.loc[order + [n for n in frame.index if n not in order]]


def _twilight(sun_elevation_deg: float) -> str:
    """What the sky is like once the sun is below ``sun_elevation_deg``."""
    if sun_elevation_deg <= -18:
        return "astronomical twilight is over: fully dark"
    if sun_elevation_deg <= -12:
        return "nautical twilight is over: dark enough for all but the faintest objects"
    if sun_elevation_deg <= -6:
        return "civil twilight is over: the brightest stars are out"
    return "the sun is down, twilight still bright"


def _short_horizon_caveat(held_out: dict | None, new_places: dict | None) -> str:
    """The model card's caveat about short horizons, from the champion's BSS by horizon on
    the held-out months and at new places (leave one station out)."""
    text = ("- **Short horizons are mostly persistence**: at 1–2 h cloud cover now is most of "
            "the answer")
    found = {label: _by_horizon_frame({"bss": values})["bss"]
             for label, values in (("held-out months", held_out), ("new places", new_places))
             if values}
    if not found:
        return text + "."
    where = {"held-out months": "on the held-out months", "new places": "at new places"}
    losing = {label: [int(h) for h, v in bss.items() if v <= 0] for label, bss in found.items()}
    if any(losing.values()):
        return text + "; the champion is no better than calibrated persistence at " + "; ".join(
            f"{', '.join(map(str, hours))} h ({label})" for label, hours in losing.items()
            if hours) + "."
    return text + "; the champion gains least there — BSS at " + "; ".join(
        f"{bss.index[0]} h {fmt(bss.iloc[0])}, at best {fmt(bss.max())} {where[label]}"
        for label, bss in found.items()) + "."


def _numeric_index(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its index (JSON object keys: "1", "10", "2", …) as integers, in order."""
    if frame.empty:
        return frame
    return frame.set_axis(frame.index.astype(int)).sort_index()


def _figure(fig, destination: Path, name: str) -> str:
    """Save a Matplotlib figure under ``destination/figures/docs/`` and return its Markdown
    path relative to the generated pages."""
    import matplotlib.pyplot as plt

    folder = destination / "figures" / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return f"figures/docs/{name}.png"


def _decision_line(selected: str, decision: dict) -> str:
    """One true sentence about the gate: who is champion (``selected``: the champion
    select.json names, unless the decision record says), and why."""
    champion = (decision.get("champion") or {}).get("candidate") or selected
    best = decision.get("best_candidate")
    reason = decision.get("reason", "")
    if not decision.get("promoted"):
        return f"**the champion stays: `{champion}`** — {reason}"
    if best == champion:
        return f"**new champion: `{champion}`**, promoted by the gate — {reason}"
    # no champion existed: the incumbent (the baseline) became the first champion
    return (f"**first champion: `{champion}`** (the incumbent, as no model was champion "
            f"yet); the best-ranked candidate `{best}` did not pass the gate — {reason}")


def pipeline_page(root: Path) -> str:
    """The DAG (``dvc dag --mermaid``) and what each stage reads and writes."""
    dag = subprocess.run([sys.executable, "-m", "dvc", "dag", "--mermaid"], cwd=root,
                         capture_output=True, text=True, check=False)
    if dag.returncode != 0:
        raise DocsError(f"`dvc dag --mermaid` failed: {dag.stderr.strip()}")
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    lines = [
        "# The pipeline",
        "",
        "Generated from `dvc.yaml` by the `docs` stage. Each stage runs one notebook through "
        "Papermill (`starry stage NAME`); `dvc repro` re-runs exactly the stages whose "
        "inputs, code or parameters changed.",
        "",
        "```mermaid",
        dag.stdout.strip(),
        "```",
        "",
    ]
    for name, stage in spec["stages"].items():
        def paths(key: str, stage=stage) -> list[str]:
            return [next(iter(x)) if isinstance(x, dict) else str(x) for x in stage.get(key, [])]

        lines += [f"## `{name}`", ""]
        if name in STAGE_NOTEBOOKS:
            lines += [f"Notebook: [`notebooks/{STAGE_NOTEBOOKS[name]}`]"
                      f"(notebooks/{Path(STAGE_NOTEBOOKS[name]).stem}.ipynb) · "
                      f"command: `{stage['cmd']}`", ""]
        else:
            lines += [f"Command: `{stage['cmd']}`", ""]
        params = [p if isinstance(p, str) else ", ".join(p) for p in stage.get("params", [])]
        lines += [
            "| reads | parameters | writes |",
            "|---|---|---|",
            "| " + "<br>".join(f"`{p}`" for p in paths("deps")) + " | "
            + "<br>".join(f"`{p}`" for p in params) + " | "
            + "<br>".join(f"`{p}`" for p in paths("outs") + paths("metrics") + paths("plots"))
            + " |",
            "",
        ]
    return "\n".join(lines) + "\n"


def _by_horizon_frame(data: dict) -> pd.DataFrame:
    """{name: {horizon: value}} -> a horizon x name frame, horizons as sorted integers."""
    return _numeric_index(pd.DataFrame(data)).rename_axis("horizon_h")


def _loso_by_station(per: dict) -> dict:
    """BSS per held-out station, from either layout of ``leave_one_station_out``."""
    if "bss_by_station" in per:
        return dict(per["bss_by_station"])
    return {station: m["bss"] for station, m in per.items() if isinstance(m, dict)}


def profile_lines(by_profile: dict, decision: dict) -> list[str]:
    """The metrics page's input-profile section: the champion's recipe left one station out
    under each profile against calibrated persistence on that profile's fields (pooled and
    per station), and the gate's profile tests."""
    if not by_profile:
        return []
    candidate = next(iter(by_profile.values())).get("candidate", "the champion")
    per_station = pd.DataFrame({name: {**t["bss_by_station"], "pooled": t["bss"]}
                                for name, t in by_profile.items()})
    pooled = pd.DataFrame({name: {"Brier (champion's recipe)": t["brier"],
                                  "Brier (calibrated persistence)": t["brier_baseline"],
                                  "BSS": t["bss"], "worst station BSS": t["worst_station_bss"],
                                  "rows": t["rows"]}
                           for name, t in by_profile.items()}).T
    lines = ["## Input profiles (leave one station out, BSS vs calibrated persistence)", "",
             f"`{candidate}`'s recipe refit leaving each station out and scored on that "
             "station's rows as each profile carries them; calibrated persistence refit on "
             "the other stations' rows of the same profile (see "
             "[forecast skill](../forecast-skill.md#input-profiles)).", "",
             _table(per_station.rename_axis("held-out station \\ profile")), "",
             _table(pooled.rename_axis("profile")), ""]
    tests = decision.get("profile_test") or {}
    if tests:
        table = pd.DataFrame({name: {
            "rows": t["rows"], "nights": t["nights"],
            "incumbent BSS vs calibrated persistence":
                t["incumbent_bss_vs_calibrated_persistence"]} for name, t in tests.items()}).T
        tried = {entry["candidate"]: {
            name: entry[f"profile_{name}"].get("bss_vs_calibrated_persistence")
            for name in tests if f"profile_{name}" in entry}
            for entry in decision.get("tried") or []}
        lines += ["### The gate's profile tests (validation months)", "",
                  "Each challenger tried, under each profile: significantly worse than the "
                  "incumbent, or below calibrated persistence by more than "
                  "`select.horizon_tolerance_bss`, and it is not promoted.", "",
                  _table(table.rename_axis("profile")), ""]
        tried = {name: per for name, per in tried.items() if per}
        if tried:
            lines += [_table(pd.DataFrame(tried).rename_axis(
                "challenger BSS vs calibrated persistence \\ challenger")), ""]
    return lines


def metrics_page(root: Path, destination: Path) -> str:
    """The champion, every candidate's scores, leave-one-station-out, with figures."""
    paths = Paths(root)
    from starry_guide.core import evaluate

    metrics = paths.metrics_dir
    select = select_metrics.read(metrics / "select.json")
    train = read_json(metrics / "train.json")
    data = read_json(metrics / "data.json")
    decision = read_json(paths.reports_dir / "select_decision.json")
    gate = decision.get("gate") or {}
    held = "held_out"
    held_out = pd.DataFrame({split: select.scores[split] for split in ("validation", held, "unseen")
                             if split in select.scores}).T
    ranking = decision.get("ranking") or []
    candidates = _in_ranking_order(
        pd.DataFrame({n: v["validation"] for n, v in train.items()}).T, ranking)
    candidates_held_out = _in_ranking_order(
        pd.DataFrame(select.candidates_held_out).T, ranking)
    model_ids = decision.get("model_ids") or {}
    champion_id = (decision.get("champion") or {}).get("model_id")
    retrained = [n for n, i in model_ids.items()
                 if n == select.champion and champion_id and i != champion_id]
    loso_raw = select.leave_one_station_out
    loso = pd.DataFrame({name: {**_loso_by_station(per),
                                **({"pooled": per["pooled"]["bss"]} if "pooled" in per else {}),
                                **({"pooled, held-out months only":
                                    per["pooled_held_out_months"]["bss"]}
                                   if "pooled_held_out_months" in per else {})}
                         for name, per in loso_raw.items()})
    loso_horizon = _by_horizon_frame({name: per["bss_by_horizon"]
                                      for name, per in loso_raw.items()
                                      if "bss_by_horizon" in per})
    adaptation = _numeric_index(pd.DataFrame(select.adaptation).T).rename_axis(
        "labelled nights")
    gate_lines = [f"- decision: {_decision_line(select.champion, decision)}"]
    incumbent = decision.get("incumbent_model")
    if incumbent:
        gate_lines.append(f"- judged against: `{incumbent['candidate']}` (model "
                          f"`{incumbent['model_id']}`, from {incumbent['source']})")
    if gate:
        level = gate.get("confidence", 0.95)
        gate_lines.append(f"- Brier difference (best challenger − incumbent) "
                          f"{gate['brier_difference']:+.3g}, {level:.1%} CI "
                          f"{gate['ci_low']:+.3g} … {gate['ci_high']:+.3g} "
                          f"({int(gate['nights'])} nights, {int(gate['n_boot'])} resamples)")
    lines = [
        "# Model metrics",
        "",
        "Generated from `reports/metrics/*.json` and `reports/plots/*.csv` by the `docs` "
        "stage. BSS is the Brier skill score against calibrated persistence (above 0 beats "
        "the baseline). *held-out months* of the training stations were never used for a "
        "choice; *unseen* = a station never used in training.",
        "",
        f"## Champion: `{select.champion}`",
        "",
        f"Candidates are ranked by pooled validation {select.selection_metric}; the "
        "champion is whoever [the gate](../forecast-skill.md#the-gate) says — see below and "
        "the [model card](model-card.md).",
        "",
        _table(held_out[[c for c in ["rows", "clear_rate", *KEY_METRICS] if c in held_out]]),
        "",
        "## The champion gate",
        "",
        *gate_lines,
        "",
        "## Candidates on the validation months",
        "",
        "Today's models, best first (the gate's ranking)"
        + (f"; `{retrained[0]}` here is its recipe retrained by this run (model "
           f"`{model_ids[retrained[0]]}`), not the champion above (model `{champion_id}`)"
           if retrained else "") + ".",
        "",
        _table(candidates[[c for c in [*KEY_METRICS, "log_loss", "ece", "threshold"]
                           if c in candidates]]),
        "",
    ]
    plots = paths.plots_dir
    if (plots / "validation_by_horizon.csv").exists():
        long = pd.read_csv(plots / "validation_by_horizon.csv")
        wide = long.pivot(index="horizon_h", columns="candidate", values="bss")
        fig = evaluate.plot_by_horizon(wide.drop(columns=["persistence"], errors="ignore"),
                                       "BSS vs calibrated persistence",
                                       "Validation skill by horizon", zero_line=True)
        lines += ["### Skill by horizon (validation)", "",
                  f"![Validation BSS by horizon, one line per candidate]"
                  f"({_figure(fig, destination, 'validation_bss_by_horizon')})", "",
                  "*persistence* (hard 0/1 forecasts, far below 0) is left out of the figure "
                  "so the others can be told apart; it is in the table.", "",
                  _table(wide.T.rename_axis("BSS \\ horizon (h)")), ""]
    if (plots / "reliability.csv").exists():
        curves = {name: table for name, table in
                  pd.read_csv(plots / "reliability.csv").groupby("candidate")}
        fig = evaluate.plot_reliability(curves, "Reliability (validation)")
        lines += ["### Reliability (validation)", "",
                  f"![Reliability of every candidate]"
                  f"({_figure(fig, destination, 'validation_reliability')})", ""]
    if not loso.empty:
        by_station = loso.drop(index=[i for i in loso.index if str(i).startswith("pooled")])
        fig = evaluate.plot_grouped_bars(by_station.rename_axis("held-out station"),
                                         "BSS vs calibrated persistence",
                                         "Leave one station out")
        lines += ["## Leave one station out — the headline (BSS vs calibrated persistence)",
                  "", "Each station scored by the recipe refit on the other stations (see "
                  "[forecast skill and the gate](../forecast-skill.md)): the learned "
                  "champion's, and the best-ranked learned challenger's beside it when "
                  "`params.yaml` sets `select.loso_challenger`.", "",
                  f"![BSS per held-out station]({_figure(fig, destination, 'loso_bss')})", "",
                  _table(loso.rename_axis("held-out station")), ""]
        if not loso_horizon.empty:
            lines += [_table(loso_horizon.T.rename_axis("BSS \\ horizon (h)")), ""]
        if (paths.figures_dir / "select" / "loso_station_horizon.png").exists():
            lines += ["![LOSO BSS by station and horizon]"
                      "(figures/select/loso_station_horizon.png)", ""]
    if not adaptation.empty:
        lines += ["### Adaptation at a new place (BSS after n labelled nights)", "",
                  _table(adaptation), ""]
    lines += profile_lines(select.loso_by_profile, decision)
    lines += ["## Candidates on the held-out months", "",
              _table(candidates_held_out) if not candidates_held_out.empty else "", ""]
    if select.held_out_bss_by_horizon:
        by_horizon = _by_horizon_frame(select.held_out_bss_by_horizon)
        fig = evaluate.plot_by_horizon(by_horizon, "BSS vs calibrated persistence",
                                       "Skill by horizon, held-out months", zero_line=True)
        lines += ["### Brier skill by horizon (held-out months)", "",
                  f"![BSS by horizon on the held-out months]"
                  f"({_figure(fig, destination, 'held_out_bss_by_horizon')})",
                  "", _table(by_horizon.T.rename_axis("BSS \\ horizon (h)")), ""]
    if select.by_label_origin:
        origin = pd.DataFrame.from_records(
            [{"split": split, "label origin": name, **values}
             for split, table in select.by_label_origin.items()
             for name, values in table.items()]).set_index(["split", "label origin"])
        origin.index = [f"{split}, {name}" for split, name in origin.index]
        origin = origin.rename(columns={"brier_reference": "brier, calibrated persistence"})
        lines += ["## Observed and filled labels", "",
                  "The champion against calibrated persistence on label hours the files report "
                  "as *observed* (TMY source flag `A`), hours their producers *filled* "
                  "(interpolated or estimated, flags `B`/`E`) and hours of files without "
                  "per-hour flags (*unknown*: the EPW files). Counts per station are on the "
                  "[data-quality page](data-quality.md); why filled hours are still trained "
                  "on: [forecast skill](../forecast-skill.md#observed-and-filled-labels).", "",
                  _table(origin.rename_axis("split, label origin")), ""]
        loso_origin = {name: per["bss_by_label_origin"] for name, per in loso_raw.items()
                       if "bss_by_label_origin" in per}
        if loso_origin:
            lines += ["Leave one station out (BSS vs calibrated persistence) by label origin:",
                      "", _table(pd.DataFrame(loso_origin).T.rename_axis("recipe")), ""]
    lines += [
        "## Data",
        "",
        f"{fmt(data['stations'])} stations, {fmt(data['observed_hours'])} observed hours.",
        "",
        _table(pd.DataFrame({"rows": data["rows"], "clear rate": data["clear_rate"]})),
        "",
    ]
    return "\n".join(lines) + "\n"


def _settings(root: Path):
    from starry_guide.config import load_settings

    return load_settings(root)


def problem_page(root: Path) -> str:
    """Who it is for, what "clear" means and why, horizons, success, data and limits."""
    paths = Paths(root)
    settings = _settings(root)
    data = read_json(paths.metrics_dir / "data.json")
    quality = read_json(paths.reports_dir / "data_quality.json")
    label, split = settings.label, settings.split
    horizons = list(label.horizons)
    stations = pd.DataFrame({sid: {"format": r["kind"].upper(), "rows": r["rows"],
                                   "usable_night_hours": r["usable_night_hours"],
                                   "clear-sky rate": r["clear_sky_rate"],
                                   "verdict": r["verdict"]} for sid, r in quality.items()
                             if not sid.startswith("production/")}).T
    stations = stations.rename_axis("station")
    unseen = ", ".join(f"`{s}`" for s in split.unseen_stations) or "none"
    return "\n".join([
        "# The problem",
        "",
        "Generated from `params.yaml`, `reports/metrics/data.json` and "
        "`reports/data_quality.json` by the `docs` stage: the numbers below are this "
        "repository's.",
        "",
        "## Who it is for",
        "",
        "- **People who look up**: amateur astronomers, astrophotographers, anyone planning a "
        "night outside — *is it worth setting up tonight, and when?* They see P(clear) for "
        "each of the next hours and tonight's best windows (the [API](api.md) and the app).",
        "- **Analysts** who improve the model in the notebooks, and **operators** who keep the "
        "service and its champion honest ([runbook](../runbook.md), "
        "[monitoring](monitoring.md)).",
        "",
        "## What \"clear\" means, and why",
        "",
        f"A target hour is **clear** when the observed *opaque* sky cover is at most "
        f"**{label.clear_max_opaque_tenths:g} tenths**, and it counts only at **night**: the sun "
        f"more than {abs(label.night_max_sun_elevation_deg):g}° below the horizon "
        f"({_twilight(label.night_max_sun_elevation_deg)}). Opaque cover is what hides "
        "stars — thin cirrus counts in *total* cover but not in opaque cover. Two tenths or "
        "less is the sky an observer calls clear; daytime hours are not the question.",
        "",
        "## What is forecast",
        "",
        f"P(clear at *t + h*) for **h = {horizons[0]} … {horizons[-1]} hours** after an hourly "
        "observation at *t*, from that observation and the hours before it (cloud cover, its "
        "lags and trends, pressure, humidity, wind, the sun's position at *t* and *t + h*). "
        "A probability, not a yes/no: the user decides how sure is sure enough.",
        "",
        "## What success means",
        "",
        "- **Better than the honest baseline**: calibrated persistence (P(clear at *t + h* | "
        "opaque cover at *t*, *h*), counted on the training months). Measured by the Brier "
        "skill score (BSS > 0 beats it), pooled and at every horizon, on months and a station "
        "that no choice ever saw — above all on stations left out of training (leave one "
        "station out). The goals and where the models stand: [forecast skill and the "
        "gate](../forecast-skill.md).",
        "- **Calibrated**: when it says 70 %, it is clear about 70 % of the time "
        "([accuracy you can check](accuracy.md)).",
        "- **Replaced only through the gate**: a challenger becomes champion only with a "
        "significant improvement ([forecast skill and the gate](../forecast-skill.md)).",
        "",
        "## The data, and its limits",
        "",
        f"{fmt(data['stations'])} stations, {fmt(data['observed_hours'])} observed hours; "
        f"validation months {list(split.validation_months)}, held-out months "
        f"{list(split.held_out_months)}, unseen station(s) {unseen}.",
        "",
        _table(stations),
        "",
        "- Typical-year files (TMY) splice months of different years: no feature or label "
        "reaches across a month boundary, and months — not hours — are held out.",
        "- A handful of stations and one (typical) year each: the sky at a new place is "
        "learned from very few climates. See [data quality](data-quality.md) for what was "
        "repaired or dropped, and [add your own station](../add-your-station.md).",
        "- Hourly observations: nothing about the next 10 minutes, and no satellite view of "
        "clouds coming from upwind.",
        "",
    ]) + "\n"


def _bundle_card(root: Path) -> dict:
    paths = Paths(root)
    path = paths.champion_dir / "bundle" / "model_card.json"
    return read_json(path) if path.exists() else {}


def model_card_page(root: Path, destination: Path) -> str:
    """The champion's model card, after Mitchell et al. (2019), "Model Cards for Model
    Reporting": details, intended use, factors, metrics, data, caveats, lineage."""
    paths = Paths(root)
    settings = _settings(root)
    select = select_metrics.read(paths.metrics_dir / "select.json")
    decision = read_json(paths.reports_dir / "select_decision.json")
    card = _bundle_card(root)
    champion_json = paths.champion_dir / "champion.json"
    champion = read_json(champion_json) if champion_json.exists() else {}
    lineage = card.get("lineage", {})
    held = "held_out"
    held_out = pd.DataFrame({split: select.scores[split] for split in ("validation", held, "unseen")
                             if split in select.scores}).T
    name = select.champion
    lines = [
        f"# Model card: `{name}`",
        "",
        "The current champion (registry alias `@champion`), described after Mitchell et al., "
        "[*Model Cards for Model Reporting*](https://arxiv.org/abs/1810.03993) (FAT* 2019). "
        "Generated by the `docs` stage from the select stage's outputs and the champion's "
        "ONNX bundle (`models/champion/bundle/model_card.json`).",
        "",
        "## Model details",
        "",
        "| | |",
        "|---|---|",
        f"| candidate | `{name}` |",
        f"| registered model | `{card.get('model_name', settings.select.model_name)}` "
        f"(alias `@champion`) |",
        *([f"| model id | `{champion['model_id']}` |"] if champion.get("model_id") else []),
        f"| decision | {_decision_line(select.champion, decision)} |",
        f"| served as | ONNX bundle (`models/champion/bundle/`), onnxruntime; parity with "
        f"scikit-learn max \\|Δ\\| {fmt(select.onnx_parity_max_abs)} |",
        f"| output | P(clear at t + h), h = {settings.label.horizons[0]} … "
        f"{settings.label.horizons[-1]} h |",
        "",
        "## Intended use",
        "",
        "- **For**: deciding whether, and when, to observe the night sky in the next hours at a "
        "place with hourly surface observations like the training stations'.",
        "- **Out of scope**: aviation or safety decisions; daytime cloud; places or climates "
        "far from the training stations without checking the unseen-station numbers below; "
        "horizons beyond 12 h; inputs without opaque cloud cover.",
        "",
        "## Factors",
        "",
        "Performance is reported by **horizon** (skill decays with lead time) and by "
        "**station** (climate regime); a station held out of training stands in for a new "
        "place.",
        "",
        "## Metrics",
        "",
        "Brier score and BSS against calibrated persistence (the decision metrics), ROC AUC, "
        "expected calibration error (ECE), and accuracy / precision / recall / F1 at the "
        "threshold chosen on validation.",
        "",
        _table(held_out[[c for c in ["rows", "clear_rate", "brier", "bss", "roc_auc", "ece",
                                     "accuracy", "f1"] if c in held_out]]),
        "",
    ]
    by_horizon = select.held_out_bss_by_horizon
    if name in by_horizon:
        frame = _by_horizon_frame({name: by_horizon[name]})
        lines += ["### By horizon (held-out months)", "",
                  _table(frame.T.rename_axis("BSS \\\\ horizon (h)")), ""]
    loso = select.leave_one_station_out.get(name)
    if loso:
        per_station = pd.Series(_loso_by_station(loso)).to_frame("bss").rename_axis(
            "held-out station")
        lines += ["### By station (leave one station out, BSS)", "", _table(per_station), ""]
    lines += [
        "### Calibration",
        "",
        "The reliability diagram and the \"when we said ≥ 70 %\" table are on "
        "[accuracy you can check](accuracy.md).",
        "",
        "## Training and evaluation data",
        "",
        "Training stations "
        + ", ".join(f"`{s}`" for s in settings.data.stations
                    if s not in settings.split.unseen_stations)
        + f", on every month except validation {list(settings.split.validation_months)} and "
        f"held-out {list(settings.split.held_out_months)}; unseen station(s), never trained "
        f"on: {', '.join(f'`{s}`' for s in settings.split.unseen_stations) or 'none'}. "
        "See [the problem](problem.md) and [data quality](data-quality.md).",
        "",
        "## Station adaptation",
        "",
        *_adaptation_lines(card.get("station_calibration") or {}),
        "",
        "## Caveats and known failure modes",
        "",
        "- **Few climates**: a handful of typical-year stations; skill on a held-out station "
        "can be below the baseline (table above).",
        _short_horizon_caveat(by_horizon.get(name), (loso or {}).get("bss_by_horizon")),
        "- **Fronts and fast changes**: nothing upwind is observed, so cloud arriving within "
        "the hour is missed.",
        "- **Missing or stuck sensors**: missing cover falls back to the station climatology "
        "in the bundle; a stuck sensor looks like persistent weather — watch "
        "[monitoring](monitoring.md).",
        "",
        "## Lineage",
        "",
        "| | |",
        "|---|---|",
    ]
    for key, label in (("git_commit", "git commit"),
                       ("data_processed_md5", "data (`data/processed`, md5 from dvc.lock)"),
                       ("seed", "seed")):
        if lineage.get(key):
            lines.append(f"| {label} | `{lineage[key]}` |")
    with contextlib.suppress(ImportError):
        import mlflow

        lines.append(f"| MLflow | {card['mlflow_version']} |" if card.get("mlflow_version")
                     else f"| MLflow (this environment; the bundle does not record it) | "
                          f"{mlflow.__version__} |")
    if card.get("sha256"):
        lines.append("| bundle files (SHA-256) | " + "<br>".join(
            f"`{f}` {h[:12]}…" for f, h in sorted(card["sha256"].items())) + " |")
    params = lineage.get("params")
    if params:
        lines += ["", "Parameters (`params.yaml` when it was trained):", "",
                  "```yaml", yaml.safe_dump(params, sort_keys=True).strip(), "```"]
    return "\n".join(lines) + "\n"


def _adaptation_lines(maps: dict) -> list[str]:
    """The model card's station-adaptation section: one recalibration per production station."""
    text = ("Per production station with enough labelled nights of its own, a recalibration "
            "`P = sigmoid(a + b·logit(p))` learned from them (shrunk toward no change) and "
            "applied by the service to that station's nowcasts "
            "([retraining on production data]"
            "(../registry.md#retraining-on-production-data-judged-on-what-matters-now)).")
    if not maps:
        return [text, "", "This champion has none (no production station had enough nights "
                          "when it was chosen)."]
    return [text, "", "| station | a | b | labelled nights | rows |", "|---|---|---|---|---|",
            *(f"| `{sid}` | {m['a']:+.3f} | {m['b']:.3f} | {m['nights']} | {m['rows']} |"
              for sid, m in sorted(maps.items()))]


def _history(root: Path) -> list[dict]:
    """The champion's tracked lineage chain (``history`` of ``models/champion/champion.json``,
    :mod:`starry_guide.artifacts.lineage`): the same in every clone, oldest first."""
    paths = Paths(root)
    from starry_guide.artifacts import lineage

    path = paths.champion_dir / "champion.json"
    return lineage.previous_history(read_json(path) if path.is_file() else None)


def mlflow_dates(root: Path, entries: list[dict]) -> list[str | None]:
    """The date of each tracked history entry, from this machine's MLflow store
    (:func:`starry_guide.pipeline.registry.history`), or None where the store does not hold it (a
    fresh clone's store is empty; MLflow is never created or changed here).

    A tracked entry is matched, in order, with the first later MLflow event of the same kind
    (decision or rollback), champion and incumbent — the first time that decision was made
    (a decision made again is one entry in the chain, one run per time in MLflow)."""
    if not entries:
        return []
    try:
        import mlflow

        from starry_guide.config import load_settings
        from starry_guide.pipeline import registry, tracking

        settings = load_settings(root)
        uri = tracking.tracking_uri(settings)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            return [None] * len(entries)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        events = registry.history(settings)
    except Exception:  # noqa: BLE001 - no store, or an unreadable one: no dates, same page
        return [None] * len(entries)
    dates, start = [], 0
    for entry in entries:
        kind = "rollback" if entry.get("event") == "rollback" else "decision"
        key = (kind, (entry.get("champion") or {}).get("model_id"),
               (entry.get("incumbent") or {}).get("model_id"))
        found = next((i for i in range(start, len(events))
                      if (events[i].get("event"), events[i].get("model_id"),
                          events[i].get("incumbent_model_id")) == key), None)
        if found is None:
            dates.append(None)
        else:
            dates.append(events[found]["date"])
            start = found + 1
    return dates


def _ci_text(tried: dict) -> str:
    """One challenger's evidence: its Brier difference and CI on each held-out test."""
    level = tried.get("confidence")
    confidence = (f"{level:.1%}".replace(".0%", "%") if isinstance(level, numbers.Real)
                  else "?")
    ci = ("—" if tried.get("ci_low") is None or tried.get("ci_high") is None
          else f"{_signed(tried['ci_low'])} … {_signed(tried['ci_high'])}")
    verdict = "passed" if tried.get("passed") else "failed"
    now = ""
    for key, test in (("recent", "recent window"), ("transfer", "new places")):
        extra = tried.get(key) or {}
        if extra.get("ci_low") is not None and extra.get("ci_high") is not None:
            now += (f"; {test} ΔBrier {_signed(extra.get('brier_difference'))}, CI "
                    f"{_signed(extra['ci_low'])} … {_signed(extra['ci_high'])}")
    return (f"`{tried.get('candidate')}` validation ΔBrier "
            f"{_signed(tried.get('brier_difference'))}, {confidence} CI {ci}{now} — {verdict}")


def _signed(value) -> str:
    """A Brier difference: signed, five decimals (they are small and compared by sign)."""
    return "—" if value is None else f"{float(value):+.5f}"


def history_page(root: Path, dates: list[str | None] | None = None) -> str:
    """Champion history: the tracked lineage chain as a table and a timeline.

    ``dates`` (one per entry, from :func:`mlflow_dates`) are added by the site build
    (:mod:`starry_guide.docs.hooks`): the committed page has none, so it is the same on every
    machine."""
    paths = Paths(root)
    entries = _history(root)
    dates = dates or [None] * len(entries)
    card_path = paths.champion_dir / "champion.json"
    card = read_json(card_path) if card_path.is_file() else {}
    lines = ["# Champion history", "",
             "Every promotion, every decision in which the gate judged a challenger, and every "
             "rollback, oldest first: the lineage chain that `models/champion/champion.json` "
             "carries (committed with the champion, so every clone has it; extended by each "
             "`select` run and by `starry champion rollback`). Models are named by candidate "
             "and content id; *data* and *params* are fingerprints of `data/processed/` and of "
             "the parameters that shaped the decision.", ""]
    if card:
        lines += [f"The champion now: **`{card.get('candidate')}`** (model "
                  f"`{card.get('model_id')}`) — its [model card](model-card.md).", ""]
    if any(dates):
        lines += ["Dates are this machine's, from its MLflow store (`.venv/bin/starry champion "
                  "history` lists every run, with registry versions and MLflow run ids); a "
                  "decision made again (same inputs) is one entry, dated when first made.", ""]
    else:
        lines += ["No dates: they live in the MLflow store of the machine that made each "
                  "decision (`.venv/bin/starry champion history` there); `make docs-serve` "
                  "shows them when this machine's store holds the decision.", ""]
    decision_path = paths.reports_dir / "select_decision.json"
    if decision_path.is_file():
        last = read_json(decision_path)
        if not last.get("promoted") and not last.get("tried"):
            lines += ["The last `select` run judged no challenger (so it added no entry): "
                      f"*{last.get('reason', '')}*.", ""]
    if not entries:
        lines += ["No champion yet: run `dvc repro`.", ""]
        return "\n".join(lines) + "\n"
    lines += ["| # | date | event | champion after | incumbent (judged against) | challengers "
              "judged by the gate | reason | data · params |",
              "|---|---|---|---|---|---|---|---|"]

    def model(m: dict | None) -> str:
        m = m or {}
        return f"`{m.get('candidate') or '—'}` ({m.get('model_id') or '—'})" if m else "—"

    def clean(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    for number, (e, date) in enumerate(zip(entries, dates, strict=True), start=1):
        event = e.get("event", "")
        if event == "promoted" and e.get("first"):
            event = "promoted (first champion)"
        reason = e.get("reason", "")
        if e.get("by"):
            reason = f"{reason} (by {e['by']})"
        tried = "<br>".join(_ci_text(t) for t in e.get("tried", [])) or "—"
        prints = " · ".join(f"`{e[k]}`" for k in ("data", "params") if e.get(k)) or "—"
        lines.append(f"| {number} | {date or '—'} | {event} | {model(e.get('champion'))} | "
                     f"{model(e.get('incumbent'))} | {tried} | {clean(reason)} | {prints} |")
    lines += ["", "## Timeline", "", "```mermaid", "timeline", "    title @champion over time"]
    for number, (e, date) in enumerate(zip(entries, dates, strict=True), start=1):
        after = (e.get("champion") or {}).get("candidate", "")
        before = (e.get("incumbent") or {}).get("candidate", "")
        text = {"promoted": f"{after} promoted over {before}",
                "kept": f"{after} kept (challenger failed the gate)",
                "rollback": f"rolled back to {after} from {before}",
                "recorded": f"{after} champion (history starts)"}.get(
                    e.get("event"), f"{e.get('event')} {after}")
        period = f"{number} · {date}" if date else f"decision {number}"
        lines.append(f"    {period.replace(':', 'h', 1).replace(':', 'm', 1)} : {text}")
    lines += ["```", ""]
    return "\n".join(lines) + "\n"


def accuracy_page(root: Path, destination: Path) -> str:
    """Verification anyone can check: the champion's reliability on the held-out months and
    "when we said ≥ 70 % clear, it was clear X % of the time", by horizon."""
    paths = Paths(root)
    from starry_guide.artifacts.bundle import load_bundle
    from starry_guide.core import evaluate

    bundle = load_bundle(paths.champion_dir / "bundle")
    rows = pd.read_parquet(paths.processed_dir / "rows.parquet")
    name = select_metrics.read(paths.metrics_dir / "select.json").champion
    lines = ["# Accuracy you can check", "",
             f"The champion (`{name}`, from its ONNX bundle — what the service serves) on rows "
             "no choice ever saw, recomputed by the `docs` stage from "
             "`data/processed/rows.parquet`. Like a weather service publishing its own "
             "verification: if these numbers are wrong, the forecasts are too.", ""]
    for split, label in (("held_out", "held-out months"), ("test", "held-out months"),
                         ("unseen", "unseen station")):
        part = rows[rows["split"] == split].reset_index(drop=True)
        if part.empty:
            continue
        p = bundle.predict(part)
        y = part["clear"].to_numpy()
        table = evaluate.verification_by_horizon(y, p, part["horizon_h"].to_numpy(), CONFIDENT)
        overall = evaluate.verification_by_horizon(y, p, [0] * len(y), CONFIDENT).iloc[0]
        said = int(overall["said_clear"])
        sentence = (f"When we said **≥ {CONFIDENT:.0%} clear** on the {label}, it was clear "
                    f"**{overall['came_true']:.0%}** of the time ({fmt(said)} forecasts; "
                    f"clear {overall['clear_rate']:.0%} of all hours)." if said else
                    f"On the {label} the champion never said ≥ {CONFIDENT:.0%} clear.")
        shown = table.rename(columns={
            "forecasts": "forecasts", "said_clear": f"said ≥ {CONFIDENT:.0%}",
            "came_true": "came true", "mean_forecast": "mean forecast then",
            "clear_rate": "clear rate (all)"}).rename_axis("horizon (h)")
        curve = evaluate.reliability(y, p)
        fig = evaluate.plot_reliability({name: curve}, f"Reliability — {label}")
        lines += [f"## {label[0].upper() + label[1:]}", "", sentence, "",
                  _table(shown), "",
                  f"![Reliability diagram, {label}]"
                  f"({_figure(fig, destination, f'reliability_{split}')})", "",
                  "On the diagonal = calibrated: forecasts of 30 % come true 30 % of the time.",
                  "", _table(curve.rename_axis("bin")), ""]
    return "\n".join(lines) + "\n"


def openapi_schema(root: Path) -> dict:
    """The service's OpenAPI schema, from the app built around the champion's bundle (as
    ``starry serve`` builds it, with the default limits), with a throw-away serving store."""
    paths = Paths(root)
    from starry_guide.artifacts.bundle import load_bundle
    from starry_guide.serve.app import create_app
    from starry_guide.serve.service import Service
    from starry_guide.serve.store.database import Store

    with tempfile.TemporaryDirectory(prefix="starry-openapi-") as tmp:
        service = Service(load_bundle(paths.champion_dir / "bundle"),
                          Store(f"sqlite:///{Path(tmp) / 'store.sqlite'}"))
        try:
            return create_app(service).openapi()
        finally:
            service.close()


def _schema_type(schema: dict) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_schema_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    kind = schema.get("type", "object")
    if "enum" in schema:
        kind += " (" + ", ".join(f"`{v}`" for v in schema["enum"]) + ")"
    return kind


def _cell(text) -> str:
    return str(text or "").replace("|", "\\\\|").replace("\n", " ")


def api_page(schema: dict) -> str:
    """The OpenAPI schema as a page: endpoints, parameters, bodies, responses, schemas."""
    info = schema.get("info", {})
    lines = [f"# HTTP API: {info.get('title', '')} {info.get('version', '')}", "",
             "Rendered by the `docs` stage from the service's OpenAPI schema "
             "([openapi.json](openapi.json)); a running service shows the same in Swagger UI "
             "at `/docs` (served by the service itself, offline).", "",
             _cell(info.get("description")), ""]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", _cell(op.get("summary")), "",
                      str(op.get("description") or "").strip(), ""]
            params = op.get("parameters") or []
            if params:
                lines += ["| parameter | in | required | type | description |",
                          "|---|---|---|---|---|"]
                lines += [f"| `{p['name']}` | {p.get('in')} | "
                          f"{fmt(bool(p.get('required')))} | "
                          f"{_schema_type(p.get('schema', {}))} | "
                          f"{_cell(p.get('description') or p['schema'].get('description'))} |"
                          for p in params]
                lines.append("")
            body = (op.get("requestBody") or {}).get("content", {})
            for media, content in body.items():
                lines += [f"Request body ({media}): {_schema_type(content.get('schema', {}))}",
                          ""]
            responses = op.get("responses") or {}
            if responses:
                lines += ["| response | description | body |", "|---|---|---|"]
                for code, response in sorted(responses.items()):
                    content = response.get("content") or {}
                    shown = ", ".join(f"{_schema_type(c.get('schema', {}))} ({media})"
                                      if len(content) > 1 else
                                      _schema_type(c.get("schema", {}))
                                      for media, c in content.items()) or "—"
                    shown += "".join(f"; header `{h}`" for h in response.get("headers", {}))
                    lines.append(f"| {code} | {_cell(response.get('description'))} | "
                                 f"{shown} |")
                lines.append("")
    schemas = schema.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
    for name, spec in sorted(schemas.items()):
        lines += [f"### {name}", "", _cell(spec.get("description")), ""]
        props = spec.get("properties") or {}
        required = set(spec.get("required") or [])
        if props:
            lines += ["| field | type | required | description |", "|---|---|---|---|"]
            lines += [f"| `{field}` | {_schema_type(p)} | {fmt(field in required)} | "
                      f"{_cell(p.get('description') or p.get('title'))} |"
                      for field, p in props.items()]
            lines.append("")
    return "\n".join(lines) + "\n"


def _label_origin_cell(counts: dict) -> str:
    if not counts:
        return "-"
    flagged = counts.get("observed", 0) + counts.get("filled", 0)
    share = f" ({counts.get('observed', 0) / flagged:.0%} observed)" if flagged else ""
    return (f"{counts.get('observed', 0)} / {counts.get('filled', 0)} / "
            f"{counts.get('unknown', 0)}{share}")


def _source_years_cell(years: dict) -> str:
    if not years:
        return "-"
    values = sorted(years.values())
    recent = sum(y >= 1996 for y in values)
    return f"{values[0]}–{values[-1]} ({recent} of {len(values)} months from 1996 on)"


def quality_page(root: Path) -> str:
    """Per-station data-quality summary from ``reports/data_quality.json``."""
    paths = Paths(root)
    stations = read_json(paths.reports_dir / "data_quality.json")
    lines = ["# Data quality", "",
             "Generated from `reports/data_quality.json` by the `docs` stage.", ""]
    lines += ["| station | format | rows | usable night hours | observed / filled / unknown "
              "label hours | source years | clear-sky rate | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| `{sid}` | {r['kind'].upper()} | {r['rows']} | {r['usable_night_hours']} | "
              + _label_origin_cell(r.get("label_origin_hours") or {}) + " | "
              + _source_years_cell(r.get("source_years") or {}) + " | "
              + ("-" if r["clear_sky_rate"] is None else f"{r['clear_sky_rate']:.1%}")
              + f" | {r['verdict']} |" for sid, r in stations.items()]
    lines += ["", "*Label hours* are the usable night hours by where their opaque sky cover "
              "comes from: *observed* (TMY2/TMY3 source flag `A`, data as observed), *filled* "
              "by the file's producer (flags `B`, `E`: interpolated or estimated), *unknown* "
              "where the file has no per-hour flag (the TMY3-derived EPW files mark sky cover "
              "`?`; CSV files and the feed carry none). *Source years*: a typical year splices "
              "each calendar month from one real year; the range shows how far apart they are."]
    lines += ["", "`production/…` rows are the serving store's snapshot (`data/production/`), "
              "checked by the same policy; a production station with too few usable night "
              "hours is skipped, not fatal ([Retraining on production data]"
              "(../registry.md#retraining-on-production-data-judged-on-what-matters-now))."]
    lines += ["", "What each repair and message means: [Add your own station]"
              "(../add-your-station.md).", ""]
    for station_id, r in stations.items():
        lines += [f"## `{station_id}` — {r['verdict']}", "",
                  f"{r['kind'].upper()}, {r['rows']} hourly rows, from `{Path(r['source']).name}`.",
                  ""]
        if r["repairs"]:
            lines += ["| column | repair | values |", "|---|---|---|"]
            lines += [f"| `{x['column']}` | {x['rule']} | {x['count']} |" for x in r["repairs"]]
            lines.append("")
        if r["dropped_features"]:
            lines += ["Dropped for this station: " + ", ".join(
                f"`{d['column']}` ({d['reason']})" for d in r["dropped_features"]), ""]
    return "\n".join(lines) + "\n"


def monitoring_page(root: Path) -> str:
    """Production monitoring from ``reports/metrics/monitor.json`` (the ``monitor`` stage)."""
    paths = Paths(root)
    report = read_json(paths.metrics_dir / "monitor.json")
    lines = ["# Monitoring", "",
             "Generated from `reports/metrics/monitor.json` (the `monitor` stage, notebook "
             "[5 · Monitor](notebooks/05_monitor.ipynb)) by the `docs` stage. How it works: "
             "[Monitoring production](../monitoring.md).", ""]
    if report["status"] == "no production traffic yet":
        return "\n".join([*lines, "**No production traffic yet**: the snapshot in "
                          "`data/production/` is empty. Run the service with a feeder and "
                          "take a snapshot (`starry store snapshot`).", ""])
    production = report["production"]
    verdict = "yes" if report["retrain_recommended"] else "no"
    count = {k: fmt(v) for k, v in production.items()}
    lines += [f"Snapshot: {count['stations']} station(s), {count['observations']} "
              f"observations from {production['first_hour']} to {production['last_hour']}, "
              f"{count['predictions']} nowcasts, {count['labelled_predictions']} "
              f"labelled (prediction, horizon) pairs at night, {count['feedback']} "
              "feedback reports.", "",
              f"- status: **{report['status']}**",
              f"- **retrain recommended: {verdict}**"]
    lines += [f"    - {reason}" for reason in report["reasons"]]
    perf = report.get("performance") or {}
    by_horizon = pd.DataFrame(report.get("performance_by_horizon", {})).T
    if not by_horizon.empty:
        by_horizon.index = by_horizon.index.astype(int)
        by_horizon = by_horizon.sort_index().rename_axis("horizon (h)")
    if perf:
        lines += ["", "## Realised performance", "",
                  f"At the served threshold {report['served_threshold']:g}. *expected Brier* is "
                  "what the served probabilities promise (mean p(1 − p)); *BSS* is against "
                  "calibrated persistence fitted on the training months.", "",
                  _table(pd.DataFrame([perf], index=["all stations"])[[k for k in (
                      "rows", "clear_rate", "brier", "expected_brier", "brier_excess", "bss",
                      "accuracy", "precision", "recall") if k in perf]]), "",
                  _table(by_horizon), ""]
    stations = pd.DataFrame({s: {"status": d["status"],
                                 "retrain recommended": d["retrain_recommended"],
                                 "labelled": d["labelled_predictions"],
                                 **{f"{k} alerts": n for k, n in d["alerts"].items()}}
                             for s, d in report["stations"].items()}).T
    lines += ["## Per station", "", _table(stations.rename_axis("station")), ""]
    alerts = report["alerts"]
    for kind, title in (("data_quality", "Data-quality alerts"), ("drift", "Drift alerts"),
                        ("prediction_drift", "Prediction-drift alerts"),
                        ("performance", "Performance alerts")):
        if alerts.get(kind):
            frame = pd.DataFrame(alerts[kind])
            first = [c for c in ("station_id", "chunk") if c in frame]
            frame = frame[first + [c for c in frame if c not in first]]
            shown = frame.head(40).set_index(first[0]) if first else frame.head(40)
            lines += [f"## {title}", "", _table(shown), ""]
            if len(frame) > 40:
                lines += [f"… and {len(frame) - 40} more (see `monitor.json`).", ""]
    lines += ["## Over time", "",
              "![Realised performance](figures/monitor/performance.png)", "",
              "![Missing values per sensor](figures/monitor/quality.png)", "",
              "![Feature drift](figures/monitor/drift.png)", "",
              "![Reliability](figures/monitor/reliability.png)", ""]
    return "\n".join(lines) + "\n"


BUNDLE = Path("models") / "champion" / "bundle"


def _needs_champion(title: str) -> str:
    return (f"# {title}\n\nThis page is computed from the champion's bundle "
            "(`models/champion/bundle/`), which this checkout does not have yet: run "
            "`make repro` (or `.venv/bin/dvc repro`) and it is generated.\n")


def summary_metrics(root: Path) -> dict:
    """The few numbers `dvc exp show` and `dvc metrics diff` show by default
    (``reports/metrics/summary.json``): the gate's decision and the champion's key scores.
    The detailed metrics stay in ``reports/metrics/*.json`` (``dvc metrics show FILE``)."""
    paths = Paths(root)
    select = select_metrics.read(paths.metrics_dir / "select.json")
    decision = read_json(paths.reports_dir / "select_decision.json")
    gate = decision.get("gate") or {}
    best = decision.get("best_candidate")
    held = "held_out"
    return {
        "champion": select.champion,
        "decision": ("promoted" if decision.get("promoted") and best == select.champion
                     else "first champion" if decision.get("promoted") else "kept"),
        "best_candidate": best,
        "gate_ci_high": gate.get("ci_high"),
        "held_out_brier": select.scores.get(held, {}).get("brier"),
        "held_out_bss": select.scores.get(held, {}).get("bss"),
        "unseen_bss": select.scores.get("unseen", {}).get("bss"),
        "best_held_out_bss": select.candidates_held_out.get(best, {}).get("bss"),
    }


def generate(root: Path, destination: Path) -> None:
    """Write every generated page (and the figures and executed notebooks they show)."""
    paths = Paths(root)
    destination.mkdir(parents=True)
    shutil.copytree(paths.figures_dir, destination / "figures")
    with ThreadPoolExecutor(max_workers=1) as background:
        # the pipeline page waits on `dvc dag` (a process of its own, ~1 s): meanwhile, the rest
        pipeline = background.submit(pipeline_page, root)
        _write_pages(root, destination, pipeline)


def _write_pages(root: Path, destination: Path, pipeline: Future) -> None:
    paths = Paths(root)
    pages = {
        "problem.md": lambda: problem_page(root),
        "model-card.md": lambda: model_card_page(root, destination),
        "champion-history.md": lambda: history_page(root),
        "monitoring.md": lambda: monitoring_page(root),
        "accuracy.md": lambda: (accuracy_page(root, destination)
                                if (root / BUNDLE).is_dir()
                                else _needs_champion("Accuracy you can check")),
        "metrics.md": lambda: metrics_page(root, destination),
        "data-quality.md": lambda: quality_page(root),
        "pipeline.md": pipeline.result,  # last: `dvc dag` ran meanwhile
    }
    for name, page in pages.items():
        try:
            text = page()
        except FileNotFoundError as exc:
            raise DocsError(f"{name}: {exc.filename} is missing; run `dvc repro` first") \
                from None
        (destination / name).write_text(text, encoding="utf-8")
    if (root / BUNDLE).is_dir():
        schema = openapi_schema(root)
        write_json(destination / "openapi.json", schema)
        (destination / "api.md").write_text(api_page(schema), encoding="utf-8")
    else:  # the docs stage always has it (a dependency); a bare checkout may not
        (destination / "api.md").write_text(_needs_champion("HTTP API"), encoding="utf-8")
    notebooks = destination / "notebooks"
    notebooks.mkdir()
    for name in STAGE_NOTEBOOKS.values():
        shutil.copyfile(paths.reports_dir / "notebooks" / name, notebooks / name)


def build(root: Path) -> Path:
    """Generate the pages, ``mkdocs build --strict``, then publish both atomically."""
    paths = Paths(root)
    staging = root / STAGING_DIR / "docs"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    generate(root, staging / "generated")
    # build against the new pages: swap them in, and back if the build fails
    previous = root / STAGING_DIR / "docs-previous"
    target = root / GENERATED
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        target.rename(previous)
    shutil.copytree(staging / "generated", target)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-c", MKDOCS_COMMAND, "build", "--strict", "--site-dir",
         str(staging / "site")], cwd=root, capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(target)
        if previous.exists():
            previous.rename(target)
        raise DocsError("mkdocs build --strict failed; the previous docs were kept.\n"
                        + result.stderr.strip())
    if previous.exists():
        shutil.rmtree(previous)
    replace_atomically(staging / "site", root / SITE)
    write_json(paths.metrics_dir / "summary.json", summary_metrics(root))
    shutil.rmtree(staging, ignore_errors=True)
    return root / SITE


def summary(root: Path) -> str:
    """A few lines for the end of ``make repro``."""
    paths = Paths(root)
    select = select_metrics.read(paths.metrics_dir / "select.json")
    decision = read_json(paths.reports_dir / "select_decision.json")
    card = read_json(paths.champion_dir / "champion.json")
    monitoring = read_json(paths.metrics_dir / "monitor.json")
    held_out = select.scores.get("held_out", {})
    unseen = select.scores.get("unseen", {})
    headline = select.leave_one_station_out.get(select.loso_headline or "", {})
    return "\n".join([
        "",
        f"Champion: {card['candidate']} (model {card.get('model_id', '?')}) — registered "
        f"model '{card['model_name']}', alias @champion (`starry champion history`)",
        f"  decision: {'new champion' if decision['promoted'] else 'champion kept'} — "
        f"{decision['reason']}",
        f"  leave one station out ({headline.get('candidate', '-')}): BSS vs calibrated "
        f"persistence {headline.get('pooled', {}).get('bss', float('nan')):+.4f} pooled, "
        f"worst station-horizon {headline.get('worst_station_horizon_bss', float('nan')):+.3f}",
        f"  held-out months: Brier {held_out.get('brier', float('nan')):.4f}, "
        f"BSS vs calibrated persistence {held_out.get('bss', float('nan')):+.4f}, "
        f"accuracy {held_out.get('accuracy', float('nan')):.3f}",
        f"  unseen station: Brier {unseen.get('brier', float('nan')):.4f}, "
        f"BSS {unseen.get('bss', float('nan')):+.4f}",
        f"  monitor: {monitoring['status']}; retrain recommended = "
        f"{monitoring['retrain_recommended']}",
        "Where to look:",
        "  metrics     reports/metrics/*.json   (dvc metrics show)",
        "  notebooks   reports/notebooks/*.ipynb (executed), figures in reports/figures/",
        "  docs site   site/index.html           (make docs-serve)",
        "  MLflow UI   make mlflow-ui            (store: mlflow.db)",
    ])
