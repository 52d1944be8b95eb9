"""Candidate models, all scikit-learn classifiers taking the rows of
:func:`starry_guide.core.features.model_rows` (a DataFrame with named feature columns).

* ``persistence`` — clear now -> clear later; hard 0/1 probabilities.
* ``calibrated_persistence`` — P(clear at t+h | opaque cover at t, h) counted on the training
  rows, shrunk toward the horizon's clear rate. The honest baseline: cloud cover persists.
* ``logistic_regression`` — median imputation with missing-value indicators, scaling, logistic
  regression.
* ``hist_gradient_boosting`` — gradient-boosted trees; handles missing values natively.
* ``persistence_stack`` — calibrated persistence corrected by boosting, per horizon, with
  weights learned out of fold (see :class:`PersistenceStackClassifier`).
* ``persistence_logistic`` — calibrated persistence corrected by the weather: one
  regularised logistic regression per horizon on every feature and the persistence logit
  (see :class:`PersistenceLogisticClassifier`).
* ``persistence_blend`` — the persistence logistic and a boosting on the features and the
  persistence logit, logits averaged, the blend shrunk toward calibrated persistence (see
  :class:`PersistenceBlendClassifier`).
* ``persistence_logistic_shrunk`` — the same, with the weather's correction shrunk toward
  calibrated persistence in logit space (``shrinkage`` < 1): less skill in-station, more at
  stations the model never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from starry_guide.core import profiles

CLOUD = "opaque_cloud_tenths"
HORIZON = "horizon_h"


def median_of_present(values: np.ndarray) -> float:
    """The median of a column's present values, 0.0 when it has none: the statistic of every
    median imputer here (``SimpleImputer(strategy=median_of_present)``).

    The same numbers as ``SimpleImputer(strategy="median", keep_empty_features=True)``, whose
    masked-array median took 3.4 s on the ~370,000 training rows where this takes 0.1 s (the
    persistence logistic fits four imputers per fit, leave-one-station-out refits dozens).
    Module-level so that skops stores it by name (a trusted type of the logged models).

    Parameters
    ----------
    values : the column's non-missing values (SimpleImputer passes them, NaN already removed).

    Returns
    -------
    float
        Their median; 0.0 for an empty column (the value ``keep_empty_features`` imputes).
    """
    return float(np.median(values)) if len(values) else 0.0


def median_imputer() -> SimpleImputer:
    """Median imputation with a missing-value indicator per column that had gaps; a column
    with no value at all is kept (imputed 0.0, see :func:`median_of_present`)."""
    return SimpleImputer(strategy=median_of_present, add_indicator=True,
                         keep_empty_features=True)


class PersistenceClassifier(ClassifierMixin, BaseEstimator):
    """Predict that the sky at ``t + h`` is as it is at ``t``.

    Parameters
    ----------
    clear_max_opaque_tenths : opaque cover at ``t`` at or below which "clear" is predicted
        (the same threshold as the label). Missing cover predicts cloudy.
    """

    def __init__(self, clear_max_opaque_tenths: float = 2.0):
        self.clear_max_opaque_tenths = clear_max_opaque_tenths

    def fit(self, X: pd.DataFrame, y: Any) -> PersistenceClassifier:
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "classes_")
        clear = (X[CLOUD].to_numpy(dtype=float) <= self.clear_max_opaque_tenths).astype(float)
        return np.column_stack([1.0 - clear, clear])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


class CalibratedPersistenceClassifier(ClassifierMixin, BaseEstimator):
    """P(clear at ``t + h`` | opaque cover at ``t`` rounded to tenths, ``h``) from counts.

    Parameters
    ----------
    prior_strength : pseudo-counts of a Beta prior centred on the horizon's clear rate; it
        keeps rare cover values (or missing cover) from getting extreme probabilities.
    """

    def __init__(self, prior_strength: float = 1.0, monotone: bool = False):
        self.prior_strength = prior_strength
        self.monotone = monotone

    def fit(self, X: pd.DataFrame, y: Any) -> CalibratedPersistenceClassifier:
        y = np.asarray(y, dtype=float)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        horizons = X[HORIZON].to_numpy(dtype=int)
        cover = np.rint(X[CLOUD].to_numpy(dtype=float))
        self.horizons_ = np.unique(horizons)
        self.base_rate_ = float(y.mean())
        # table_[i, c] = P(clear | horizon = horizons_[i], cover = c); column 11 = cover missing
        self.table_ = np.empty((len(self.horizons_), 12))
        self.horizon_rate_ = np.empty(len(self.horizons_))
        for i, h in enumerate(self.horizons_):
            at_h = horizons == h
            rate = y[at_h].mean()  # every fitted horizon has rows
            self.horizon_rate_[i] = rate
            for c in range(12):
                in_cell = at_h & ((cover == c) if c < 11 else np.isnan(cover))
                clear, n = y[in_cell].sum(), in_cell.sum()
                total = n + self.prior_strength
                # an empty cell with no prior falls back to the horizon's rate
                self.table_[i, c] = (clear + self.prior_strength * rate) / total if total else rate
            if getattr(self, "monotone", False):
                # more cover now never makes clear more likely: the closest non-increasing
                # table (weighted by each cell's rows), by pool-adjacent-violators
                weights = np.array([(at_h & (cover == c)).sum() + self.prior_strength + 1e-9
                                    for c in range(11)])
                self.table_[i, :11] = IsotonicRegression(increasing=False).fit_transform(
                    np.arange(11), self.table_[i, :11], sample_weight=weights)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "table_")
        horizons = X[HORIZON].to_numpy(dtype=int)
        cover = np.rint(X[CLOUD].to_numpy(dtype=float))
        cell = np.where(np.isnan(cover), 11, np.clip(np.nan_to_num(cover), 0, 10)).astype(int)
        # an unseen horizon takes its nearest trained one
        row = np.abs(horizons[:, None] - self.horizons_[None, :]).argmin(axis=1)
        p = self.table_[row, cell]
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def to_logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-4, 1 - 1e-4] so it stays finite."""
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class PersistenceStackClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated persistence, corrected by gradient boosting where — and only as much as —
    the correction has earned it.

    Per horizon, a two-input logistic regression combines the logits of calibrated
    persistence and of a (heavily regularised) HistGradientBoosting model. The combiner is fit
    on *out-of-fold* predictions whose folds are whole (station, month) blocks — ``groups``
    in :meth:`fit` (without them, contiguous runs of rows) — so no fold predicts an hour
    whose neighbours an hour away it was fit on: at h = 1, where persistence is nearly
    unbeatable, it learns to lean on persistence; at longer horizons, on the weather.

    Parameters
    ----------
    prior_strength : calibrated persistence's Beta prior (see
        :class:`CalibratedPersistenceClassifier`)
    n_folds : contiguous folds for the out-of-fold predictions
    learning_rate, max_iter, max_depth, min_samples_leaf, l2_regularization : of the boosting
    random_state : seed of the boosting
    """

    def __init__(self, prior_strength: float = 1.0, n_folds: int = 4,
                 learning_rate: float = 0.03, max_iter: int = 200, max_depth: int = 3,
                 min_samples_leaf: int = 400, l2_regularization: float = 5.0,
                 random_state: int = 0):
        self.prior_strength = prior_strength
        self.n_folds = n_folds
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def _boosting(self) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=False, random_state=self.random_state)

    def _inputs(self, X: pd.DataFrame, persistence, boosting) -> np.ndarray:
        return np.column_stack([to_logit(persistence.predict_proba(X)[:, 1]),
                                to_logit(boosting.predict_proba(X)[:, 1])])

    def fit(self, X: pd.DataFrame, y: Any, groups: Any = None) -> PersistenceStackClassifier:
        """Fit; ``groups`` (one id per row, e.g. its station and month) make the
        out-of-fold folds whole groups."""
        y = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        oof = np.empty((len(X), 2))
        folds = (KFold(self.n_folds, shuffle=False).split(X) if groups is None else
                 GroupKFold(self.n_folds).split(X, y, np.asarray(groups)))
        for fit_rows, held_rows in folds:
            persistence = CalibratedPersistenceClassifier(self.prior_strength).fit(
                X.iloc[fit_rows], y[fit_rows])
            boosting = self._boosting().fit(X.iloc[fit_rows], y[fit_rows])
            oof[held_rows] = self._inputs(X.iloc[held_rows], persistence, boosting)
        horizons = X[HORIZON].to_numpy(dtype=int)
        self.horizons_ = np.unique(horizons)
        self.combiners_ = np.empty((len(self.horizons_), 3))  # intercept, w_persistence, w_boost
        for i, h in enumerate(self.horizons_):
            at_h = horizons == h
            combiner = LogisticRegression(C=1.0).fit(oof[at_h], y[at_h])
            self.combiners_[i] = [combiner.intercept_[0], *combiner.coef_[0]]
        self.persistence_ = CalibratedPersistenceClassifier(self.prior_strength).fit(X, y)
        self.boosting_ = self._boosting().fit(X, y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "combiners_")
        z = self._inputs(X, self.persistence_, self.boosting_)
        horizons = X[HORIZON].to_numpy(dtype=int)
        row = np.abs(horizons[:, None] - self.horizons_[None, :]).argmin(axis=1)
        w = self.combiners_[row]
        p = 1.0 / (1.0 + np.exp(-(w[:, 0] + w[:, 1] * z[:, 0] + w[:, 2] * z[:, 1])))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

def fit(model: BaseEstimator, X: pd.DataFrame, y: Any, groups: Any = None) -> BaseEstimator:
    """``model.fit(X, y)``, passing ``groups`` (whole station-months) to models that fold
    their own training rows."""
    if groups is not None and isinstance(model, PersistenceStackClassifier):
        return model.fit(X, y, groups=groups)
    return model.fit(X, y)


class PersistenceLogisticClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated persistence corrected by the weather, one logistic regression per horizon.

    The inputs are every feature (missing values imputed by the median, with a missing
    indicator) plus the logit of :class:`CalibratedPersistenceClassifier` fit on the same
    rows, standardised once; each horizon gets its own L2-regularised coefficients. Linear
    in physically meaningful inputs, it transfers to a station it never saw better than
    trees, which can carve out the training stations' climates.

    With ``shrinkage`` λ < 1 the weather's correction is shrunk toward calibrated
    persistence in logit space: P = σ(ℓ_p + λ·(ℓ_m − ℓ_p)), with ℓ_p the persistence logit
    and ℓ_m the fitted regression's logit. The correction's *size* is learned on the
    training stations; at a station with another climate (marine layer, mountain) its
    direction can be wrong, and a shrunk correction loses less there while keeping most of
    the gain elsewhere (chosen by leave-one-station-out on validation months; see *Forecast
    skill* in the docs). λ = 1 is the plain fit.

    **Missing inputs** (``fallbacks``): a source that never carries a field (IWEC files and
    METAR reports have no precipitable water) is not the training files' occasional gap.
    Imputing the median and applying the coefficient learned for the rare training rows
    that missed it extrapolates, and the forecast falls far below calibrated persistence.
    So besides the full regression, one sub-model per entry of ``fallbacks`` is fit on the
    same rows *without* those inputs (their features set missing, so the other features'
    coefficients learn to carry what they carried). Each row is forecast by the first
    sub-model — the full one, then ``fallbacks`` in order — that lacks nothing the row
    lacks among the optional inputs' features
    (:data:`starry_guide.core.profiles.FEATURES_OF_INPUT`); a row no sub-model fits uses
    the last. With a last entry of every optional input
    (``cover_only``), a row missing anything falls back at worst to a correction of
    persistence by the cover history, the hour and the season.

    Parameters
    ----------
    C : inverse L2 strength of every horizon's logistic regression
    prior_strength : calibrated persistence's Beta prior
    max_iter : of the solver
    shrinkage : λ, the share of the weather's correction kept (0 = calibrated persistence,
        1 = the fitted regression)
    fallbacks : sub-models by the inputs they do without: each entry a list of optional
        input names (:data:`starry_guide.core.profiles.OPTIONAL_INPUTS`) and input profile
        names (their absent inputs), or one profile name; empty = the full regression alone
    fallback_shrinkage : the share of a fallback sub-model's correction kept (in logit
        space, toward calibrated persistence, before ``shrinkage``): a sub-model without
        some inputs has seen fewer kinds of weather explained, and at a station with another
        climate its correction can point the wrong way — shrunk, it cannot lose much
    fallback_anchor : the share of the *last* fallback's logit (the sub-model that needs
        least: the cover history, the hour and the season) averaged into every other
        fallback's logit, before ``fallback_shrinkage``. A fallback still reads some weather
        fields (humidity, temperature, wind, visibility …) whose relation to cloud was learned
        on the training stations' climates; at a station with another (a dry mountain site,
        a marine layer) it can lean the wrong way, and anchored halfway on the cover-history
        correction it cannot lean far (0 = each fallback alone; see *Input profiles* in the
        forecast-skill docs)
    imputed_inputs : optional inputs whose absence never triggers a fallback: their
        features are imputed by the median (pressure enters only through its tendency,
        whose median is "no change")
    ignored_features : features no sub-model reads (e.g. the rolling spreads of the cover,
        whose slope in the cover now takes either sign)
    monotone : more opaque cover now never raises P(clear): the persistence table is made
        non-increasing in the cover and the linear cover terms' slope non-positive (see
        :func:`_no_rise_with_cover`; exact when the rolling spreads are ignored)
    """

    def __init__(self, C: float = 0.1, prior_strength: float = 1.0, max_iter: int = 1000,
                 shrinkage: float = 1.0, fallbacks: tuple = (),
                 fallback_shrinkage: float = 1.0, fallback_anchor: float = 0.0,
                 imputed_inputs: tuple = (), ignored_features: tuple = (),
                 monotone: bool = False):
        self.C = C
        self.prior_strength = prior_strength
        self.max_iter = max_iter
        self.shrinkage = shrinkage
        self.fallbacks = fallbacks
        self.fallback_shrinkage = fallback_shrinkage
        self.fallback_anchor = fallback_anchor
        self.imputed_inputs = imputed_inputs
        self.ignored_features = ignored_features
        self.monotone = monotone

    def _fallback_inputs(self) -> list[tuple[str, ...]]:
        """Each fallback's inputs, resolved from input and profile names."""
        out = []
        for entry in self.fallbacks or ():
            names = tuple(dict.fromkeys(
                name for item in ([entry] if isinstance(entry, str) else entry)
                for name in (profiles.PROFILES[item].absent if item in profiles.PROFILES
                             else (item,))))
            unknown = [n for n in names if n not in profiles.OPTIONAL_INPUTS]
            if unknown:
                raise ValueError(f"persistence logistic: fallback {entry!r} names "
                                 f"{', '.join(map(repr, unknown))}, not optional inputs; "
                                 f"choose from {', '.join(profiles.OPTIONAL_INPUTS)} or a "
                                 f"profile ({', '.join(profiles.PROFILES)})")
            out.append(tuple(names))
        return out

    def _kept(self, X: pd.DataFrame, k: int) -> pd.DataFrame:
        """``X`` as sub-model ``k`` sees it: without its absent inputs' features (dropped,
        not imputed: a fallback fits and predicts on fewer columns)."""
        masks = getattr(self, "masks_", [[]])
        if not masks[k]:
            return X
        return X[[c for c in X.columns if c not in masks[k]]]

    def _core_design(self, X: pd.DataFrame, k: int, cp: np.ndarray) -> np.ndarray:
        z = self.imputers_[k].transform(self._kept(X, k))
        return self.scalers_[k].transform(np.column_stack([z, cp]))

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        """The full sub-model's standardised design (imputed features, indicators and the
        persistence logit)."""
        z = self.imputer_.transform(self._kept(X, 0))
        cp = to_logit(self.persistence_.predict_proba(X)[:, 1])
        return self.scaler_.transform(np.column_stack([z, cp]))

    def fit(self, X: pd.DataFrame, y: Any) -> PersistenceLogisticClassifier:
        for name, meaning in (("shrinkage", "the share of the weather's correction kept"),
                              ("fallback_shrinkage", "the share of a fallback's correction "
                                                     "kept"),
                              ("fallback_anchor", "the last fallback's share in the others")):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"persistence logistic: {name} must lie in [0, 1] "
                                 f"({meaning}), got {getattr(self, name)!r}")
        y = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        columns = list(X.columns)
        tendency = _tendency_hours(columns)
        judged = [c for c in profiles.OPTIONAL_INPUTS if c not in (self.imputed_inputs or ())]
        self.optional_features_ = [c for c in profiles.features_of(judged, tendency)
                                   if c in columns]
        ignored = [c for c in (self.ignored_features or ()) if c in columns]
        self.masks_ = [ignored] + [
            ignored + [c for c in profiles.features_of(inputs, tendency)
                       if c in columns and c not in ignored]
            for inputs in self._fallback_inputs()]
        self.persistence_ = CalibratedPersistenceClassifier(
            self.prior_strength, monotone=bool(self.monotone)).fit(X, y)
        cp = to_logit(self.persistence_.predict_proba(X)[:, 1])
        horizons = X[HORIZON].to_numpy(dtype=int)
        self.horizons_ = np.unique(horizons)
        self.imputers_, self.scalers_, self.coefs_, self.intercepts_ = [], [], [], []
        for k in range(len(self.masks_)):
            kept = self._kept(X, k)
            imputer = median_imputer().fit(kept)
            z = imputer.transform(kept)
            scaler = StandardScaler().fit(np.column_stack([z, cp]))
            design = scaler.transform(np.column_stack([z, cp]))
            coef = np.zeros((len(self.horizons_), design.shape[1]))
            intercept = np.zeros(len(self.horizons_))
            for i, h in enumerate(self.horizons_):
                at_h = horizons == h
                # Newton-Cholesky: a few exact steps on ~40 standardised columns; L-BFGS took
                # six times longer to the same optimum (leave-one-station-out fits 96 of these)
                fitted = LogisticRegression(C=self.C, max_iter=self.max_iter,
                                            solver="newton-cholesky").fit(design[at_h], y[at_h])
                coef[i], intercept[i] = fitted.coef_[0], fitted.intercept_[0]
                if self.monotone:
                    _no_rise_with_cover(coef[i], list(imputer.feature_names_in_),
                                        scaler.scale_)
            self.imputers_.append(imputer)
            self.scalers_.append(scaler)
            self.coefs_.append(coef)
            self.intercepts_.append(intercept)
        self.imputer_, self.scaler_ = self.imputers_[0], self.scalers_[0]
        self.coef_, self.intercept_ = self.coefs_[0], self.intercepts_[0]
        return self

    def sub_model(self, X: pd.DataFrame) -> np.ndarray:
        """Index of the sub-model that forecasts each row: 0 the full regression, ``k`` the
        ``k``-th fallback (see the class docstring)."""
        check_is_fitted(self, "coef_")
        masks = getattr(self, "masks_", [[]])
        if len(masks) == 1:
            return np.zeros(len(X), dtype=int)
        missing = X[self.optional_features_].isna().to_numpy()
        choice = np.full(len(X), len(masks) - 1)
        for k in range(len(masks) - 2, -1, -1):
            kept = [i for i, c in enumerate(self.optional_features_) if c not in masks[k]]
            fits = ~missing[:, kept].any(axis=1)
            choice = np.where(fits, k, choice)
        return choice

    def _sub_model_logit(self, X: pd.DataFrame, k: int, persistence: np.ndarray,
                         row: np.ndarray) -> np.ndarray:
        """Sub-model ``k``'s logit (before any shrinkage) for the rows of ``X``; ``row``
        indexes each row's horizon in ``horizons_``."""
        design = self._core_design(X, k, persistence)
        return np.einsum("ij,ij->i", design, self.coefs_[k][row]) + self.intercepts_[k][row]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "coef_")
        horizons = X[HORIZON].to_numpy(dtype=int)
        row = np.abs(horizons[:, None] - self.horizons_[None, :]).argmin(axis=1)
        persistence = to_logit(self.persistence_.predict_proba(X)[:, 1])
        if hasattr(self, "coefs_"):
            choice = self.sub_model(X)
            logit = np.empty(len(X))
            last = len(self.coefs_) - 1
            anchor = float(getattr(self, "fallback_anchor", 0.0))  # pickled before it: 0
            for k in np.unique(choice):
                at = choice == k
                part = X.loc[at] if isinstance(X, pd.DataFrame) else X[at]
                logit[at] = self._sub_model_logit(part, int(k), persistence[at], row[at])
                if 0 < k < last and anchor:  # anchored on the last fallback's logit
                    logit[at] = (1.0 - anchor) * logit[at] + anchor * self._sub_model_logit(
                        part, last, persistence[at], row[at])
                if k and self.fallback_shrinkage != 1.0:  # a fallback's correction, shrunk
                    logit[at] = persistence[at] + self.fallback_shrinkage * (
                        logit[at] - persistence[at])
        else:  # a model pickled before sub-models existed
            logit = np.einsum("ij,ij->i", self._design(X), self.coef_[row]) \
                + self.intercept_[row]
        shrinkage = getattr(self, "shrinkage", 1.0)  # models pickled before it existed: 1
        if shrinkage != 1.0:
            logit = persistence + shrinkage * (logit - persistence)
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _no_rise_with_cover(coef: np.ndarray, names: list[str], scale: np.ndarray) -> None:
    """Make one horizon's fitted coefficients (standardised design: ``names`` then the
    persistence logit, last) never raise P(clear) as the opaque cover now grows, in place.

    The cover now enters the current cover, the rolling means (slope 1/n over the n hours
    present: at most 1) and the 3-hour change (slope 1, or 0 when imputed); the persistence
    logit is non-increasing in it (a monotone table) and must keep a non-negative weight.
    When the worst-case slope of the linear terms is positive — at long horizons the
    regression partly undoes persistence's steep dependence on the cover — the current
    cover's coefficient takes the excess off. The rolling spreads' slope can take either
    sign: a model that must never rise with the cover ignores them (``ignored_features``;
    tests/test_behaviour.py holds the champion to the property)."""
    raw = {name: coef[j] / scale[j] for j, name in enumerate(names)}
    if "opaque_cloud_tenths" not in raw:
        return
    slope = raw["opaque_cloud_tenths"]
    for name, value in raw.items():
        if name.startswith("opaque_change_"):
            slope += max(value, 0.0)
        elif name.startswith("opaque_mean_"):
            window = int(name[len("opaque_mean_"):-1])
            slope += max(value, value / window)
    if slope > 0:
        coef[names.index("opaque_cloud_tenths")] -= slope * scale[names.index(
            "opaque_cloud_tenths")]
    coef[-1] = max(coef[-1], 0.0)


