"""ONNX export: every candidate of :mod:`starry_guide.core.models` written as a small ONNX
graph of its fitted numbers (HistGradientBoosting as a TreeEnsembleRegressor; numeric features
only — no native categorical features on this path), and the bundle folder written with a
parity check against scikit-learn on every export. The reader is
:mod:`starry_guide.artifacts.bundle`; the server imports only that one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from starry_guide.artifacts.bundle import FILES, INPUT, OUTPUT, sha256
from starry_guide.core.models import (
    CalibratedPersistenceClassifier,
    PersistenceBlendClassifier,
    PersistenceClassifier,
    PersistenceLogisticClassifier,
    PersistenceStackClassifier,
)
from starry_guide.core.models import (
    to_logit as probability_logit,
)

OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
#: a bundle's ONNX predictions must match scikit-learn's within this on the test split
PARITY_TOLERANCE = 1e-4


class ExportError(ValueError):
    """A model cannot be exported to ONNX; the message says which and why."""


class _Graph:
    """Accumulates ONNX nodes and constants with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype=np.float32, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, domain: str = "",
           **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], domain=domain,
                                           **attrs))
        return out

    def column(self, index: int) -> str:
        """Column ``index`` of the input matrix, as [N]."""
        return self.op("Gather", INPUT, self.const(index, np.int64), axis=1)

    def nearest_row(self, horizon: str, horizons: np.ndarray) -> str:
        """Index of the nearest fitted horizon for each row (as the estimators do)."""
        h = self.op("Unsqueeze", horizon, self.const([1], np.int64))
        diff = self.op("Abs", self.op("Sub", h, self.const(horizons[None, :].astype(float))))
        return self.op("ArgMin", diff, axis=1, keepdims=0)


def _persistence(g: _Graph, model: PersistenceClassifier, columns: list[str]) -> str:
    cover = g.column(columns.index("opaque_cloud_tenths"))
    clear = g.op("LessOrEqual", cover, g.const(model.clear_max_opaque_tenths))
    return g.op("Cast", clear, to=TensorProto.FLOAT)  # NaN compares False: cloudy


def _calibrated_persistence(g: _Graph, model: CalibratedPersistenceClassifier,
                            columns: list[str], table=lambda t: t) -> str:
    """The table's cell of each row; ``table`` maps the fitted table first (e.g. to logits)."""
    cover = g.column(columns.index("opaque_cloud_tenths"))
    missing = g.op("IsNaN", cover)
    rounded = g.op("Clip", g.op("Round", g.op("Where", missing, g.const(0.0), cover)),
                   g.const(0.0), g.const(10.0))
    cell = g.op("Cast", g.op("Where", missing, g.const(11.0), rounded), to=TensorProto.INT64)
    row = g.nearest_row(g.column(columns.index("horizon_h")), model.horizons_)
    flat = g.op("Add", g.op("Mul", row, g.const(12, np.int64)), cell)
    return g.op("Gather", g.const(table(model.table_).ravel()), flat, axis=0)


def _logistic(g: _Graph, model: Pipeline, columns: list[str]) -> str:
    imputer, scaler, logistic = (model.named_steps[k] for k in ("impute", "scale", "model"))
    missing = g.op("IsNaN", INPUT)
    filled = g.op("Where", missing, g.const(imputer.statistics_[None, :]), INPUT)
    parts = [filled]
    if imputer.indicator_ is not None:
        flags = g.op("Gather", missing, g.const(imputer.indicator_.features_, np.int64), axis=1)
        parts.append(g.op("Cast", flags, to=TensorProto.FLOAT))
    z = g.op("Concat", *parts, axis=1) if len(parts) > 1 else parts[0]
    scaled = g.op("Div", g.op("Sub", z, g.const(scaler.mean_[None, :])),
                  g.const(scaler.scale_[None, :]))
    logit = g.op("Add", g.op("MatMul", scaled, g.const(logistic.coef_[0])),
                 g.const(logistic.intercept_[0]))
    return g.op("Sigmoid", logit)


def _persistence_logistic(g: _Graph, model: PersistenceLogisticClassifier,
                          columns: list[str]) -> str:
    """Impute + indicators, the persistence logit, one scaling, then per-row coefficients
    gathered by horizon; the correction shrunk toward the persistence logit."""
    persistence, logit = _persistence_logistic_logits(g, model, columns)
    shrinkage = float(getattr(model, "shrinkage", 1.0))
    if shrinkage != 1.0:  # the correction shrunk toward the persistence logit
        logit = g.op("Add", persistence,
                     g.op("Mul", g.const(shrinkage), g.op("Sub", logit, persistence)))
    return g.op("Sigmoid", logit)


