"""Refresh the committed production snapshot (``data/production/``) from real traffic.

Starts ``starry serve`` on the champion bundle with a fresh SQLite serving store, plays real
stations into it with ``starry replay`` (as feeders would, with users' feedback), stops the
server, and writes ``starry store snapshot --out data/production``. Run by
``make production-snapshot``. By default: 16 weeks of Greensboro as recorded, and the same
16 weeks of Miami whose cloud sensor sticks on 5 March (see :data:`DEFAULT`), then two real
METAR stations with ``starry metar feed`` (:data:`METAR_STATIONS`: Atlanta 2020-01-01 ..
02-22 and Lincoln NE 2023-01-01 .. 02-26, NOAA LCD files the ``stations`` stage fetched);
arguments after ``--`` replace the replays with one ``starry replay`` of your own:

    python scripts/production_snapshot.py -- greensboro_nc --start 2001-01-01 --hours 4368
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from starry_guide.serve import launch
from starry_guide.serve.launch import STARRY

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--start", "2001-01-01", "--hours", str(16 * 168), "--feedback-rate", "0.2",
          "--feedback-error", "0.1", "--seed", "1"]
DEFAULT = [["greensboro_nc", *COMMON],
           ["miami_fl", *COMMON, "--fault", "stuck-cloud-sensor@2001-03-05"]]
#: real METAR stations: the LCD files of the ``stations`` stage (params.yaml metar_stations)
METAR_STATIONS = [ROOT / "data/raw/packaged/noaa-weather-hourly" / name
                  for name in ("3876540.csv", "LCD_USW00014939_2020.csv")]


def main(replays: list[list[str]], metar_files: list[Path]) -> int:
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "STARRY_FEED_TOKEN": token}
    with tempfile.TemporaryDirectory(prefix="starry-production-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'store.sqlite'}"
        try:
            server = launch.start(ROOT / "models/champion/bundle", store, cwd=ROOT,
                                  env={"STARRY_FEED_TOKEN": token},
                                  log=Path(tmp) / "server.log", timeout=60)
        except launch.ServerFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        try:
            for replay_args in replays:
                print("starry replay " + " ".join(replay_args), flush=True)
                replay = subprocess.run([*STARRY, "replay", *replay_args, "--url", server.url],
                                        cwd=ROOT, env=env)
                if replay.returncode != 0:
                    return replay.returncode
            for path in metar_files:
                if not path.is_file():
                    print(f"{path} is missing: run `dvc repro stations` first", file=sys.stderr)
                    return 1
                print(f"starry metar feed --source {path.relative_to(ROOT)}", flush=True)
                fed = subprocess.run([*STARRY, "metar", "feed", "--source", str(path), "--url",
                                      server.url], cwd=ROOT, env=env)
                if fed.returncode != 0:
                    return fed.returncode
        finally:
            server.stop(timeout=30)
        return subprocess.run([*STARRY, "store", "snapshot", "--store", store, "--out",
                               "data/production"], cwd=ROOT).returncode


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    sys.exit(main([args], []) if args else main(DEFAULT, METAR_STATIONS))
