"""The candidates' median imputer (``models.median_imputer``): the numbers of scikit-learn's
``strategy="median"`` with ``keep_empty_features=True``, fitted without numpy.ma; and it
survives the skops round trip the MLflow models go through."""

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.impute import SimpleImputer

from starry_guide.core import models
from starry_guide.pipeline.mlflow_model import trusted_types


def masked_median_imputer() -> SimpleImputer:
    # what the candidates used before: scikit-learn's own median over a masked array
    return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)


def gappy_frame(rows: int, seed: int) -> pd.DataFrame:
    """Columns with even and odd counts of present values, repeated values, a column with
    no gap, one with a single value and one with none at all."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "continuous": rng.normal(10.0, 3.0, rows),
        "tenths": rng.integers(0, 11, rows).astype(float),
        "complete": rng.normal(0.0, 1.0, rows),
        "single": np.nan,
        "empty": np.nan,
    })
    frame.loc[rng.random(rows) < 0.3, "continuous"] = np.nan
    frame.loc[rng.random(rows) < 0.5, "tenths"] = np.nan
    frame.loc[rows // 2, "single"] = 4.25
    return frame


@pytest.mark.parametrize("rows, seed", [(1000, 0), (1001, 1), (7, 2), (2, 3)])
def test_the_imputer_gives_the_masked_medians_numbers(rows, seed):
    X = gappy_frame(rows, seed)
    fast = models.median_imputer().fit(X)
    reference = masked_median_imputer().fit(X)
    np.testing.assert_array_equal(fast.statistics_, reference.statistics_)
    np.testing.assert_array_equal(fast.indicator_.features_, reference.indicator_.features_)
    assert list(fast.get_feature_names_out()) == list(reference.get_feature_names_out())
    assert fast.transform(X).tobytes() == reference.transform(X).tobytes()
    # a column with no value at all is kept and imputed 0.0, as keep_empty_features does
    assert fast.statistics_[list(X.columns).index("empty")] == 0.0
    assert fast.statistics_[list(X.columns).index("single")] == 4.25


def test_median_of_present_is_the_median_and_zero_when_nothing_is_present():
    assert models.median_of_present(np.array([3.0, 1.0, 2.0])) == 2.0
    assert models.median_of_present(np.array([4.0, 1.0, 2.0, 3.0])) == 2.5
    assert models.median_of_present(np.array([])) == 0.0


def test_a_fitted_persistence_logistic_survives_the_skops_round_trip():
    rng = np.random.default_rng(5)
    rows = 600
    X = pd.DataFrame({
        "opaque_cloud_tenths": rng.integers(0, 11, rows).astype(float),
        "horizon_h": rng.integers(1, 4, rows).astype(float),
        "relative_humidity": rng.uniform(20, 100, rows),
    })
    X.loc[rng.random(rows) < 0.2, "relative_humidity"] = np.nan
    y = (rng.random(rows) < np.where(X["opaque_cloud_tenths"] <= 2, 0.8, 0.2)).astype(int)
    model = models.PersistenceLogisticClassifier(C=0.1).fit(X, y)
    trusted = trusted_types(model)
    assert "starry_guide.core.models.median_of_present" in trusted
    loaded = skops.io.loads(skops.io.dumps(model), trusted=trusted)
    assert loaded.imputer_.strategy is models.median_of_present
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_trusted_types_read_from_the_written_dump_are_the_estimators(tmp_path):
    # mlflow_model.log reads them from the file skops just wrote instead of serialising the
    # estimator a second time: the same list either way
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "horizon_h": [1, 1, 2, 2]})
    model = models.median_imputer().fit(X)
    skops.io.dump(model, tmp_path / "model.skops")
    assert trusted_types(dump=tmp_path / "model.skops") == trusted_types(model)
    assert any("median_of_present" in name for name in trusted_types(model))