def _persistence_logistic_logits(g: _Graph, model: PersistenceLogisticClassifier,
                                 columns: list[str]) -> tuple[str, str]:
    """The persistence logit and the fitted regression's logit (before any shrinkage); with
    fallback sub-models, each row's logit is its first fitting sub-model's (as
    :meth:`PersistenceLogisticClassifier.sub_model` chooses)."""
    p = g.op("Clip", _calibrated_persistence(g, model.persistence_, columns),
             g.const(1e-4), g.const(1 - 1e-4))
    persistence = g.op("Log", g.op("Div", p, g.op("Sub", g.const(1.0), p)))
    row = g.nearest_row(g.column(columns.index("horizon_h")), model.horizons_)
    masks = getattr(model, "masks_", [[]])
    if len(masks) == 1 and not masks[0]:
        return persistence, _sub_model_logit(g, model.imputer_, model.scaler_, model.coef_,
                                             model.intercept_, INPUT, persistence, row)
    missing = g.op("IsNaN", INPUT)
    raw = []
    for k, mask in enumerate(masks):
        source = INPUT
        if mask:  # the sub-model reads only the columns it was fit on
            kept = [i for i, c in enumerate(columns) if c not in mask]
            source = g.op("Gather", INPUT, g.const(kept, np.int64), axis=1)
        raw.append(_sub_model_logit(g, model.imputers_[k], model.scalers_[k], model.coefs_[k],
                                    model.intercepts_[k], source, persistence, row))
    anchor = float(getattr(model, "fallback_anchor", 0.0))
    shrink = float(getattr(model, "fallback_shrinkage", 1.0))
    logits = []
    for k, logit in enumerate(raw):
        if 0 < k < len(raw) - 1 and anchor:  # anchored on the last fallback's logit
            logit = g.op("Add", g.op("Mul", g.const(1.0 - anchor), logit),
                         g.op("Mul", g.const(anchor), raw[-1]))
        if k and shrink != 1.0:  # a fallback's correction, shrunk toward persistence
            logit = g.op("Add", persistence,
                         g.op("Mul", g.const(shrink), g.op("Sub", logit, persistence)))
        logits.append(logit)
    chosen = logits[-1]
    for k in range(len(masks) - 2, -1, -1):
        kept = [columns.index(c) for c in model.optional_features_ if c not in masks[k]]
        lacking = g.op("ReduceMax", g.op("Cast", g.op("Gather", missing,
                                                      g.const(kept, np.int64), axis=1),
                                         to=TensorProto.FLOAT),
                       axes=[1], keepdims=0)  # opset 17: axes an attribute here
        fits = g.op("Less", lacking, g.const(0.5))
        chosen = g.op("Where", fits, logits[k], chosen)
    return persistence, chosen


def _sub_model_logit(g: _Graph, imputer, scaler, coef: np.ndarray, intercept: np.ndarray,
                     source: str, persistence: str, row: str) -> str:
    """One regression's logit: impute + indicators of ``source``, the persistence logit,
    one scaling, then per-row coefficients gathered by horizon (``row``)."""
    missing = g.op("IsNaN", source)
    parts = [g.op("Where", missing, g.const(imputer.statistics_[None, :]), source)]
    if imputer.indicator_ is not None:
        flags = g.op("Gather", missing, g.const(imputer.indicator_.features_, np.int64), axis=1)
        parts.append(g.op("Cast", flags, to=TensorProto.FLOAT))
    parts.append(g.op("Unsqueeze", persistence, g.const([1], np.int64)))
    z = g.op("Concat", *parts, axis=1)
    scaled = g.op("Div", g.op("Sub", z, g.const(scaler.mean_[None, :])),
                  g.const(scaler.scale_[None, :]))
    coefficients = g.op("Gather", g.const(coef), row, axis=0)
    total = g.op("ReduceSum", g.op("Mul", scaled, coefficients), g.const([1], np.int64),
                 keepdims=0)
    return g.op("Add", total, g.op("Gather", g.const(intercept), row, axis=0))


