"""Refresh the committed production snapshot (``data/production/``) from real traffic.

Starts ``starry serve`` on the champion bundle with a fresh SQLite serving store, plays real
stations into it with ``starry replay`` (as feeders would, with users' feedback), stops the
server, and writes ``starry store snapshot --out data/production``. Run by
``make production-snapshot``. By default: 16 weeks of Greensboro as recorded, and the same
16 weeks of Miami whose cloud sensor sticks on 5 March (see :data:`DEFAULT`); arguments
after ``--`` replace them with one ``starry replay`` of your own:

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


def main(replays: list[list[str]]) -> int:
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
        finally:
            server.stop(timeout=30)
        return subprocess.run([*STARRY, "store", "snapshot", "--store", store, "--out",
                               "data/production"], cwd=ROOT).returncode


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    sys.exit(main([args] if args else DEFAULT))
