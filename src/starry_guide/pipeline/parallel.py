"""Independent model fits in parallel processes, with results that do not depend on how many.

The pipeline's refits (leave one station out: one per station) are independent and each is
deterministic, so running them in ``workers`` processes changes only the wall time: joblib
returns the results in task order, whatever finished first. Each worker process is limited
to ``cores // workers`` BLAS/OpenMP threads (joblib's default for its ``loky`` processes), so
two workers on two cores do not fight over them; one worker runs the tasks in this process,
as before, with the libraries' own thread counts.

Numerical identity across worker counts rests on the fits not depending on their thread
count: scikit-learn's histogram gradient boosting and the Newton-Cholesky logistic regression
give bit-identical results with one or two threads (tested on the pipeline's models in
tests/test_loso_parallel.py).
"""

from __future__ import annotations

from joblib import Parallel


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
