"""Ingestion catches a station file whose latitude has the wrong sign when its own seasons
can tell (real station files, re-written with the sign flipped), and says nothing when they
cannot."""

from __future__ import annotations

import pytest

from starry_guide.ingest import stations
from tests.station_files import write_csv, write_epw


@pytest.mark.parametrize("station", ["greensboro_nc", "sand_point_ak", "miami_fl"])
def test_a_flipped_latitude_sign_is_rejected(station, station_data, settings, tmp_path):
    data = station_data[station]
    meta = data.meta
    good = write_epw(tmp_path / "good.epw", data.frame, meta)
    _, report = stations.check_station(str(good), settings)
    assert report.verdict == "usable", report.reasons
    flipped = write_epw(tmp_path / "flipped.epw", data.frame,
                        {**meta, "latitude": -meta["latitude"]})
    _, report = stations.check_station(str(flipped), settings)
    assert report.verdict == "rejected"
    reason = next(r for r in report.reasons if "'latitude'" in r)
    assert "flipped.epw" in reason and "sign flipped" in reason
    assert f"{-meta['latitude']:g}" in reason


def test_a_flipped_latitude_is_not_judged_from_a_few_months(station_data, settings,
                                                            tmp_path):
    """Four months of data carry no seasonal cycle to judge by: not rejected for it."""
    data = station_data["greensboro_nc"]
    frame = data.frame[data.frame["time"].dt.month.isin([5, 6, 7, 8])]
    path = write_csv(tmp_path / "summer.csv", frame,
                     {**data.meta, "latitude": -data.meta["latitude"]})
    _, report = stations.check_station(str(path), settings)
    assert not any("'latitude'" in r for r in report.reasons), report.reasons
