# Generated from notebooks/05_monitor.ipynb by `starry notebook-sources` (dvc stage notebook_sources).
# The notebook's cells without their outputs: the pipeline stage depends on this view, so
# refreshing stored outputs (`make notebooks`) never makes it stale. Edit the notebook, not this.

# %% [markdown]
# # 5 · Monitor: how is the champion doing on production traffic?
#
# Reads a **snapshot of the serving store** (`data/production/`, written by
# `starry store snapshot`): the observations the feed received, every nowcast served with its
# inputs, and users' feedback. Production observations label earlier predictions — the observed
# opaque cover at hour *T* is the truth of every forecast for *T* — so realised performance is
# known about twelve hours after a forecast.
#
# Everything is judged per station and per **chunk** (a week), against a **reference**: the
# stations the champion was trained on. Every threshold comes from the reference's own
# chunk-to-chunk variation (NannyML's rule: mean + 3 std of the statistic over reference
# chunks), never from fixed bands. The logic lives in `starry_guide.monitor`: its reference period, checks, verdict and figures.

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

from starry_guide.monitor import reference_period, report, verdict
from starry_guide.artifacts import reports
from starry_guide.artifacts.bundle import load_bundle

production = reference_period.load_production(inputs.production_dir)
print(f"snapshot: {len(production.observations)} observations, "
      f"{production.predictions['prediction_id'].nunique() if len(production.predictions) else 0} nowcasts, "
      f"{len(production.feedback)} feedback reports")
production.manifest

# %% [markdown]
# ## The reference
#
# The champion bundle scores every hour of the training stations (for drift and prediction
# drift) and their validation and test months (held-out performance). Calibrated persistence
# fitted on the training months is the BSS baseline, as in the champion gate.

# %%
bundle = load_bundle(inputs.champion_dir / "bundle")
threshold = reference_period.served_threshold(bundle.card)
reference = reference_period.reference_from_processed(
    pd.read_parquet(inputs.processed_dir / "observations.parquet"),
    pd.read_parquet(inputs.processed_dir / "rows.parquet"), bundle, settings)
print(f"champion: {bundle.card.get('candidate')} version {bundle.version}; served threshold {threshold}")
pd.Series(reference.summary()).drop(["feature_drift_thresholds", "missing_share_thresholds",
                                     "stuck_run_hours"])

# %%
pd.DataFrame({"drift threshold (JS distance)": reference.drift_thresholds})

# %% [markdown]
# ## The verdict
#
# Realised performance first: a sustained performance alert recommends retraining, unless a
# data-quality alert on the cloud sensor (the label's source) explains it — then the sensor
# needs fixing, not the model. Drift alone is an early warning.

# %%
result = verdict.run(production, reference, settings.label, threshold, settings.monitor)
summary = result.summary()
print("status:", summary["status"])
print("retrain recommended:", summary["retrain_recommended"])
for reason in summary["reasons"]:
    print(" -", reason)
pd.DataFrame({s: {k: v for k, v in d.items() if k != "alerts"}
              for s, d in summary["stations"].items()}).T

# %% [markdown]
# ## Realised performance
#
# Per chunk: the Brier score of the served P(clear) once the truth arrived, and the Brier score
# those probabilities *promise* (mean p(1 − p): what it would be if they were calibrated). Their
# difference — the Brier excess — stays near zero while the model is right about its own
# uncertainty; it is averaged over the last weeks and compared with the threshold the reference
# chunks give.

# %%
fig = report.plot_performance(result)  # shown inline (a bare `;` line shows it twice under nbval)

# %%
result.performance.set_index(["station_id", "chunk"]).tail(12)

# %%
result.performance_by_horizon.set_index("horizon_h")

# %%
fig = report.plot_reliability(result)

# %% [markdown]
# ## Data quality and users' feedback
#
# Missing values per sensor and chunk (hours the feed never received count as missing), stuck
# sensors (one value repeated longer than anywhere in the reference), and users' reports
# against the cloud sensor: users see the real sky, so a broken sensor shows up as
# disagreement.

# %%
fig = report.plot_quality(result)

# %%
result.quality

# %%
result.feedback.set_index(["station_id", "chunk"]).tail(12)

# %% [markdown]
# ## Drift
#
# Each judged feature's Jensen–Shannon distance to the reference in each chunk, divided by its
# threshold (above 1 is above the threshold; an alert needs three chunks in a row). Features
# that only encode the clock and the place (hour, season, sun, latitude) are not judged.

# %%
for station in sorted(result.drift["station_id"].unique()) if len(result.drift) else [None]:
    report.plot_drift(result, station)

# %%
alerts = result.alerts()
pd.DataFrame(alerts["drift"])

# %% [markdown]
# ## Outputs

# %%
import matplotlib.pyplot as plt

reports.write_json(outputs.metrics_dir / "monitor.json", summary)
reports.write_csv(outputs.plots_dir / "monitor_performance.csv",
                  result.performance_alerts.merge(result.performance, how="outer",
                                                  on=["station_id", "chunk", "rows"])
                  if len(result.performance) else pd.DataFrame(
                      columns=["station_id", "chunk", "rows", "brier", "expected_brier",
                               "brier_excess", "window_excess", "threshold", "alert"]))
reports.write_csv(outputs.plots_dir / "monitor_drift.csv",
                  result.drift if len(result.drift) else pd.DataFrame(
                      columns=["station_id", "chunk", "feature", "distance", "threshold",
                               "above", "alert"]))
figures = outputs.figures_dir / "monitor"
figures.mkdir(parents=True, exist_ok=True)
for name, fig in [("performance", report.plot_performance(result)),
                  ("quality", report.plot_quality(result)),
                  ("drift", report.plot_drift(result)),
                  ("reliability", report.plot_reliability(result))]:
    fig.savefig(figures / f"{name}.png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
print("written:", (outputs.metrics_dir / "monitor.json").relative_to(outputs.root))