def _persistence_blend(g: _Graph, model: PersistenceBlendClassifier,
                       columns: list[str]) -> str:
    """The logistic's logit and the boosting's raw score (its input: the features and the
    persistence logit as one more column), blended, shrunk toward the persistence logit."""
    persistence, logistic = _persistence_logistic_logits(g, model.logistic_, columns)
    # the boosting's extra column: the logit table looked up, as float32 numbers identical
    # to scikit-learn's (a logit computed in float32 could sit one ulp across a split)
    column = _calibrated_persistence(
        g, model.logistic_.persistence_, columns,
        table=lambda t: probability_logit(t).astype(np.float32))
    inputs = g.op("Concat", INPUT, g.op("Unsqueeze", column, g.const([1], np.int64)), axis=1)
    boosting = _boosting_raw(g, model.boosting_, inputs)
    w = float(model.boosting_weight)
    blend = g.op("Add", g.op("Mul", g.const(1.0 - w), logistic),
                 g.op("Mul", g.const(w), boosting))
    logit = g.op("Add", persistence, g.op("Mul", g.const(float(model.shrinkage)),
                                         g.op("Sub", blend, persistence)))
    return g.op("Sigmoid", logit)


def _float32_at_most(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each value: for any float32 x, ``x <= t`` and
    ``x <= _float32_at_most(t)`` agree — plain rounding to nearest would flip the rows that
    sit between the two (e.g. 24.2 against the midpoint of 24.0 and 24.4)."""
    rounded = np.asarray(values, dtype=np.float64).astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _boosting(g: _Graph, model: HistGradientBoostingClassifier, columns: list[str]) -> str:
    """scikit-learn's fitted trees (:func:`_boosting_raw`) + sigmoid."""
    return g.op("Sigmoid", _boosting_raw(g, model, INPUT))


def _boosting_raw(g: _Graph, model: HistGradientBoostingClassifier, source: str) -> str:
    """scikit-learn's fitted trees on the matrix ``source`` as one ONNX
    TreeEnsembleRegressor: the raw score (logit), [N].

    Written from the fitted predictors rather than through skl2onnx: skl2onnx rounds split
    thresholds to the nearest float32, which sends rows that sit between a threshold and
    its float32 neighbour down the other branch (parity off by up to 0.007 here). NaN follows
    each node's ``missing_go_to_left``, as in scikit-learn.
    """
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ExportError("HistGradientBoosting with native categorical features cannot be "
                          "exported to ONNX here; encode categories numerically")
    if model.n_trees_per_iteration_ != 1:
        raise ExportError("only binary HistGradientBoosting classifiers can be exported")
    attrs: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    for tree, (predictor,) in enumerate(model._predictors):
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        thresholds = _float32_at_most(np.where(leaf, 0.0, nodes["num_threshold"]))
        for i, node in enumerate(nodes):
            attrs["nodes_treeids"].append(tree)
            attrs["nodes_nodeids"].append(i)
            attrs["nodes_featureids"].append(0 if leaf[i] else int(node["feature_idx"]))
            attrs["nodes_values"].append(float(thresholds[i]))
            attrs["nodes_modes"].append("LEAF" if leaf[i] else "BRANCH_LEQ")
            attrs["nodes_truenodeids"].append(0 if leaf[i] else int(node["left"]))
            attrs["nodes_falsenodeids"].append(0 if leaf[i] else int(node["right"]))
            attrs["nodes_missing_value_tracks_true"].append(
                0 if leaf[i] else int(node["missing_go_to_left"]))
            if leaf[i]:
                attrs["target_treeids"].append(tree)
                attrs["target_nodeids"].append(i)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(node["value"]))
    raw = g.name("hgb_raw")
    g.nodes.append(helper.make_node(
        "TreeEnsembleRegressor", [source], [raw], domain="ai.onnx.ml", n_targets=1,
        aggregate_function="SUM", post_transform="NONE",
        base_values=[float(np.ravel(model._baseline_prediction)[0])], **attrs))
    return g.op("Reshape", raw, g.const([-1], np.int64))


def _stack(g: _Graph, model: PersistenceStackClassifier, columns: list[str]) -> str:
    def logit(p: str) -> str:
        p = g.op("Clip", p, g.const(1e-4), g.const(1 - 1e-4))
        return g.op("Log", g.op("Div", p, g.op("Sub", g.const(1.0), p)))

    z_persistence = logit(_calibrated_persistence(g, model.persistence_, columns))
    z_boosting = logit(_boosting(g, model.boosting_, columns))
    row = g.nearest_row(g.column(columns.index("horizon_h")), model.horizons_)
    weights = g.op("Gather", g.const(model.combiners_), row, axis=0)  # [N, 3]

    def weight(i: int) -> str:
        return g.op("Gather", weights, g.const(i, np.int64), axis=1)

    total = g.op("Add", weight(0), g.op("Add", g.op("Mul", weight(1), z_persistence),
                                        g.op("Mul", weight(2), z_boosting)))
    return g.op("Sigmoid", total)


