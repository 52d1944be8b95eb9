"""The `stations` stage's folder: pvlib's files copied with their hashes, the manifest
checked, a tampered file caught. (The real wheel download runs in tests/e2e.)"""

from __future__ import annotations

import hashlib
import json

import pytest

from starry_guide.ingest import packaged, stations


def test_pvlib_files_are_copied_with_their_hashes(tmp_path):
    manifest = packaged.build(tmp_path / "packaged", [])
    entry = manifest["sources"]["pvlib"]
    assert sorted(entry["files"]) == sorted(packaged.PVLIB_FILES)
    for name, record in entry["files"].items():
        original = (stations.pvlib_data_dir() / name).read_bytes()
        assert record["sha256"] == hashlib.sha256(original).hexdigest()
        assert (tmp_path / "packaged" / "pvlib" / name).read_bytes() == original
    on_disk = json.loads((tmp_path / "packaged" / packaged.MANIFEST).read_text())
    assert on_disk == manifest
    assert str(tmp_path) not in json.dumps(on_disk)  # no machine-specific paths
    assert packaged.verify(tmp_path / "packaged") == manifest


def test_a_changed_file_is_caught_and_names_the_remedy(tmp_path):
    packaged.build(tmp_path / "packaged", [])
    victim = tmp_path / "packaged" / "pvlib" / "12839.tm2"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(packaged.PackagedDataError, match=r"12839\.tm2.*dvc repro -f stations"):
        packaged.verify(tmp_path / "packaged")


def test_a_missing_folder_says_to_run_the_stage(tmp_path):
    with pytest.raises(packaged.PackagedDataError, match="dvc repro stations"):
        packaged.verify(tmp_path / "nothing")


def test_builtin_stations_read_from_the_stage_folder(tmp_path):
    packaged.build(tmp_path / "packaged", [])
    b = stations.BUILTIN_STATIONS["greensboro_nc"]
    assert stations.builtin_path(b, tmp_path) == tmp_path / "packaged" / "pvlib" / b.filename
    data = stations.read_station("greensboro_nc", tmp_path, 2001)
    assert data.label == "pvlib/723170TYA.CSV"
    with pytest.raises(stations.StationFileError, match=r"golden_co.*dvc repro stations"):
        stations.read_station("golden_co", tmp_path, 2001)


def test_uv_index_settings_reach_pip(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("UV_DEFAULT_INDEX", "https://mirror.example/simple")
    assert packaged._pip_environment()["PIP_INDEX_URL"] == "https://mirror.example/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://pip.example/simple")
    assert packaged._pip_environment()["PIP_INDEX_URL"] == "https://pip.example/simple"
