"""How to run the pipeline's independent model fits at once: threads vs processes vs one at a time.

The `select` stage's leave-one-station-out refits (the champion's recipe under the input
profiles, and the persistence blend's, as `select.loso_challenger: true` adds it) run three
ways in the same run, on the workspace's `data/processed` (run `make repro` first):

- **one at a time** (`workers: 1`, the baseline);
- **2 processes** — joblib's ``loky`` workers, each task with BLAS at one thread: how
  `starry_guide.pipeline.parallel` ran them before it switched to threads;
- **2 threads** — `starry_guide.pipeline.parallel.parallel(2)`, what the pipeline runs now.

Each way in a fresh Python process (so none inherits warmed-up workers or imports from
another), alternating over ``--rounds`` rounds; the predictions of every way are compared
bit for bit with the baseline's. Results go to `benchmarks/results/parallel_fits.json`.

    python benchmarks/parallel_fits.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("persistence_logistic", "persistence_blend")
WAYS = ("one at a time", "2 processes", "2 threads")

# one way, one recipe, in a child process: prints the seconds, pickles the predictions
CHILD = r"""
import pickle, sys, time
import pandas as pd
from joblib import Parallel
from starry_guide.config import load_settings
from starry_guide.core import models
from starry_guide.pipeline import loso, parallel, profiles

way, recipe, out = sys.argv[1], sys.argv[2], sys.argv[3]
settings = load_settings()
rows = pd.read_parquet(settings.paths.processed_dir / "rows.parquet")
observations = pd.read_parquet(settings.paths.processed_dir / "observations.parquet")
frames = (profiles.profile_rows(observations, rows, settings)
          if recipe == "persistence_logistic" else {"full": rows})
model = models.build_candidate(recipe, settings.train.params_for(recipe), settings.seed,
                               settings.label.clear_max_opaque_tenths)
if way == "2 processes":  # the previous implementation: loky workers, BLAS limited per task
    from threadpoolctl import threadpool_limits

    def limited(function):
        def run(*args, **kwargs):
            with threadpool_limits(limits=1, user_api="blas"):
                return function(*args, **kwargs)
        return run

    loso._fit_and_predict = limited(loso._fit_and_predict)
    loso.parallel = lambda workers: Parallel(n_jobs=workers, backend="loky")
workers = 1 if way == "one at a time" else 2
start = time.perf_counter()
result = loso.leave_one_station_out_by_profile(frames, model, settings, recipe, workers=workers)
seconds = time.perf_counter() - start
pickle.dump({name: r.rows for name, r in result.items()}, open(out, "wb"))
print(seconds)
"""


def run(way: str, recipe: str, out: Path) -> float:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", CHILD, way, recipe, str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{way} / {recipe} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (ROOT / "data" / "processed" / "rows.parquet").is_file():
        raise SystemExit("no data/processed/rows.parquet: run `make repro` first")
    load_before = os.getloadavg()
    seconds: dict[str, dict[str, list[float]]] = {r: {w: [] for w in WAYS} for r in RECIPES}
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for recipe in RECIPES:
                outputs = {}
                for way in WAYS:
                    outputs[way] = Path(tmp) / f"{recipe}-{round_}-{WAYS.index(way)}.pkl"
                    seconds[recipe][way].append(run(way, recipe, outputs[way]))
                baseline = pd.read_pickle(outputs[WAYS[0]])
                for way in WAYS[1:]:
                    other = pd.read_pickle(outputs[way])
                    for name, frame in baseline.items():
                        try:
                            pd.testing.assert_frame_equal(frame, other[name], check_exact=True)
                        except AssertionError:
                            identical = False
                            print(f"DIFFERENT: {recipe}, {way}, profile {name}")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "seconds": {r: {w: [round(s, 2) for s in v] for w, v in per.items()}
                    for r, per in seconds.items()},
        "predictions_identical": identical,
    }
    out = ROOT / "benchmarks" / "results" / "parallel_fits.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| recipe (8 leave-one-station-out refits) | " + " | ".join(WAYS) + " |")
    print("|---|" + "---|" * len(WAYS))
    for recipe, per in seconds.items():
        print(f"| {recipe} | " + " | ".join(
            "/".join(f"{s:.1f}" for s in per[w]) for w in WAYS) + " |")
    print(f"\npredictions identical: {identical}; load {results['load_average_before_after']}; "
          f"{results['machine']}; written to {out.relative_to(ROOT)}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
