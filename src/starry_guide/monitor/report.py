"""The monitoring figures (matplotlib; the notebook shows them, the docs embed them)."""

from __future__ import annotations

import pandas as pd

from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.monitor.checks import hourly_grid
from starry_guide.monitor.statistics import NO_TRAFFIC, chunk_start
from starry_guide.monitor.verdict import MonitorResult

# --------------------------------------------------------------------------- figures


def _empty_figure(title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2))
    ax.text(0.5, 0.5, NO_TRAFFIC, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def plot_performance(result: MonitorResult):
    """Realised vs promised Brier score per chunk, and the trailing Brier excess against its
    reference threshold, one line per station; alerted chunks marked."""
    import matplotlib.pyplot as plt

    title = "Realised performance over time"
    if not len(result.performance):
        return _empty_figure(title)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for station, part in result.performance.groupby("station_id"):
        when = pd.to_datetime(part["chunk"])
        line, = top.plot(when, part["brier"], marker=".", label=f"{station}: realised")
        top.plot(when, part["expected_brier"], linestyle=":", color=line.get_color(),
                 label=f"{station}: promised")
    alerts = result.performance_alerts
    for station, part in alerts.groupby("station_id"):
        when = pd.to_datetime(part["chunk"])
        line, = bottom.plot(when, part["window_excess"], marker=".", label=station)
        bottom.plot(when, part["threshold"], linestyle="--", color=line.get_color(), alpha=0.6)
        hit = part["alert"].to_numpy(dtype=bool)
        bottom.scatter(when[hit], part["window_excess"][hit], color="red", zorder=3, s=30)
    top.set(ylabel="Brier score", title=title)
    top.legend(fontsize="x-small", ncol=2)
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set(ylabel="Brier excess (trailing mean)", xlabel="chunk (week starting)")
    bottom.legend(fontsize="x-small", title="dashed: threshold; red: alert",
                  title_fontsize="x-small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_drift(result: MonitorResult, station: str | None = None):
    """Feature drift over time: each feature's JS distance as a multiple of its threshold
    (above 1 = above the threshold), one row per feature, one column per chunk."""
    import matplotlib.pyplot as plt

    title = "Feature drift over time (distance / threshold)"
    drift = result.drift
    if not len(drift):
        return _empty_figure(title)
    station = station or sorted(drift["station_id"].unique())[0]
    part = drift[drift["station_id"] == station]
    ratio = (part["distance"] / part["threshold"]).to_numpy()
    table = part.assign(ratio=ratio).pivot(index="feature", columns="chunk", values="ratio")
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(table) + 1.5))
    image = ax.imshow(table.to_numpy(), aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=2)
    ax.set_yticks(range(len(table)), table.index, fontsize="x-small")
    step = max(1, len(table.columns) // 12)
    ax.set_xticks(range(0, len(table.columns), step), table.columns[::step], rotation=45,
                  ha="right", fontsize="x-small")
    fig.colorbar(image, ax=ax, label="distance / threshold")
    ax.set_title(f"{title}: {station}")
    fig.tight_layout()
    return fig


def plot_quality(result: MonitorResult):
    """Missing-value share per chunk and sensor for each station (grid of received hours)."""
    import matplotlib.pyplot as plt

    title = "Missing values per sensor over time"
    obs = result.production.observations
    if not len(obs):
        return _empty_figure(title)
    grid = hourly_grid(obs)
    grid["chunk"] = chunk_start(grid["time"]).to_numpy()
    stations = sorted(grid["station_id"].unique())
    fig, axes = plt.subplots(len(stations), 1, figsize=(9, 2.5 * len(stations)), squeeze=False)
    for ax, station in zip(axes[:, 0], stations, strict=True):
        part = grid[grid["station_id"] == station]
        shares = part[list(WEATHER_COLUMNS)].isna().groupby(part["chunk"]).mean()
        ax.plot(pd.to_datetime(shares.index), shares.mean(axis=1), color="black",
                linestyle=":", label="mean over sensors")
        for sensor in shares.columns:
            if shares[sensor].max() > 0:
                ax.plot(pd.to_datetime(shares.index), shares[sensor], marker=".", label=sensor)
        stuck = result.quality[(result.quality["station_id"] == station)
                               & (result.quality["kind"] == "stuck")] \
            if len(result.quality) else result.quality
        for chunk in pd.unique(stuck["chunk"]) if len(stuck) else []:
            ax.axvspan(pd.Timestamp(chunk), pd.Timestamp(chunk) + pd.Timedelta(days=7),
                       color="red", alpha=0.1)
        ax.set(ylabel="missing share", ylim=(-0.02, 1.02), title=f"{title}: {station} "
               "(red: stuck-sensor alert)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_reliability(result: MonitorResult):
    """Observed clear rate against served P(clear) over all labelled production traffic."""
    import matplotlib.pyplot as plt

    title = "Reliability on production traffic"
    if not len(result.reliability):
        return _empty_figure(title)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.plot(result.reliability["predicted"], result.reliability["observed"], marker="o")
    ax.set(xlabel="served P(clear)", ylabel="observed clear rate", title=title,
           xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    return fig
