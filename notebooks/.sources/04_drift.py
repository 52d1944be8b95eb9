# Generated from notebooks/04_drift.ipynb by `starry notebook-sources` (dvc stage notebook_sources).
# The notebook's cells without their outputs: the pipeline stage depends on this view, so
# refreshing stored outputs (`make notebooks`) never makes it stale. Edit the notebook, not this.

# %% [markdown]
# # 4 · Drift: is today's data still like the training data?
#
# Reference = the training features; current = the unseen station (`split.unseen_stations`),
# a stand-in until the production prediction log feeds this stage. Per feature: population
# stability index (PSI) and a Kolmogorov–Smirnov test; then drift of the champion's predictions
# and its performance on current vs reference data. The verdict says whether to retrain, and why.

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

import matplotlib.pyplot as plt
import mlflow.sklearn
from sklearn.metrics import brier_score_loss

from starry_guide import drift, reports, training
from starry_guide.features import feature_columns

rows = pd.read_parquet(inputs.processed_dir / "rows.parquet")
model = mlflow.sklearn.load_model(str(inputs.champion_dir / "mlflow_model"))
columns = [c for c in feature_columns(settings.features) if c != "horizon_h"]
# features at t do not depend on h: compare each observed hour once
reference = rows[(rows["split"] == "train") & (rows["horizon_h"] == 1)]
current = rows[(rows["split"] == "unseen") & (rows["horizon_h"] == 1)]
print(f"reference: {len(reference)} hours, current: {len(current)} hours")

# %%
table = drift.feature_drift(reference, current, columns, settings.drift)
ax = table["psi"].sort_values().plot.barh(figsize=(6, 7), title="PSI per feature (reference → current)")
ax.axvline(settings.drift.psi_threshold, color="red", linestyle=":")
table.sort_values("psi", ascending=False)

# %%
X_ref, y_ref = training.split_xy(rows, "validation", settings)
X_cur, y_cur = training.split_xy(rows, "unseen", settings)
p_ref, p_cur = training.predict_clear(model, X_ref), training.predict_clear(model, X_cur)
prediction_psi = drift.psi(p_ref, p_cur, settings.drift.psi_bins)
brier_ref, brier_cur = brier_score_loss(y_ref, p_ref), brier_score_loss(y_cur, p_cur)
drifted_share = float(table["drifted"].mean())
result = drift.verdict(drifted_share, prediction_psi, brier_ref, brier_cur, settings.drift)
print(f"drifted features: {int(table['drifted'].sum())} of {len(table)}")
print(f"prediction PSI: {prediction_psi:.3f}; Brier reference {brier_ref:.4f} → current {brier_cur:.4f}")
print("retrain recommended:", result.retrain_recommended)
for reason in result.reasons:
    print(" -", reason)

# %% [markdown]
# ## Outputs

# %%
reports.write_json(outputs.metrics_dir / "drift.json", {
    "drifted_features": int(table["drifted"].sum()),
    "drifted_share": drifted_share,
    "prediction_psi": prediction_psi,
    "brier_reference": brier_ref,
    "brier_current": brier_cur,
    "retrain_recommended": result.retrain_recommended,
    "reasons": result.reasons,
})
reports.write_csv(outputs.plots_dir / "feature_drift.csv", table.reset_index())
fig = ax.get_figure()
(outputs.figures_dir / "drift").mkdir(parents=True, exist_ok=True)
fig.savefig(outputs.figures_dir / "drift" / "feature_drift.png", dpi=80, bbox_inches="tight")
