"""Fit every candidate on the training months, score it on the validation months, and log
each as one MLflow run (params, metrics, model with signature, figures).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from joblib import delayed
from mlflow.entities import Metric
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupKFold, ParameterSampler

from starry_guide.config import Settings
from starry_guide.core import evaluate, models
from starry_guide.core.features import feature_columns
from starry_guide.pipeline import mlflow_model, tracking
from starry_guide.pipeline.parallel import parallel

BASELINE = "calibrated_persistence"
#: candidates whose fit takes longest (boosting): started first when fitting in parallel
_SLOW_FITS = ("persistence_blend", "persistence_stack", "hist_gradient_boosting")


@dataclass
class CandidateResult:
    name: str
    model: BaseEstimator
    params: dict
    threshold: float
    validation: dict[str, float]
    by_horizon: pd.DataFrame
    p_validation: np.ndarray
    trials: list[dict] = field(default_factory=list)
    run_id: str = ""
    model_uri: str = ""

    @property
    def model_id(self) -> str:
        """Content identity of the fitted model (see :func:`model_id`)."""
        return model_id(self.name, self.p_validation)


def model_id(candidate: str, p_validation: np.ndarray) -> str:
    """Identity of a fitted model: a hash of its name and its validation predictions
    (rounded to 9 decimals). The same recipe on the same data gives the same id on any
    machine, so pipeline outputs name models by it and never by an MLflow run id."""
    import hashlib

    digest = hashlib.sha256(candidate.encode())
    digest.update(np.round(np.asarray(p_validation, dtype=float), 9).tobytes())
    return digest.hexdigest()[:16]


def split_xy(rows: pd.DataFrame, split: str, settings: Settings) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature matrix and labels of one split."""
    part = rows.loc[rows["split"] == split]
    return part[feature_columns(settings.features)], part["clear"].to_numpy()


def predict_clear(model: BaseEstimator, X: pd.DataFrame) -> np.ndarray:
    """P(clear) of each row."""
    return model.predict_proba(X)[:, 1]


def month_blocks(rows: pd.DataFrame) -> np.ndarray:
    """A group id per (station, month): the unit of blocked cross-validation."""
    return pd.factorize(rows["station_id"].astype(str) + "/" + rows["segment"].astype(str))[0]


def searches(names: list[str], rows: pd.DataFrame,
             settings: Settings) -> dict[str, tuple[dict, list[dict]]]:
    """Random search over ``train.search.<name>`` for each of ``names``, with
    ``train.search.budget`` trials each, every trial scored by pooled Brier in
    cross-validation over whole (station, month) blocks of the training months. Every
    (candidate, trial, fold) fit is an independent task run in params.yaml ``workers`` at once
    (:func:`starry_guide.pipeline.parallel.parallel`; the results do not depend on their
    number). Returns candidate -> (best parameters, trials)."""
    train = rows.loc[rows["split"] == "train"]
    X, y = train[feature_columns(settings.features)], train["clear"].to_numpy()
    blocks = month_blocks(train)
    plans: dict[str, list[dict]] = {}
    for name in names:
        space = settings.train.search_spaces.get(name)
        base = settings.train.params_for(name)
        plans[name] = [] if not space or settings.train.search_budget <= 0 else [
            {**base, **override} for override in ParameterSampler(
                space, n_iter=settings.train.search_budget, random_state=settings.seed)]
    folds = (list(GroupKFold(n_splits=settings.train.cv_folds).split(X, y, blocks))
             if any(plans.values()) else [])
    tasks = [(name, i, params, fit_rows, held)
             for name, trials in plans.items() for i, params in enumerate(trials)
             for fit_rows, held in folds]
    # results come back in task order (candidate, trial, fold), whatever the worker count
    predictions = parallel(settings.workers)(
        delayed(_fit_and_predict)(name, params, settings.seed,
                                  settings.label.clear_max_opaque_tenths, X.iloc[fit_rows],
                                  y[fit_rows], blocks[fit_rows], X.iloc[held])
        for name, _, params, fit_rows, held in tasks)
    errors: dict[tuple[str, int], list[float]] = {}
    for (name, i, _, _, held), p in zip(tasks, predictions, strict=True):
        errors.setdefault((name, i), []).append(evaluate.scores(y[held], p, 0.5)["brier"])
    out = {}
    for name, trials in plans.items():
        if not trials:
            out[name] = (settings.train.params_for(name), [])
            continue
        scored = [{"trial": i, "params": params, "cv_brier": float(np.mean(errors[name, i])),
                   "cv_brier_std": float(np.std(errors[name, i]))}
                  for i, params in enumerate(trials)]
        best = min(scored, key=lambda t: (t["cv_brier"], t["trial"]))
        out[name] = (best["params"], scored)
    return out