_EXPORTERS = {
    PersistenceClassifier: _persistence,
    CalibratedPersistenceClassifier: _calibrated_persistence,
    Pipeline: _logistic,
    HistGradientBoostingClassifier: _boosting,
    PersistenceStackClassifier: _stack,
    PersistenceLogisticClassifier: _persistence_logistic,
    PersistenceBlendClassifier: _persistence_blend,
}


def to_onnx(model, columns: list[str]) -> onnx.ModelProto:
    """The fitted ``model`` as ONNX: ``features`` float32 [N, len(columns)] -> ``p_clear`` [N].

    Raises
    ------
    ExportError
        when the model's type has no exporter.
    """
    exporter = _EXPORTERS.get(type(model))
    if exporter is None:
        raise ExportError(f"no ONNX exporter for {type(model).__name__}; the champion cannot "
                          "be transferred. Add one in starry_guide/artifacts/bundle.py")
    g = _Graph()
    out = exporter(g, model, list(columns))
    g.nodes.append(helper.make_node("Identity", [out], [OUTPUT]))
    graph = helper.make_graph(
        g.nodes, "starry_guide_p_clear",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, len(columns)])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None])],
        initializer=g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=OPSET, producer_name="starry-guide")
    onnx_model.ir_version = 9
    onnx.checker.check_model(onnx_model)
    return onnx_model


def climatology(observations: pd.DataFrame, night_max_sun_elevation_deg: float,
                clear_max_opaque_tenths: float) -> dict:
    """P(clear) by station, month and local solar hour over night hours, for nights when no
    recent observations are available (each station's own record)."""
    out = {}
    for station_id, obs in observations.groupby("station_id", sort=True):
        night = obs[(obs["sun_elevation_deg"] < 0) & obs["opaque_cloud_tenths"].notna()]
        local = night["time"] + pd.to_timedelta(night["longitude"] / 15.0 * 3600, unit="s")
        clear = (night["opaque_cloud_tenths"] <= clear_max_opaque_tenths).astype(float)
        table = clear.groupby([local.dt.month, local.dt.hour]).mean()
        overall = float(clear.mean())
        grid = [[round(float(table.get((m, h), overall)), 4) for h in range(24)]
                for m in range(1, 13)]
        first = obs.iloc[0]
        out[str(station_id)] = {"latitude": float(first["latitude"]),
                                "longitude": float(first["longitude"]),
                                "p_clear_by_month_hour": grid}
    return out


def write_bundle(model, columns: list[str], destination: Path, *, card: dict,
                 feature_spec: dict, climate: dict, X_check: pd.DataFrame,
                 tolerance: float = PARITY_TOLERANCE) -> dict:
    """Export ``model`` into ``destination`` (created fresh) and check ONNX parity on
    ``X_check``. Returns the model card written (with ``onnx_parity_max_abs`` and the
    files' SHA-256). Raises :class:`ExportError` when the largest difference exceeds
    ``tolerance``."""
    import onnxruntime as ort

    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    onnx_model = to_onnx(model, columns)
    (destination / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (destination / "feature_spec.json").write_text(
        json.dumps({**feature_spec, "features": list(columns)}, indent=2, sort_keys=True) + "\n")
    (destination / "climatology.json").write_text(json.dumps(climate, sort_keys=True) + "\n")
    session = ort.InferenceSession(str(destination / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    p_onnx = session.run([OUTPUT], {INPUT: X_check[columns].to_numpy(np.float32)})[0]
    p_sklearn = model.predict_proba(X_check[columns])[:, 1]
    parity = float(np.max(np.abs(p_onnx - p_sklearn))) if len(X_check) else 0.0
    if parity > tolerance:
        raise ExportError(f"ONNX parity check failed: ONNX and scikit-learn disagree by "
                          f"{parity:.2e} > {tolerance:g} on {len(X_check)} rows; not exported")
    card = {**card, "onnx_parity_max_abs": parity, "onnx_parity_rows": len(X_check),
            "sha256": {name: sha256(destination / name) for name in FILES}}
    (destination / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True)
                                                 + "\n")
    return card
