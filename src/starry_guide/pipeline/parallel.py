"""Independent model fits run at once, with results that do not depend on how many.

The pipeline's refits (leave one station out: one per station; training's candidates and
search trials) are independent and each is deterministic, so running ``workers`` of them at
once changes only the wall time: joblib returns the results in task order, whatever
finished first.

**Threads, not processes.** A fit spends its time in NumPy, BLAS, SciPy and scikit-learn's
Cython/OpenMP code, which release the GIL. Worker *processes* (joblib's ``loky``) paid for
themselves less than they cost on this pipeline: each started, imported scikit-learn and
warmed up (~3.5 s a process), and every task's rows were pickled and memory-mapped across
(~0.5 s a task). `make bench-fits` (benchmarks/parallel_fits.py; 2 cores, load 1.1-1.8, two
rounds), eight leave-one-station-out refits: the persistence logistic under the input profiles
one at a time 20.4/18.4 s, 2 processes 15.5/18.4 s, 2 threads 11.5/13.7 s; the persistence
blend 16.5/18.0, 17.5/16.3, 14.1/12.3 s — predictions bit-identical every way.

One thing could still tie a result to the worker count: the number of threads a fit uses.
OpenBLAS splits a matrix product differently with one thread than with two, and the
Newton-Cholesky logistic regressions then differ in the last bits (1e-15) — measured; the
histogram boosting's OpenMP threads do not change its result (tests/test_parallel.py). So
:func:`parallel` runs its tasks with BLAS limited to one thread — for the whole call, as
OpenBLAS's thread count is one setting for the whole process — which also makes the fits
independent of the machine's core count. OpenMP's thread count is per calling thread: each
task gets ``cores // workers`` of them (at least one), so two fits on two cores do not fight.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits


class _LimitedParallel:
    """:class:`joblib.Parallel` on threads, BLAS at one thread and each task's OpenMP at
    ``openmp_threads`` for the duration of one call."""

    def __init__(self, workers: int):
        self.workers = workers
        self.openmp_threads = max(1, (os.cpu_count() or 1) // workers)

    def _limited(self, task: tuple) -> Any:
        function, args, kwargs = task
        # OpenMP's thread count is a per-thread setting: set it in the thread that runs the task
        with threadpool_limits(limits=self.openmp_threads, user_api="openmp"):
            return function(*args, **kwargs)

    def __call__(self, tasks: Iterable[tuple]) -> list:
        with threadpool_limits(limits=1, user_api="blas"):
            return Parallel(n_jobs=self.workers, backend="threading")(
                delayed(self._limited)(task) for task in tasks)


def parallel(workers: int) -> _LimitedParallel:
    """Run ``joblib.delayed`` tasks ``workers`` at a time (1: one after another), in
    threads of this process, results in task order: ``parallel(2)(delayed(f)(x) for x in
    xs)``.

    Raises
    ------
    ValueError
        when ``workers`` is not a positive whole number.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return _LimitedParallel(workers)
