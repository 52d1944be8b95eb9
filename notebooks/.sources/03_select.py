# Generated from notebooks/03_select.ipynb by `starry notebook-sources` (dvc stage notebook_sources).
# The notebook's cells without their outputs: the pipeline stage depends on this view, so
# refreshing stored outputs (`make notebooks`) never makes it stale. Edit the notebook, not this.

# %% [markdown]
# # 3 · Select: the champion gate
#
# The candidates are ranked on the validation months (`select.metric`). The best one must then
# pass the **gate** against the incumbent — the registry's `@champion`, or calibrated persistence
# when there is none yet:
#
# 1. its pooled Brier improvement must be **significant**: a paired bootstrap over whole nights
#    (`select.bootstrap_samples`), whose `select.confidence` interval of the Brier difference
#    excludes 0 — hours of one night are correlated, so rows are not resampled one by one;
# 2. at no horizon may it fall below calibrated persistence by more than
#    `select.horizon_tolerance_bss` (Brier skill score).
#
# Otherwise the champion stays (the baseline itself may be the champion) and the candidate
# becomes the `challenger`. The decision, its confidence interval and reasons go to
# `reports/select_decision.json`, to tags on the model version, and to the docs.

# %% tags=['parameters']
# Parameters. Every knob lives in params.yaml and is read by load_settings() below, whether
# this notebook runs in the pipeline (`dvc repro`, via Papermill) or by hand in JupyterLab.
# Papermill sets output_dir to a staging folder; by hand, outputs go into the project itself.
output_dir = None

# %%
from pathlib import Path

import pandas as pd

from starry_guide.config import Paths, load_settings

settings = load_settings()
inputs = settings.paths
outputs = Paths(settings.project_root / output_dir) if output_dir else inputs
pd.set_option("display.precision", 4)
pd.set_option("display.width", 120)

import mlflow.sklearn

from starry_guide import champion, evaluate, reports, tracking, training

rows = pd.read_parquet(inputs.processed_dir / "rows.parquet")
runs = reports.read_json(inputs.reports_dir / "train_runs.json")
tracking.configure(settings, tracking.SELECT_EXPERIMENT)
selection = champion.select(rows, {name: run["model_uri"] for name, run in runs.items()}, settings)

# %% [markdown]
# ## Ranking on validation

# %%
metric = settings.select.metric
ranking = pd.DataFrame({name: selection.scores[name]["validation"] for name in selection.ranking}).T
ranking[[metric, "bss", "ece", "roc_auc", "accuracy", "precision", "recall", "f1"]]

# %% [markdown]
# ## The gate's decision

# %%
print(f"best candidate: {selection.decision.candidate}; incumbent: {selection.decision.incumbent}")
print(f"promoted: {selection.decision.promote}")
print(selection.decision.reason)
print(f"champion: {selection.champion_candidate}")

# %% [markdown]
# ## The champion on held-out data
#
# Validation months chose it. The held-out months (`split.held_out_months`) and the unseen
# station were not used for any choice. TMY files splice months from different years, and the
# held-out months interleave with the training months, so they are *held-out months*, not a
# temporal test.

# %%
held_out = pd.DataFrame(selection.scores["champion"]).T
held_out[["rows", "clear_rate", "brier", "bss", "ece", "roc_auc", "accuracy", "precision", "recall", "f1"]]

# %% [markdown]
# ## Skill by horizon on the held-out months
#
# The champion and, when it is another model, the best-ranked candidate — how far the challenger is from earning its place.

# %%
models = {selection.champion_candidate: mlflow.sklearn.load_model(selection.champion_model_uri)}
best = selection.ranking[0]
models.setdefault(best, mlflow.sklearn.load_model(runs[best]["model_uri"]))
baseline = mlflow.sklearn.load_model(runs[training.BASELINE]["model_uri"])
held_out_rows = rows[rows["split"] == "held_out"].reset_index(drop=True)
X_held_out, _ = training.split_xy(rows, "held_out", settings)
p_baseline = training.predict_clear(baseline, X_held_out)
by_horizon = pd.DataFrame({
    name: evaluate.scores_by_horizon(held_out_rows, training.predict_clear(m, X_held_out),
                                     selection.scores[name]["held_out"]["threshold"], p_baseline)["bss"]
    for name, m in models.items()})
fig = evaluate.plot_by_horizon(by_horizon, "BSS vs calibrated persistence", "Held-out months: skill by horizon")
by_horizon.round(4)

# %% [markdown]
# ## Leave one station out — the headline
#
# What a user at a new place gets. For each of the stations in turn, the recipe of the best
# learned model (and of the champion, when it is learned) is refit on the *other* stations'
# training and validation months, together with calibrated persistence; both then score every
# row of the station they never saw. BSS is against that refit calibrated persistence:
# pooled, per station, per horizon, and per (station, horizon) in the figure.