def _tendency_hours(columns: list[str]) -> int:
    """The tendency length ``n`` of the ``pressure_change_{n}h`` column (3 if none)."""
    for c in columns:
        if c.startswith("pressure_change_") and c.endswith("h"):
            return int(c[len("pressure_change_"):-1])
    return 3


class PersistenceBlendClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated persistence corrected by a blend of two weather models, shrunk toward it.

    Two corrections of calibrated persistence are fit on the same rows: the persistence
    logistic (:class:`PersistenceLogisticClassifier`, linear, per horizon) and a heavily
    regularised HistGradientBoosting whose inputs are every feature *and* the persistence
    logit (so its trees start from "cloud persists" and learn the non-linear rest, e.g. how
    humidity matters differently under clear and overcast skies). Their logits are averaged
    (``boosting_weight``) and the blend's departure from the persistence logit is shrunk:
    P = σ(ℓ_p + λ·(ℓ_blend − ℓ_p)), λ = ``shrinkage``. Averaging a linear and a tree model
    cancels part of each one's station-specific errors; the shrinkage keeps a station with an
    unfamiliar climate from losing to calibrated persistence.

    Parameters
    ----------
    C, max_iter : of the persistence logistic
    prior_strength : calibrated persistence's Beta prior
    shrinkage : λ, the share of the blended correction kept (0 = calibrated persistence)
    boosting_weight : weight of the boosting's logit in the blend (1 − it: the logistic's)
    learning_rate, boosting_iter, max_depth, min_samples_leaf, l2_regularization, max_bins :
        of the boosting (no early stopping: it would split nights at random)
    boosting_subsample : share of the rows (drawn with ``random_state``) the boosting is fit
        on, ``min_samples_leaf`` scaled with it; the twelve horizons of one hour share their
        weather, so half the rows carry nearly all of it at half the time
    random_state : seed of the boosting and of its row sample
    """

    def __init__(self, C: float = 0.1, max_iter: int = 1000, prior_strength: float = 1.0,
                 shrinkage: float = 0.7, boosting_weight: float = 0.7,
                 learning_rate: float = 0.075, boosting_iter: int = 100, max_depth: int = 3,
                 min_samples_leaf: int = 1000, l2_regularization: float = 5.0,
                 max_bins: int = 255, boosting_subsample: float = 1.0, random_state: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.prior_strength = prior_strength
        self.shrinkage = shrinkage
        self.boosting_weight = boosting_weight
        self.learning_rate = learning_rate
        self.boosting_iter = boosting_iter
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.boosting_subsample = boosting_subsample
        self.random_state = random_state

    def _boosting_inputs(self, X: pd.DataFrame) -> np.ndarray:
        """The features and the persistence logit, in float32 as ONNX computes them."""
        persistence = to_logit(self.logistic_.persistence_.predict_proba(X)[:, 1])
        return np.column_stack([X.to_numpy(dtype=np.float32),
                                persistence.astype(np.float32)])

    def fit(self, X: pd.DataFrame, y: Any) -> PersistenceBlendClassifier:
        for name in ("shrinkage", "boosting_weight"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"persistence blend: {name} must lie in [0, 1], got "
                                 f"{getattr(self, name)!r}")
        if not 0.0 < float(self.boosting_subsample) <= 1.0:
            raise ValueError(f"persistence blend: boosting_subsample must lie in (0, 1], got "
                             f"{self.boosting_subsample!r}")
        y = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.logistic_ = PersistenceLogisticClassifier(
            C=self.C, prior_strength=self.prior_strength, max_iter=self.max_iter).fit(X, y)
        keep = np.ones(len(X), dtype=bool)
        if self.boosting_subsample < 1.0:
            rng = np.random.default_rng(self.random_state)
            keep = rng.random(len(X)) < self.boosting_subsample
        self.boosting_ = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.boosting_iter,
            max_depth=self.max_depth,
            min_samples_leaf=max(1, round(self.min_samples_leaf * self.boosting_subsample)),
            l2_regularization=self.l2_regularization, max_bins=self.max_bins,
            early_stopping=False, random_state=self.random_state,
        ).fit(self._boosting_inputs(X)[keep], y[keep])
        return self

    def logits(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The persistence logit, the logistic's and the boosting's, per row."""
        check_is_fitted(self, "boosting_")
        persistence = to_logit(self.logistic_.persistence_.predict_proba(X)[:, 1])
        horizons = X[HORIZON].to_numpy(dtype=int)
        model = self.logistic_
        row = np.abs(horizons[:, None] - model.horizons_[None, :]).argmin(axis=1)
        logistic = np.einsum("ij,ij->i", model._design(X), model.coef_[row]) \
            + model.intercept_[row]
        boosting = self.boosting_.decision_function(self._boosting_inputs(X))
        return persistence, logistic, boosting

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        persistence, logistic, boosting = self.logits(X)
        blend = (1 - self.boosting_weight) * logistic + self.boosting_weight * boosting
        logit = persistence + self.shrinkage * (blend - persistence)
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


