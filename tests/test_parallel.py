"""Independent fits run at once (starry_guide.pipeline.parallel, threads): the results must
not depend on the worker count — leave one station out and training, 1 worker vs 2, compared
exactly on a slice of pvlib's three real stations — and every task runs with BLAS at one
thread."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from starry_guide import config
from starry_guide.core import features, models, splits
from starry_guide.pipeline import loso, mlflow_model, parallel, profiles, training

from .test_config import write_params


@pytest.fixture(scope="module")
def rows(observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    # a slice keeps each fit to a second or so: four horizons
    return rows[rows["horizon_h"].isin([1, 3, 6, 12])].reset_index(drop=True)


def with_workers(settings, workers: int, **train_changes):
    train = dataclasses.replace(settings.train, **train_changes)
    return dataclasses.replace(settings, workers=workers, train=train)


def test_leave_one_station_out_by_profile_is_the_same_with_one_or_two_workers(
        rows, observations, settings):
    # the blend: Newton-Cholesky logistic regressions and histogram boosting (OpenMP),
    # the fits whose thread count could matter
    model = models.PersistenceBlendClassifier(boosting_iter=20, boosting_subsample=0.5,
                                              random_state=settings.seed)
    by_profile = profiles.profile_rows(observations, rows, settings)
    one = loso.leave_one_station_out_by_profile(by_profile, model, settings, "blend",
                                                workers=1)
    two = loso.leave_one_station_out_by_profile(by_profile, model, settings, "blend",
                                                workers=2)
    assert set(one) == set(two) == set(by_profile)
    for name in one:
        pd.testing.assert_frame_equal(one[name].rows, two[name].rows, check_exact=True)
    # and the stations really were refit apart: three stations, every row scored once
    assert sorted(one["full"].rows["station_id"].unique()) == sorted(rows["station_id"].unique())
    assert len(one["full"].rows) == len(rows)


def test_the_default_comes_from_settings(rows, settings):
    model = models.PersistenceLogisticClassifier(C=0.1)
    explicit = loso.leave_one_station_out(rows, model, settings, "pl", design=True, workers=1)
    from_settings = loso.leave_one_station_out(rows, model, with_workers(settings, 2), "pl",
                                               design=True)
    pd.testing.assert_frame_equal(explicit.rows, from_settings.rows, check_exact=True)


def test_training_is_the_same_with_one_or_two_workers(rows, settings):
    changes = {"candidates": ("calibrated_persistence", "hist_gradient_boosting",
                              "persistence_blend"),
               "search_budget": 2}
    results = {w: training.fit_candidates(rows, with_workers(settings, w, **changes))
               for w in (1, 2)}
    assert list(results[1]) == list(results[2]) == list(changes["candidates"])
    for name in changes["candidates"]:
        one, two = results[1][name], results[2][name]
        np.testing.assert_array_equal(one.p_validation, two.p_validation)
        assert one.params == two.params and one.trials == two.trials
        assert one.model_id == two.model_id
    # the search did run: two trials of the boosting, cross-validated
    assert len(results[2]["hist_gradient_boosting"].trials) == 2
    assert all(np.isfinite(t["cv_brier"]) for t in results[2]["hist_gradient_boosting"].trials)


def test_search_of_one_candidate_is_the_batched_search(rows, settings):
    small = with_workers(settings, 2, search_budget=2)
    alone = training.searches(["hist_gradient_boosting"], rows, small)["hist_gradient_boosting"]
    batched = training.searches(["calibrated_persistence", "hist_gradient_boosting"], rows,
                                small)
    assert batched["hist_gradient_boosting"] == alone
    assert batched["calibrated_persistence"] == (
        small.train.params_for("calibrated_persistence"), [])


@pytest.mark.parametrize("workers", [1, 2])
def test_tasks_run_with_one_blas_thread_and_their_share_of_openmp(workers):
    import os

    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from joblib import delayed
    from threadpoolctl import threadpool_info

    def limits() -> dict[str, set[int]]:
        seen: dict[str, set[int]] = {}
        for library in threadpool_info():
            seen.setdefault(library["user_api"], set()).add(library["num_threads"])
        return seen

    before = limits()
    seen = parallel.parallel(workers)(delayed(limits)() for _ in range(4))
    assert len(seen) == 4
    for inside in seen:
        assert inside["blas"] == {1}  # OpenBLAS's thread count changes Newton-Cholesky's bits
        assert inside["openmp"] == {max(1, (os.cpu_count() or 1) // workers)}
    assert limits() == before  # and the limits are lifted afterwards


def test_results_come_back_in_task_order_whatever_finishes_first():
    import time

    from joblib import delayed

    def late(i: int) -> int:
        time.sleep(0.05 * (4 - i))  # the first task finishes last
        return i

    assert parallel.parallel(2)(delayed(late)(i) for i in range(4)) == [0, 1, 2, 3]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_a_worker_count_that_is_not_a_positive_whole_number_is_refused(workers):
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1"):
        parallel.parallel(workers)


@pytest.mark.parametrize("value, message", [
    (0, r"'workers' = 0 must be >= 1"),
    ("two", r"'workers' = 'two' should be a whole number"),
    (2.5, r"'workers' = 2.5 should be a whole number"),
])
def test_params_workers_is_checked_naming_file_key_and_value(tmp_path, value, message):
    write_params(tmp_path, workers=value)
    with pytest.raises(config.ConfigError, match=message) as error:
        config.load_settings(tmp_path)
    assert str(tmp_path / "params.yaml") in str(error.value)


def test_workers_defaults_to_two_and_is_not_a_result_parameter(tmp_path):
    write_params(tmp_path, workers=None)
    loaded = config.load_settings(tmp_path)
    assert loaded.workers == 2
    # the params fingerprint (lineage) and MLflow params do not see it
    assert "workers" not in loaded.as_dict()
    assert loaded.as_dict() == dataclasses.replace(loaded, workers=1).as_dict()


def test_loading_a_logged_model_leaves_sys_path_as_it_was(rows, settings, tracking_uri):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)  # an earlier test may have set another store ...
    mlflow.set_experiment("load-estimator")  # ... and an active experiment this one lacks
    X, y = training.split_xy(rows, "train", settings)
    model = models.CalibratedPersistenceClassifier().fit(X, y)
    with mlflow.start_run():
        info = mlflow_model.log(model, X.head(5))
    before = list(sys.path)
    loaded = mlflow_model.load_estimator(info.model_uri)
    assert sys.path == before  # MLflow had put the model's copy of the package first
    np.testing.assert_array_equal(training.predict_clear(loaded, X),
                                  training.predict_clear(model, X))
