"""Living documentation: pages generated from the pipeline's outputs, then ``mkdocs build``.

Generated pages go to ``docs/generated/`` (committed, so the site builds from a fresh clone);
hand-written pages stay in ``docs/``. Both are rebuilt atomically: a failing build leaves the
previous pages and ``site/`` in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from starry_guide.notebook import STAGE_NOTEBOOKS, STAGING_DIR, _replace
from starry_guide.reports import read_json

GENERATED = Path("docs") / "generated"
SITE = Path("site")
KEY_METRICS = ["brier", "bss", "roc_auc", "accuracy", "precision", "recall", "f1"]


class DocsError(RuntimeError):
    """The docs could not be generated or built; the message says which input or page."""


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(floatfmt=".4f")


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


def metrics_page(root: Path) -> str:
    """The champion, every candidate's validation scores and the data summary."""
    metrics = root / "reports" / "metrics"
    select = read_json(metrics / "select.json")
    train = read_json(metrics / "train.json")
    data = read_json(metrics / "data.json")
    held_out = pd.DataFrame({split: select[split] for split in ("validation", "held_out", "unseen")
                             if split in select}).T
    candidates = pd.DataFrame({n: v["validation"] for n, v in train.items()}).T
    decision = read_json(root / "reports" / "select_decision.json")
    gate = decision.get("gate") or {}
    candidates_held_out = pd.DataFrame(select.get("candidates_held_out", {})).T
    by_horizon = pd.DataFrame(select.get("held_out_bss_by_horizon", {}))
    if not by_horizon.empty:
        by_horizon.index = by_horizon.index.astype(int)
        by_horizon = by_horizon.sort_index().rename_axis("horizon (h)")
    loso = pd.DataFrame({name: {**per["bss_by_station"], "pooled": per["pooled"]["bss"],
                                "pooled, held-out months only":
                                    per["pooled_held_out_months"]["bss"]}
                         for name, per in select.get("leave_one_station_out", {}).items()})
    loso_horizon = pd.DataFrame({name: per["bss_by_horizon"] for name, per in
                                 select.get("leave_one_station_out", {}).items()})
    loso_horizon.index.name = "horizon (h)"
    adaptation = pd.DataFrame(select.get("adaptation", {})).T
    adaptation.index.name = "labelled nights"
    champion = (decision.get("champion") or {}).get("candidate", decision["best_candidate"])
    verdict = f"new champion: {champion}" if decision["promoted"] else "the champion stays"
    gate_lines = [f"- decision: **{verdict}** — {decision['reason']}"]
    incumbent = decision.get("incumbent_model")
    if incumbent:
        gate_lines.append(f"- judged against: `{incumbent['candidate']}` (model "
                          f"`{incumbent['model_id']}`, from {incumbent['source']})")
    if gate:
        level = gate.get("confidence", 0.95)
        gate_lines.append(f"- Brier difference (best challenger − incumbent) "
                          f"{gate['brier_difference']:+.5f}, {level:.1%} CI "
                          f"{gate['ci_low']:+.5f} … {gate['ci_high']:+.5f} "
                          f"({int(gate['nights'])} nights, {int(gate['n_boot'])} resamples)")
    lines = [
        "# Model metrics",
        "",
        "Generated from `reports/metrics/*.json` by the `docs` stage.",
        "",
        f"## Champion: `{select['champion']}`",
        "",
        f"Chosen by pooled validation **{select['selection_metric']}**. BSS is the Brier skill "
        "score against calibrated persistence (above 0 beats the baseline). *held_out* = held-out "
        "months of the training stations (never used for a choice); *unseen* = a station never "
        "used in training.",
        "",
        _table(held_out[["rows", "clear_rate", *KEY_METRICS]]),
        "",
        "## The champion gate",
        "",
        *gate_lines,
        "",
        "## Candidates on the validation months",
        "",
        _table(candidates[[*KEY_METRICS, "log_loss", "ece", "threshold"]]),
        "",
        "## Leave one station out — the headline (BSS vs calibrated persistence)",
        "",
        "Each station scored by the recipe refit on the other stations (see *Forecast skill "
        "and the gate*).",
        "",
        _table(loso) if not loso.empty else "",
        "",
        _table(loso_horizon.T) if not loso_horizon.empty else "",
        "",
        "![LOSO BSS by station and horizon](figures/select/loso_station_horizon.png)",
        "",
        "### Adaptation at a new place (BSS after n labelled nights)",
        "",
        _table(adaptation) if not adaptation.empty else "",
        "",
        "## Candidates on the held-out months",
        "",
        _table(candidates_held_out) if not candidates_held_out.empty else "",
        "",
        "### Brier skill by horizon (held-out months)",
        "",
        _table(by_horizon) if not by_horizon.empty else "",
        "",
        "![Reliability of the champion](figures/train/reliability_"
        f"{select['champion']}.png)",
        "",
        "## Data",
        "",
        f"{data['stations']} stations, {data['observed_hours']} observed hours.",
        "",
        _table(pd.DataFrame({"rows": data["rows"], "clear rate": data["clear_rate"]})),
    ]
    return "\n".join(lines) + "\n"


