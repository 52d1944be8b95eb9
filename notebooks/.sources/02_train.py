# Generated from notebooks/02_train.ipynb by `starry notebook-sources` (dvc stage notebook_sources).
# The notebook's cells without their outputs: the pipeline stage depends on this view, so
# refreshing stored outputs (`make notebooks`) never makes it stale. Edit the notebook, not this.

# %% [markdown]
# # 2 · Train: candidates, each an MLflow run
#
# Every candidate is a scikit-learn classifier with the same interface (`starry_guide.core.models`).
# The honest baseline is **calibrated persistence**: P(clear at t+h | opaque cover at t, h),
# counted on the training months. Cloud cover persists, so it is hard to beat; the
# **Brier skill score** (BSS) of every model is measured against it (BSS > 0 beats it).

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

from starry_guide.core import evaluate
from starry_guide.artifacts import reports
from starry_guide.pipeline import training

rows = pd.read_parquet(inputs.processed_dir / "rows.parquet")
pd.Series(settings.as_dict()["train"], dtype=object).to_frame("value")

# %%
results = training.fit_candidates(rows, settings)
table = training.metrics_table(results)
table[["brier", "bss", "log_loss", "ece", "roc_auc", "threshold", "accuracy", "precision", "recall", "f1"]]

# %% [markdown]
# *threshold* is the P(clear) cut-off that maximises `train.threshold_metric` on validation;
# accuracy, precision and recall are read at it. *ece* is the expected calibration error.
#
# ## Hyper-parameter search
#
# Random search (`train.search`), each trial scored by pooled Brier in cross-validation over
# whole (station, month) blocks of the training months — never over random rows, whose
# neighbours an hour away would leak the answer. Every trial is an MLflow child run.

# %%
trials = pd.DataFrame([{"candidate": name, **t["params"], "cv_brier": t["cv_brier"]}
                       for name, r in results.items() for t in r.trials])
trials.sort_values("cv_brier").round(5) if len(trials) else "no search configured"

# %% [markdown]
# ## Skill by horizon
#
# Brier skill score against calibrated persistence on the validation months, per hour ahead.

# %%
bss = training.horizon_table(results, "bss")
fig = evaluate.plot_by_horizon(bss.drop(columns=["persistence"], errors="ignore"), "BSS vs calibrated persistence",
                               "Validation skill by horizon")
bss.round(3)

# %% [markdown]
# ## Calibration
#
# A forecast of 70 % should come true 70 % of the time.

# %%
X_val, y_val = training.split_xy(rows, "validation", settings)
curves = {name: evaluate.reliability(y_val, r.p_validation) for name, r in results.items()}
fig = evaluate.plot_reliability(curves, "Reliability (validation)")

# %% [markdown]
# ## Tracking and outputs
#
# One MLflow run per candidate (params, metrics, model with signature and input example, figures); metrics and plot data for `dvc metrics` / `dvc plots`.

# %%
training.candidate_figures(results, y_val, outputs.figures_dir / "train")
training.log_candidates(results, rows, settings, outputs.figures_dir / "train")
reports.write_json(outputs.metrics_dir / "train.json",
                   {name: {"validation": r.validation} for name, r in results.items()})
long = (pd.concat({name: r.by_horizon[["brier", "bss"]] for name, r in results.items()},
                  names=["candidate"]).reset_index())
reports.write_csv(outputs.plots_dir / "validation_by_horizon.csv", long)
reliability = pd.concat(curves, names=["candidate"]).reset_index(level=0)
reports.write_csv(outputs.plots_dir / "reliability.csv", reliability)
# candidates by content id: the select stage finds their runs in MLflow by this tag
reports.write_json(outputs.reports_dir / "train_runs.json", training.candidate_index(results))
print(f"logged {len(results)} candidate runs to MLflow")