def _fit_and_predict(name: str, params: dict, seed: int, clear_max_opaque_tenths: float,
                     X_fit: pd.DataFrame, y_fit: np.ndarray, groups: np.ndarray,
                     X_predict: pd.DataFrame | None) -> np.ndarray | BaseEstimator:
    """One candidate fit (a joblib task): P(clear) of ``X_predict``, or the fitted model
    when ``X_predict`` is None."""
    model = models.fit(models.build_candidate(name, params, seed, clear_max_opaque_tenths),
                       X_fit, y_fit, groups)
    return model if X_predict is None else predict_clear(model, X_predict)


def fit_candidates(rows: pd.DataFrame, settings: Settings) -> dict[str, CandidateResult]:
    """Search (where configured), fit each ``train.candidates`` entry on the training months,
    and score it on the validation months against the calibrated-persistence baseline, at a
    decision threshold chosen on validation. The searches' fits, then the candidates' fits,
    run in params.yaml ``workers`` at once (identical results for any number)."""
    X_train, y_train = split_xy(rows, "train", settings)
    train_blocks = month_blocks(rows.loc[rows["split"] == "train"])
    X_val, y_val = split_xy(rows, "validation", settings)
    val_rows = rows.loc[rows["split"] == "validation"].reset_index(drop=True)
    names = list(settings.train.candidates)
    searched = searches(names, rows, settings)
    # the slowest fits first, so that two workers finish together
    order = sorted(names, key=lambda n: (n not in _SLOW_FITS, names.index(n)))
    estimators = dict(zip(order, parallel(settings.workers)(
        delayed(_fit_and_predict)(name, searched[name][0], settings.seed,
                                  settings.label.clear_max_opaque_tenths, X_train, y_train,
                                  train_blocks, None)
        for name in order), strict=True))
    fitted = {name: (estimators[name], *searched[name]) for name in names}
    p_reference = predict_clear(fitted[BASELINE][0], X_val)
    results = {}
    for name, (model, params, trials) in fitted.items():
        p = predict_clear(model, X_val)
        threshold = evaluate.choose_threshold(y_val, p, settings.train.threshold_metric)
        results[name] = CandidateResult(
            name=name, model=model, params=params, threshold=threshold, trials=trials,
            validation=evaluate.scores(y_val, p, threshold, p_reference),
            by_horizon=evaluate.scores_by_horizon(val_rows, p, threshold, p_reference),
            p_validation=p,
        )
    return results


