"""Production observations as a data source, the stuck-sensor rule and station adaptation —
on the committed store snapshot (data/production: 16 weeks of Greensboro, and of Miami with a
cloud sensor stuck from early March, replayed; Atlanta and Lincoln, two real METAR stations)."""

import numpy as np
import pandas as pd
import pytest

from starry_guide.config import load_settings
from starry_guide.core import adaptation, features, quality
from starry_guide.pipeline import production


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def checked(settings):
    return production.check_snapshot(settings)


def test_snapshot_stations_are_assessed_like_station_files(checked):
    frames, reports = checked
    assert [r.station_id for r in reports] == ["KATL", "KLNK", "greensboro_nc", "miami_fl"]
    assert all(r.kind == "production" and r.usable for r in reports)
    *metar_stations, clean, stuck = reports
    assert not any(x["column"] == "opaque_cloud_tenths" for x in clean.repairs)
    # METAR stations: no precipitable water in any hour, dropped as a feature, never invented
    for report in metar_stations:
        assert any(d["column"] == "precipitable_water_cm" for d in report.dropped_features)
        assert report.usable_night_hours > 500
    # the replayed fault: cover frozen from early March on; the rule takes the label away
    rule = next(x for x in stuck.repairs if "stuck sensor" in x["rule"])
    assert rule["count"] > 1000 and rule["since"].startswith("2001-03")
    miami = frames[3]
    after = miami["time"] >= pd.Timestamp(rule["since"])
    assert miami.loc[after, "opaque_cloud_tenths"].isna().all()
    assert miami.loc[~after, "opaque_cloud_tenths"].notna().any()


def test_stuck_rule_spares_natural_runs():
    # 105 h of clear sky (San Francisco's longest natural run) stays; 200 h of one value goes
    values = np.r_[np.zeros(105), np.arange(10.0), np.full(200, 8.0), [1.0, np.nan, 1.0]]
    mask = quality.stuck_runs(values, 168)
    assert not mask[:115].any() and mask[115:315].all() and not mask[315:].any()


def test_production_rows_split_by_time_and_never_train_on_validation_months(settings, checked):
    frames, _ = checked
    rows = features.supervised_rows(pd.concat(frames, ignore_index=True), settings.label,
                                    settings.features)
    rows["split"] = production.assign_splits(rows, settings)
    window = pd.Timedelta(days=settings.production.recent_window_days)
    for _, part in rows.groupby("station_id"):
        latest = part["target_time"].max()
        recent = part[part["split"] == "recent"]
        assert (recent["target_time"] > latest - window).all()
        assert (part.loc[part["split"] != "recent", "target_time"] <= latest - window).all()
    months = rows.loc[rows["split"] == "train", "segment"] % 100
    assert not months.isin([*settings.split.validation_months,
                            *settings.split.held_out_months]).any()
    assert (rows["split"] == "excluded").any()


def test_unreadable_snapshot_names_the_file(tmp_path):
    (tmp_path / "observations.parquet").write_text("not parquet")
    (tmp_path / "stations.parquet").write_text("not parquet")
    with pytest.raises(production.ProductionDataError, match="observations.parquet"):
        production.read_snapshot(tmp_path)
    assert production.read_snapshot(tmp_path / "absent")[0].empty


def test_station_map_learns_a_changed_sky_and_leaves_a_calm_one():
    rng = np.random.default_rng(3)
    n = 24 * 60
    p = rng.uniform(0.05, 0.95, n)
    rows = pd.DataFrame({"station_id": np.repeat(["same", "clouded"], n // 2),
                         "night": np.tile(np.repeat(np.arange(30), 24), 2)})
    y = (rng.random(n) < p).astype(int)
    y[n // 2:] = (rng.random(n // 2) < 0.05).astype(int)  # the second station clouded over
    rows["clear"] = y
    maps = adaptation.fit_station_maps(rows, p, min_nights=7)
    assert abs(maps["same"]["a"]) < 0.15 and abs(maps["same"]["b"] - 1) < 0.15
    assert maps["clouded"]["a"] < -0.4 and maps["clouded"]["b"] < 0.9
    adapted = adaptation.apply_station_maps(p, rows["station_id"], maps)
    brier = lambda q, s: np.mean((q[s] - y[s]) ** 2)  # noqa: E731
    clouded = rows["station_id"].to_numpy() == "clouded"
    assert brier(adapted, clouded) < 0.6 * brier(p, clouded)
    assert abs(brier(adapted, ~clouded) - brier(p, ~clouded)) < 0.005
    assert adaptation.fit_station_maps(rows, p, min_nights=31) == {}
    assert adaptation.adapted_id("abc", {}) == "abc"
    one = {"same": maps["same"]}
    assert adaptation.adapted_id("abc", maps) != adaptation.adapted_id("abc", one)
