"""Batch scoring: the same features and bundle as training and the API; Dask equals local."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from starry_guide.artifacts.bundle import load_bundle
from starry_guide.core.schema import WEATHER_COLUMNS
from starry_guide.tools import batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def input_frame(observations) -> pd.DataFrame:
    """Two real stations, one month each, as a user's file would hold them."""
    parts = []
    for station, start in (("greensboro_nc", 2000), ("miami_fl", 6000)):
        part = observations[observations["station_id"] == station].iloc[start:start + 700]
        parts.append(part[["station_id", "time", "latitude", "longitude", "elevation_m",
                           *WEATHER_COLUMNS]])
    frame = pd.concat(parts, ignore_index=True)
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    return frame


def test_local_scores_equal_training_rows(input_frame, bundle_dir, rows):
    loaded = load_bundle(bundle_dir)
    frame, problems = batch.check_rows(input_frame, "input")
    assert problems.rows == []
    scores = batch.score_local(frame, loaded, chunk_hours=150, progress=False)
    # every (station, hour) with enough history, times every horizon, exactly once
    assert not scores.duplicated(["station_id", "time", "horizon_h"]).any()
    # rows also built in training get the same P(clear) as the bundle gives training rows
    merged = scores.merge(rows, on=["station_id", "time", "horizon_h"])
    assert len(merged) > 1000
    np.testing.assert_allclose(merged["p_clear"], loaded.predict(merged), atol=1e-6)


def test_chunking_does_not_change_scores(input_frame, bundle_dir):
    loaded = load_bundle(bundle_dir)
    frame, _ = batch.check_rows(input_frame, "input")
    small = batch.score_local(frame, loaded, chunk_hours=97, progress=False)
    whole = batch.score_local(frame, loaded, chunk_hours=10_000, progress=False)
    pd.testing.assert_frame_equal(small.reset_index(drop=True), whole.reset_index(drop=True))


@pytest.fixture(scope="module")
def dask_cluster():
    with batch.dask_client(n_workers=2) as client:
        yield client


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_dask_equals_local(input_frame, bundle_dir, tmp_path, dask_cluster, suffix):
    frame, _ = batch.check_rows(input_frame, "input")
    local = batch.score_local(frame, load_bundle(bundle_dir), progress=False)
    source = tmp_path / f"obs{suffix}"
    if suffix == ".csv":
        input_frame.to_csv(source, index=False)
    else:
        input_frame.to_parquet(source, index=False)
    target = tmp_path / "scores.parquet"
    # small blocks: the workers read the file in several parts and a shuffle regroups them
    assert batch.check_dask(source, blocksize=40_000).rows == []
    n_scores, n_stations = batch.score_dask(source, target, bundle_dir, blocksize=40_000)
    distributed = pd.read_parquet(target)
    assert (n_scores, n_stations) == (len(local), 2) == (len(distributed), 2)
    key = ["station_id", "time", "horizon_h"]
    local = local.sort_values(key).reset_index(drop=True)
    distributed = distributed.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(local[key], distributed[key], check_dtype=False)
    np.testing.assert_allclose(local["p_clear"], distributed["p_clear"], atol=1e-7)


def test_dask_reports_bad_rows_by_file_row_number(input_frame, tmp_path, dask_cluster):
    bad = input_frame.copy()
    bad.loc[1200, "relative_humidity"] = 130
    # the same station and hour again, far away in the file: another partition
    bad = pd.concat([bad, bad.iloc[[3]]], ignore_index=True)
    source = tmp_path / "obs.csv"
    bad.to_csv(source, index=False)
    problems = batch.check_dask(source, blocksize=40_000)
    assert problems.rows == [1201, len(bad)]
    assert "row 1201: field 'relative_humidity' = 130 is outside" in problems.messages[0]
    assert f"row {len(bad)}: station 'greensboro_nc' already has an observation" in \
        problems.messages[1]


def test_bad_rows_are_reported_by_number(input_frame):
    bad = input_frame.copy()
    bad.loc[4, "time"] = "yesterday"
    bad.loc[9, "relative_humidity"] = 130
    bad.loc[12, "time"] = "2071-03-01T05:00:00+00:00"  # beyond the bundled ephemeris
    frame, problems = batch.check_rows(bad, "input.csv")
    assert problems.rows == [5, 10, 13]
    assert "row 5: field 'time' = 'yesterday'" in problems.messages[0]
    assert "row 13: field 'time' = '2071-03-01T05:00:00+00:00' is outside" in \
        problems.messages[1]
    assert "row 10: field 'relative_humidity' = 130" in problems.messages[2]
    assert len(frame) == len(bad) - 3


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_cli_fails_or_skips_bad_rows_never_silently(input_frame, bundle_dir, tmp_path, engine):
    bad = input_frame.copy()
    bad.loc[4, "opaque_cloud_tenths"] = 12
    source = tmp_path / "obs.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "scores.parquet"
    cmd = [sys.executable, "-m", "starry_guide.cli", "score", str(source), str(out),
           "--bundle", str(bundle_dir), "--engine", engine, "--workers", "1"]
    failed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "row 5: field 'opaque_cloud_tenths' = 12" in failed.stderr
    assert not out.exists()  # nothing half-written
    skipped = subprocess.run([*cmd, "--on-bad-rows", "skip"], cwd=ROOT, capture_output=True,
                             text=True)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipping 1 bad row(s)" in skipped.stderr
    scores = pd.read_parquet(out)
    assert set(scores["station_id"]) == {"greensboro_nc", "miami_fl"}
