import json

import numpy as np
import onnxruntime as ort
import pytest

from starry_guide.artifacts import bundle as transfer
from starry_guide.artifacts import onnx_export
from starry_guide.core import features, models


@pytest.mark.parametrize("name", models.CANDIDATES)
def test_onnx_matches_sklearn_on_the_test_split(name, rows, settings):
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    test = rows[rows["split"] == "held_out"]
    params = {**settings.train.params_for(name)}
    if name in ("hist_gradient_boosting", "persistence_stack"):
        params.update(max_iter=40)
    model = models.build_candidate(name, params, settings.seed, 2).fit(train[columns],
                                                                       train["clear"])
    session = ort.InferenceSession(onnx_export.to_onnx(model, columns).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    p_onnx = session.run(["p_clear"], {"features": test[columns].to_numpy(np.float32)})[0]
    p_sklearn = model.predict_proba(test[columns])[:, 1]
    assert np.max(np.abs(p_onnx - p_sklearn)) <= onnx_export.PARITY_TOLERANCE
    # missing values take the same path as in scikit-learn
    assert test[columns].isna().any().any()


def test_thresholds_round_down_to_float32():
    thresholds = np.array([24.199999809265137, 1.0, -3.3])
    rounded = onnx_export._float32_at_most(thresholds)
    assert (rounded.astype(np.float64) <= thresholds).all()
    x = np.float32(24.2)  # above the threshold in float64, equal to round-to-nearest float32
    assert (np.float64(x) <= thresholds[0]) == (x <= rounded[0])


def test_a_model_without_exporter_is_refused(settings):
    from sklearn.dummy import DummyClassifier

    with pytest.raises(onnx_export.ExportError, match="no ONNX exporter for DummyClassifier"):
        onnx_export.to_onnx(DummyClassifier(), ["a"])


def test_bundle_loads_and_predicts(bundle_dir, rows, settings):
    loaded = transfer.load_bundle(bundle_dir)
    assert loaded.version == "7"
    assert loaded.card["onnx_parity_max_abs"] <= onnx_export.PARITY_TOLERANCE
    test = rows[rows["split"] == "held_out"].head(50)
    p = loaded.predict(test)
    assert p.shape == (50,) and ((p >= 0) & (p <= 1)).all()
    assert loaded.features == features.feature_columns(settings.features)


def test_corrupt_bundle_is_refused(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(transfer.BundleError, match=r"model\.onnx is corrupt"):
        transfer.load_bundle(copy)


def test_missing_bundle_says_what_to_do(tmp_path):
    with pytest.raises(transfer.BundleError, match="dvc repro"):
        transfer.load_bundle(tmp_path / "nothing")


def test_climatology_is_a_probability_table(bundle_dir):
    climate = json.loads((bundle_dir / "climatology.json").read_text())
    assert set(climate) == {"greensboro_nc", "miami_fl", "sand_point_ak"}
    table = np.asarray(climate["miami_fl"]["p_clear_by_month_hour"])
    assert table.shape == (12, 24) and ((table >= 0) & (table <= 1)).all()


def test_blend_parity_when_the_persistence_logit_sits_on_a_split(rows, settings):
    """With few bins the boosting splits *at* persistence-logit values (quantile thresholds),
    so a logit computed in float32 inside the graph would send rows down the other branch;
    the graph looks the logit up as scikit-learn's own float32 numbers."""
    columns = features.feature_columns(settings.features)
    train = rows[rows["split"] == "train"]
    test = rows[rows["split"] == "held_out"]
    model = models.PersistenceBlendClassifier(max_bins=16, boosting_iter=40,
                                              min_samples_leaf=200).fit(train[columns],
                                                                        train["clear"])
    persistence_column = model.boosting_.n_features_in_ - 1
    used = {int(node["feature_idx"]) for (predictor,) in model.boosting_._predictors
            for node in predictor.nodes if not node["is_leaf"]}
    assert persistence_column in used  # the trees do split on it
    session = ort.InferenceSession(onnx_export.to_onnx(model, columns).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    p_onnx = session.run(["p_clear"], {"features": test[columns].to_numpy(np.float32)})[0]
    assert np.max(np.abs(p_onnx - model.predict_proba(test[columns])[:, 1])) \
        <= onnx_export.PARITY_TOLERANCE