# %%
from starry_guide import loso

learned = next(c for c in selection.ranking if c not in ("persistence", training.BASELINE))
models.setdefault(learned, mlflow.sklearn.load_model(runs[learned]["model_uri"]))
loso_results = {name: loso.leave_one_station_out(rows, m, settings, name)
                for name, m in models.items() if name not in ("persistence", training.BASELINE)}
headline = loso_results[selection.champion_candidate if selection.champion_candidate in loso_results
                        else learned]
(outputs.figures_dir / "select").mkdir(parents=True, exist_ok=True)
fig = loso.plot_station_horizon(headline, f"Leave one station out: {headline.candidate} vs calibrated persistence")
fig.savefig(outputs.figures_dir / "select" / "loso_station_horizon.png", dpi=80)
pd.DataFrame({name: {**r.summary()["bss_by_station"], "pooled": r.pooled()["bss"],
                     "pooled, held-out months only": r.pooled(held_out_only=True)["bss"]}
              for name, r in loso_results.items()}).round(4)

# %%
pd.DataFrame({name: r.summary()["bss_by_horizon"] for name, r in loso_results.items()}).round(4).T

# %% [markdown]
# ## Adaptation at a new place
#
# A new station gains its own labelled nights as the feed runs. Simulated on the
# leave-one-station-out forecasts: from four start dates spread over the year, the station's
# first *n* nights recalibrate its forecasts (a two-parameter logistic map of the logit, shrunk
# toward no change), and every *n* is scored on the same later nights. Calibrated persistence
# is adapted the same way; `bss_vs_baseline` compares with the unadapted baseline.

# %%
adaptation = loso.adaptation(headline)
adaptation

# %% [markdown]
# ## The transfer bundle
#
# The champion as ONNX (`models/champion/bundle/`): the model, its feature specification, the
# station climatology for nights without observations, and a model card with lineage and
# checksums. The API and batch scoring predict from it with onnxruntime; the parity check
# compares ONNX with scikit-learn on every test row.

# %%
from starry_guide.features import feature_columns
from starry_guide.serve import bundle as transfer

observations = pd.read_parquet(inputs.processed_dir / "observations.parquet")
bundle_dir = outputs.champion_dir / "bundle"
card = transfer.write_bundle(
    models[selection.champion_candidate], feature_columns(settings.features), bundle_dir,
    card={"model_name": settings.select.model_name, "version": selection.champion_version,
          "candidate": selection.champion_candidate, "scores": selection.scores["champion"],
          "lineage": {**tracking.lineage_tags(settings), "params": settings.as_dict()["train"]}},
    feature_spec=transfer.feature_spec(settings),
    climate=transfer.climatology(observations, settings.label.night_max_sun_elevation_deg,
                                 settings.label.clear_max_opaque_tenths),
    X_check=X_held_out)
transfer.publish(bundle_dir, settings.select.model_name, selection.champion_version)
print(f"ONNX parity on {card['onnx_parity_rows']} held-out rows: max |p_onnx - p_sklearn| = "
      f"{card['onnx_parity_max_abs']:.1e} (tolerance {transfer.PARITY_TOLERANCE:g})")

# %% [markdown]
# ## Outputs

# %%
champion.export_model(selection.champion_model_uri, outputs.champion_dir / "mlflow_model")
reports.write_json(outputs.champion_dir / "champion.json", {
    "model_name": settings.select.model_name,
    "version": selection.champion_version,
    "candidate": selection.champion_candidate,
    "model_uri": selection.champion_model_uri,
    "scores": selection.scores["champion"],
})
reports.write_json(outputs.metrics_dir / "select.json", {
    "champion": selection.champion_candidate,
    "selection_metric": metric,
    **selection.scores["champion"],
    "candidates_held_out": {name: {k: selection.scores[name]["held_out"][k] for k in ("brier", "bss", "roc_auc")}
                        for name in selection.ranking},
    "held_out_bss_by_horizon": by_horizon.to_dict(),
    "onnx_parity_max_abs": card["onnx_parity_max_abs"],
    "leave_one_station_out": {name: r.summary() for name, r in loso_results.items()},
    "loso_headline": headline.candidate,
    "adaptation": {str(n): row for n, row in adaptation.to_dict(orient="index").items()},
})
reports.write_json(outputs.reports_dir / "select_decision.json", {
    "promoted": selection.decision.promote,
    "reason": selection.decision.reason,
    "best_candidate": selection.decision.candidate,
    "incumbent": selection.decision.incumbent,
    "gate": selection.decision.details,
    "ranking": selection.ranking,
    "champion_version": selection.champion_version,
    "challenger_version": selection.challenger_version,
})
print("champion exported to models/champion/")
