"""Independent model fits in parallel processes, with results that do not depend on how many.

The pipeline's refits (leave one station out: one per station; training's candidates and
search trials) are independent and each is deterministic, so running them in ``workers``
processes changes only the wall time: joblib returns the results in task order, whatever
finished first.

One thing could still tie a result to the worker count: the number of threads a fit uses.
OpenBLAS splits a matrix product differently with one thread than with two, and the
Newton-Cholesky logistic regressions then differ in the last bits (1e-15) — measured; the
histogram boosting's OpenMP threads do not change its result (tests/test_parallel.py). So
every task runs under :func:`task_threads` — BLAS limited to one thread, in a worker process
and in this one alike — which also makes the fits independent of the machine's core count.
Each worker process is further limited to ``cores // workers`` OpenMP threads (joblib's
default for its ``loky`` processes), so two workers on two cores do not fight over them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from joblib import Parallel
from threadpoolctl import threadpool_limits


def parallel(workers: int) -> Parallel:
    """A :class:`joblib.Parallel` running tasks in ``workers`` processes (1: in this one),
    results in task order.

    Raises
    ------
    ValueError
        when ``workers`` is not a positive whole number.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    # loky: separate processes (the fits hold the GIL in their Python parts); the default
    # inner thread limit is cores // workers per process
    return Parallel(n_jobs=workers, backend="loky")


def task_threads(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function`` (a task) with BLAS limited to one thread, wherever it runs: its
    result is then the same in a worker process, in this process, on any machine."""
    @wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)
    return limited
