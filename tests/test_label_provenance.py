"""Label provenance: the TMY source flags of the opaque sky cover, read at ingestion, counted
by the quality report, carried to the training rows and used by the split and the scores.

The expected values are read from the station files with the standard library (not pvlib, not
the project's reader), so a reader that dropped, shifted or misread the flag column fails."""

import csv
import io
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from starry_guide.core import evaluate, features, schema, splits
from starry_guide.ingest import stations


def _tmy3_flags(path):
    """(date, opaque-cover source flag) per record of a TMY3 CSV, by its header names."""
    lines = path.read_text(encoding="latin-1").splitlines()
    reader = csv.reader(io.StringIO("\n".join(lines[1:])))
    header = next(reader)
    date, flag = header.index("Date (MM/DD/YYYY)"), header.index("OpqCld source")
    return [(row[date], row[flag]) for row in reader]


def _tmy2_flags(path):
    """(month, year, opaque-cover source flag) per TMY2 record (fixed columns, TMY2 manual
    table 3-2, 1-based: year 2-3, month 4-5, opaque sky cover 64-65, its source flag 66)."""
    records = path.read_text(encoding="latin-1").splitlines()[1:]
    return [(int(r[3:5]), int(r[1:3]), r[65]) for r in records]


def test_tmy3_flags_become_label_origin(station_data, settings):
    data = station_data["greensboro_nc"]
    flags = _tmy3_flags(data.source)
    expected = ["observed" if f == "A" else "filled" for _, f in flags]
    assert data.frame[schema.LABEL_ORIGIN].tolist() == expected
    assert Counter(expected)["filled"] > 1000  # the file has B and E hours: not all observed


def test_tmy2_flags_become_label_origin(station_data):
    data = station_data["miami_fl"]
    flags = _tmy2_flags(data.source)
    expected = ["observed" if f == "A" else "filled" for _, _, f in flags]
    assert data.frame[schema.LABEL_ORIGIN].tolist() == expected
    years = {str(m): 1900 + y for m, y, _ in reversed(flags)}
    assert data.meta["source_years"] == years


def test_typical_year_months_keep_their_source_year(station_data):
    greensboro = station_data["greensboro_nc"]
    first_per_month = {}
    for date, _ in _tmy3_flags(greensboro.source):
        month, _, year = date.split("/")
        first_per_month.setdefault(str(int(month)), int(year))
    assert greensboro.meta["source_years"] == first_per_month
    assert len(set(first_per_month.values())) > 3  # months from many different years


def test_epw_sky_cover_has_no_flag_so_origin_is_unknown(tmp_path, station_data):
    from tests.station_files import write_epw

    greensboro = station_data["greensboro_nc"]
    path = write_epw(tmp_path / "spliced.epw", greensboro.frame, greensboro.meta)
    # splice like a typical year: each month from another year (EPW's first column)
    lines = path.read_text().splitlines()
    header, records = lines[:8], [line.split(",") for line in lines[8:]]
    for record in records:
        record[0] = str(1970 + int(record[1]))
    path.write_text("\n".join([*header, *(",".join(r) for r in records)]) + "\n")
    data = stations.read_station(str(path), tmp_path, 2001)
    assert set(data.frame[schema.LABEL_ORIGIN]) == {"unknown"}
    assert data.meta["source_years"] == {str(m): 1970 + m for m in range(1, 13)}


def test_quality_report_counts_label_hours_by_origin(station_data, settings):
    from tests.conftest import assess

    for station_id in ("sand_point_ak", "greensboro_nc", "miami_fl"):
        frame, report = assess(station_data[station_id], settings)
        counts = report.label_origin_hours
        assert sum(counts.values()) == report.usable_night_hours
        night = frame["sun_elevation_deg"] < settings.label.night_max_sun_elevation_deg
        usable = night & frame["opaque_cloud_tenths"].notna()
        assert counts["observed"] == int((usable & (frame["label_origin"] == "observed")).sum())
        assert report.as_dict()["source_years"] == station_data[station_id].meta["source_years"]
    _, sand_point = assess(station_data["sand_point_ak"], settings)
    # Sand Point's cover is observed in fewer than half of its night hours
    assert sand_point.label_origin_hours["observed"] < sand_point.label_origin_hours["filled"]


def test_a_source_without_flags_is_unknown(tmp_path, station_data, settings):
    from tests.conftest import assess

    data = station_data["greensboro_nc"]
    bare = replace(data, frame=data.frame.drop(columns=[schema.LABEL_ORIGIN]))
    frame, report = assess(bare, settings)
    assert report.usable
    assert set(frame[schema.LABEL_ORIGIN]) == {"unknown"}
    assert report.label_origin_hours["unknown"] == report.usable_night_hours


@pytest.fixture(scope="module")
def rows(observations, settings):
    return features.supervised_rows(observations, settings.label, settings.features)


def test_rows_carry_the_target_hours_origin(rows, observations):
    origin = observations.set_index(["station_id", "time"])[schema.LABEL_ORIGIN]
    expected = origin.reindex(pd.MultiIndex.from_arrays([rows["station_id"],
                                                         rows["target_time"]])).to_numpy()
    assert (rows["target_label_origin"].to_numpy() == expected).all()
    assert set(rows["target_label_origin"]) == {"observed", "filled"}  # pvlib: TMY2, TMY3


def test_filled_labels_are_excluded_from_training_only_when_asked(rows, settings):
    kept = splits.assign_splits(rows, settings.split)
    assert settings.split.train_on_filled_labels
    assert not (kept == "excluded").any()
    dropped = splits.assign_splits(rows, replace(settings.split, train_on_filled_labels=False))
    filled = rows["target_label_origin"] == "filled"
    changed = kept != dropped
    # exactly the filled training rows move, to `excluded`; evaluation splits do not change
    assert changed.sum() > 0
    assert (changed == (filled & (kept == "train"))).all()
    assert set(dropped[changed]) == {"excluded"}


def test_skill_by_group_matches_a_direct_computation():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    p, ref = rng.random(500), rng.random(500)
    groups = np.where(rng.random(500) < 0.3, "filled", "observed")
    table = evaluate.skill_by_group(y, p, ref, groups)
    for name in ("filled", "observed"):
        mask = groups == name
        brier, brier_ref = np.mean((p[mask] - y[mask]) ** 2), np.mean((ref[mask] - y[mask]) ** 2)
        assert table.loc[name, "brier"] == pytest.approx(brier)
        assert table.loc[name, "bss"] == pytest.approx(1 - brier / brier_ref)
        assert table.loc[name, "rows"] == mask.sum()
