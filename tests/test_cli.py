"""The `starry` command as users call it (a real subprocess)."""

import subprocess
import sys
from pathlib import Path

from tests.station_files import write_csv

ROOT = Path(__file__).resolve().parents[1]
STARRY = [sys.executable, "-m", "starry_guide.cli"]


def starry(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*STARRY, *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_validate_usable_files_exit_zero():
    result = starry("validate", "greensboro_nc", "miami_fl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("USABLE") == 2
    assert "usable night hours" in result.stdout


def test_validate_reports_each_file_and_fails_on_a_bad_one(tmp_path, station_data):
    data = station_data["greensboro_nc"]
    bad = write_csv(tmp_path / "nocloud.csv", data.frame, data.meta,
                    drop=("opaque_cloud_tenths",))
    result = starry("validate", "sand_point_ak", str(bad))
    assert result.returncode == 1
    assert "703165TY.csv: USABLE" in result.stdout
    assert "dropped   pressure_hpa: stuck at 1012" in result.stdout
    assert "nocloud.csv: REJECTED" in result.stdout
    assert "'opaque_cloud_tenths'" in result.stdout


def test_help_lists_the_commands():
    result = starry("--help")
    for command in ("stage", "validate", "docs", "summary", "notebooks"):
        assert command in result.stdout


def test_champion_show_says_whether_the_registry_holds_the_tracked_champion(tmp_path):
    import json
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = subprocess.run([*STARRY, "champion", "show"], cwd=ROOT, capture_output=True,
                            text=True, check=False, env=env)
    tracked = json.loads((ROOT / "models/champion/champion.json").read_text())
    assert result.returncode == 1, result.stderr  # an empty registry: `make repro` registers it
    assert f"(model {tracked['model_id']})" in result.stdout
    assert "registry @champion: none" in result.stdout
    (tmp_path / "bad.db").write_text("not a database")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'bad.db'}"
    unreadable = subprocess.run([*STARRY, "champion", "show"], cwd=ROOT, capture_output=True,
                                text=True, check=False, env=env)
    assert unreadable.returncode == 3 and unreadable.stderr.strip()