CANDIDATES = (
    "persistence",
    "calibrated_persistence",
    "logistic_regression",
    "hist_gradient_boosting",
    "persistence_stack",
    "persistence_logistic",
    "persistence_logistic_shrunk",
    "persistence_blend",
)


def build_candidate(name: str, params: dict[str, Any], seed: int,
                    clear_max_opaque_tenths: float) -> BaseEstimator:
    """A fresh, unfitted candidate by name, with its hyper-parameters from ``params.yaml``."""
    if name == "persistence":
        return PersistenceClassifier(clear_max_opaque_tenths=clear_max_opaque_tenths)
    if name == "calibrated_persistence":
        return CalibratedPersistenceClassifier(**params)
    if name == "logistic_regression":
        return Pipeline([
            ("impute", median_imputer()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(random_state=seed, **params)),
        ])
    if name == "hist_gradient_boosting":
        # early stopping would hold out a random tenth of the rows, mixing hours of one night
        # into both sides; the validation months do that job instead
        params = {"early_stopping": False, **params}
        return HistGradientBoostingClassifier(random_state=seed, **params)
    if name == "persistence_stack":
        return PersistenceStackClassifier(random_state=seed, **params)
    if name in ("persistence_logistic", "persistence_logistic_shrunk"):
        # the same recipe; "shrunk" keeps only part of the weather's correction (its
        # `shrinkage` in params.yaml), which transfers better to a station never seen
        return PersistenceLogisticClassifier(**params)
    if name == "persistence_blend":
        return PersistenceBlendClassifier(random_state=seed, **params)
    raise ValueError(
        f"unknown candidate {name!r} in params.yaml 'train.candidates'; "
        f"choose from {', '.join(CANDIDATES)}"
    )