def log_candidates(results: dict[str, CandidateResult], rows: pd.DataFrame, settings: Settings,
                   figures_dir: Path) -> None:
    """One MLflow run per candidate in the train experiment; fills ``run_id``/``model_uri``.

    Each run is tagged ``model_id`` (and ``model_uri``), which is how the select stage finds
    the candidates listed in ``reports/train_runs.json``."""
    tracking.configure(settings, tracking.TRAIN_EXPERIMENT)
    X_val, _ = split_xy(rows, "validation", settings)
    example = X_val.head(5)
    tags = tracking.lineage_tags(settings)
    train_rows = int((rows["split"] == "train").sum())
    for name, result in results.items():
        with mlflow.start_run(run_name=f"train-{name}",
                              tags={**tags, "candidate": name,
                                    "model_id": result.model_id}) as run:
            mlflow.log_params({
                "candidate": name,
                "seed": settings.seed,
                "train_rows": train_rows,
                "decision_threshold": result.threshold,
                "search_trials": len(result.trials),
                **{f"hp_{k}": v for k, v in result.params.items()},
            })
            for trial in result.trials:
                with mlflow.start_run(run_name=f"{name}-trial-{trial['trial']:02d}",
                                      nested=True, tags={**tags, "candidate": name}):
                    mlflow.log_params({f"hp_{k}": v for k, v in trial["params"].items()})
                    mlflow.log_metrics({"cv_brier": trial["cv_brier"],
                                        "cv_brier_std": trial["cv_brier_std"]})
            mlflow.log_metrics({f"val_{k}": v for k, v in result.validation.items()
                                if np.isfinite(v)})
            # the per-horizon curves (step = horizon) in one batch: one store transaction,
            # not two per horizon
            now_ms = int(time.time() * 1000)
            mlflow.tracking.MlflowClient().log_batch(run.info.run_id, metrics=[
                Metric(key, float(row[column]), now_ms, int(h))
                for h, row in result.by_horizon.iterrows()
                for key, column in (("val_brier_by_horizon", "brier"),
                                    ("val_bss_by_horizon", "bss"))])
            info = mlflow_model.log(result.model, example)
            mlflow.set_tag("model_uri", info.model_uri)
            for figure_name in (f"reliability_{name}.png", f"roc_{name}.png"):
                path = figures_dir / figure_name
                if path.is_file():
                    mlflow.log_artifact(str(path), artifact_path="figures")
            result.run_id = run.info.run_id
            result.model_uri = info.model_uri


def candidate_figures(results: dict[str, CandidateResult], y_val: np.ndarray,
                      figures_dir: Path) -> None:
    """Per-candidate reliability and ROC figures, saved as PNG under ``figures_dir``."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        curve = evaluate.reliability(y_val, result.p_validation)
        fig = evaluate.plot_reliability({name: curve}, f"Reliability — {name} (validation)")
        fig.savefig(figures_dir / f"reliability_{name}.png", dpi=80)
        plt.close(fig)
        fig = evaluate.plot_roc(y_val, {name: result.p_validation}, f"ROC — {name} (validation)")
        fig.savefig(figures_dir / f"roc_{name}.png", dpi=80)
        plt.close(fig)


def candidate_index(results: dict[str, CandidateResult]) -> dict[str, dict[str, str]]:
    """What ``reports/train_runs.json`` holds: each candidate's content id — never a run id,
    which would differ between machines (the select stage finds the run by its tag)."""
    return {name: {"model_id": r.model_id} for name, r in results.items()}


def find_runs(index: dict[str, dict[str, str]]) -> dict[str, str]:
    """candidate -> model URI of the latest train run tagged with its ``model_id``.

    Raises
    ------
    LookupError
        naming the candidates the MLflow store does not hold, and the remedy.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.TRAIN_EXPERIMENT)
    found, missing = {}, []
    for name, entry in index.items():
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.model_id = '{entry['model_id']}' and tags.candidate = '{name}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if runs and runs[0].data.tags.get("model_uri"):
            found[name] = runs[0].data.tags["model_uri"]
        else:
            missing.append(f"{name} ({entry['model_id']})")
    if missing:
        raise LookupError(
            f"the MLflow store ({mlflow.get_tracking_uri()}) holds no train run for "
            f"{', '.join(missing)} listed in reports/train_runs.json; was mlflow.db deleted "
            "or MLFLOW_TRACKING_URI changed? Re-train with `dvc repro -f train`")
    return found


def metrics_table(results: dict[str, CandidateResult]) -> pd.DataFrame:
    """Pooled validation metrics, one row per candidate."""
    return pd.DataFrame({name: r.validation for name, r in results.items()}).T


def horizon_table(results: dict[str, CandidateResult], metric: str) -> pd.DataFrame:
    """One validation metric per horizon (rows) and candidate (columns)."""
    return pd.DataFrame({name: r.by_horizon[metric] for name, r in results.items()})