def quality_page(root: Path) -> str:
    """Per-station data-quality summary from ``reports/data_quality.json``."""
    stations = read_json(root / "reports" / "data_quality.json")
    lines = ["# Data quality", "",
             "Generated from `reports/data_quality.json` by the `docs` stage.", ""]
    lines += ["| station | format | rows | usable night hours | clear-sky rate | verdict |",
              "|---|---|---|---|---|---|"]
    lines += [f"| `{sid}` | {r['kind'].upper()} | {r['rows']} | {r['usable_night_hours']} | "
              f"{r['clear_sky_rate']:.1%} | {r['verdict']} |" for sid, r in stations.items()]
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
    report = read_json(root / "reports" / "metrics" / "monitor.json")
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
    lines += [f"Snapshot: {production['stations']} station(s), {production['observations']} "
              f"observations from {production['first_hour']} to {production['last_hour']}, "
              f"{production['predictions']} nowcasts, {production['labelled_predictions']} "
              f"labelled (prediction, horizon) pairs at night, {production['feedback']} "
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
                  pd.DataFrame([perf])[[k for k in (
                      "rows", "clear_rate", "brier", "expected_brier", "brier_excess", "bss",
                      "accuracy", "precision", "recall") if k in perf]].to_markdown(
                      index=False, floatfmt=".4f"), "",
                  _table(by_horizon), ""]
    stations = pd.DataFrame({s: {"status": d["status"],
                                 "retrain recommended": d["retrain_recommended"],
                                 "labelled": d["labelled_predictions"],
                                 **{f"{k} alerts": n for k, n in d["alerts"].items()}}
                             for s, d in report["stations"].items()}).T
    lines += ["## Per station", "", stations.to_markdown(), ""]
    alerts = report["alerts"]
    for kind, title in (("data_quality", "Data-quality alerts"), ("drift", "Drift alerts"),
                        ("prediction_drift", "Prediction-drift alerts"),
                        ("performance", "Performance alerts")):
        if alerts.get(kind):
            frame = pd.DataFrame(alerts[kind])
            lines += [f"## {title}", "", _table(frame.head(40)), ""]
            if len(frame) > 40:
                lines += [f"… and {len(frame) - 40} more (see `monitor.json`).", ""]
    lines += ["## Over time", "",
              "![Realised performance](figures/monitor/performance.png)", "",
              "![Missing values per sensor](figures/monitor/quality.png)", "",
              "![Feature drift](figures/monitor/drift.png)", "",
              "![Reliability](figures/monitor/reliability.png)", ""]
    return "\n".join(lines) + "\n"


def generate(root: Path, destination: Path) -> None:
    """Write every generated page (and the figures and executed notebooks they show)."""
    destination.mkdir(parents=True)
    try:
        (destination / "pipeline.md").write_text(pipeline_page(root), encoding="utf-8")
        (destination / "metrics.md").write_text(metrics_page(root), encoding="utf-8")
        (destination / "data-quality.md").write_text(quality_page(root), encoding="utf-8")
        (destination / "monitoring.md").write_text(monitoring_page(root), encoding="utf-8")
    except FileNotFoundError as exc:
        raise DocsError(f"{exc.filename} is missing; run `dvc repro` first") from None
    shutil.copytree(root / "reports" / "figures", destination / "figures")
    notebooks = destination / "notebooks"
    notebooks.mkdir()
    for name in STAGE_NOTEBOOKS.values():
        shutil.copyfile(root / "reports" / "notebooks" / name, notebooks / name)


def build(root: Path) -> Path:
    """Generate the pages, ``mkdocs build --strict``, then publish both atomically."""
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
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
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
    _replace(staging / "site", root / SITE)
    shutil.rmtree(staging, ignore_errors=True)
    return root / SITE


def summary(root: Path) -> str:
    """A few lines for the end of ``make repro``."""
    select = read_json(root / "reports" / "metrics" / "select.json")
    decision = read_json(root / "reports" / "select_decision.json")
    card = read_json(root / "models" / "champion" / "champion.json")
    monitoring = read_json(root / "reports" / "metrics" / "monitor.json")
    held_out = select.get("held_out", {})
    unseen = select.get("unseen", {})
    headline = select.get("leave_one_station_out", {}).get(select.get("loso_headline", ""), {})
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
