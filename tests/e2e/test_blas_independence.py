"""The `prepare` stage's outputs do not depend on the BLAS kernel or its thread count.

OpenBLAS picks its kernel by CPU (``OPENBLAS_CORETYPE`` overrides the choice) and splits work
between threads; kernels add in different orders, so a stored number that goes through a BLAS
matrix product changes in its last bits from one machine to another. Skyfield's nutation
series was one (``numpy.dot``): moon and sun elevations in ``observations.parquet`` differed
between a Haswell and a SkylakeX kernel, and so did ``data/processed``'s hash in dvc.lock.
The real stage runs in two copies of the project under two kernels and thread counts; every
output it declares in dvc.yaml must come out byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from starry_guide.ingest import packaged
from starry_guide.pipeline.refresh import copy_project
from starry_guide.pipeline.stage import declared_outputs
from tests.support.project import run

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e

#: two OpenBLAS kernels on x86-64 (generic SSE without FMA; AVX2 with FMA) and thread counts
SETTINGS = ({"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1"},
            {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2"})


def blas_kernel(env: dict) -> str:
    """The kernel NumPy's OpenBLAS runs under ``env`` (threadpoolctl's ``architecture``)."""
    code = ("import numpy, threadpoolctl; print(sorted({i.get('architecture', '?') for i in "
            "threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas' and "
            "'numpy' in i['filepath']}))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def output_digests(copy: Path) -> dict[str, str]:
    """sha256 of every file the stage declares (folders: each file in them)."""
    digests = {}
    for declared in declared_outputs(copy, "prepare"):
        path = copy / declared
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digests[file.relative_to(copy).as_posix()] = hashlib.sha256(
                file.read_bytes()).hexdigest()
    return digests


def test_prepare_outputs_are_identical_whatever_the_blas_kernel(tmp_path):
    envs = [{**os.environ, **setting, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
             "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / f'mlflow{i}.db'}"}
            for i, setting in enumerate(SETTINGS)]
    kernels = [blas_kernel(env) for env in envs]
    if kernels[0] == kernels[1]:
        pytest.skip(f"OpenBLAS runs the same kernel {kernels[0]} under {SETTINGS} here")
    results = []
    for i, env in enumerate(envs):
        copy = tmp_path / f"project{i}"
        copy_project(ROOT, copy)
        packaged.ensure(copy)  # a fresh clone has not run the stations stage
        run([str(BIN / "starry"), "stage", "prepare"], copy, env, timeout=600)
        results.append(output_digests(copy))
    assert "data/processed/observations.parquet" in results[0]
    assert results[0].keys() == results[1].keys()
    differ = sorted(name for name in results[0] if results[0][name] != results[1][name])
    assert not differ, (f"outputs differ between kernels {kernels[0]} ({SETTINGS[0]}) and "
                        f"{kernels[1]} ({SETTINGS[1]}): {', '.join(differ)}")
