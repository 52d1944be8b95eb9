"""Fit every candidate on the training months, score it on the validation months, and log
each as one MLflow run (params, metrics, model with signature, figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator

from starry_guide import evaluate, models, tracking
from starry_guide.config import Settings
from starry_guide.features import feature_columns

BASELINE = "calibrated_persistence"


@dataclass
class CandidateResult:
    name: str
    model: BaseEstimator
    validation: dict[str, float]
    by_horizon: pd.DataFrame
    p_validation: np.ndarray
    run_id: str = ""
    model_uri: str = ""


def split_xy(rows: pd.DataFrame, split: str, settings: Settings) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature matrix and labels of one split."""
    part = rows.loc[rows["split"] == split]
    return part[feature_columns(settings.features)], part["clear"].to_numpy()


def predict_clear(model: BaseEstimator, X: pd.DataFrame) -> np.ndarray:
    """P(clear) of each row."""
    return model.predict_proba(X)[:, 1]


def fit_candidates(rows: pd.DataFrame, settings: Settings) -> dict[str, CandidateResult]:
    """Fit each ``train.candidates`` entry and score it on validation against the baseline.

    The calibrated-persistence baseline is always fitted (it is the BSS reference), even
    when it is not listed as a candidate.
    """
    X_train, y_train = split_xy(rows, "train", settings)
    X_val, y_val = split_xy(rows, "validation", settings)
    val_rows = rows.loc[rows["split"] == "validation"].reset_index(drop=True)
    names = list(dict.fromkeys([BASELINE, *settings.train.candidates]))
    fitted = {}
    for name in names:
        model = models.build_candidate(name, settings.train.params_for(name), settings.seed,
                                       settings.label.clear_max_opaque_tenths)
        fitted[name] = model.fit(X_train, y_train)
    p_reference = predict_clear(fitted[BASELINE], X_val)
    results = {}
    for name in settings.train.candidates:
        p = predict_clear(fitted[name], X_val)
        results[name] = CandidateResult(
            name=name,
            model=fitted[name],
            validation=evaluate.scores(y_val, p, settings.train.decision_threshold, p_reference),
            by_horizon=evaluate.scores_by_horizon(val_rows, p, settings.train.decision_threshold,
                                                  p_reference),
            p_validation=p,
        )
    return results


def trusted_types(model: BaseEstimator) -> list[str]:
    """Types skops must trust to load ``model``: exactly those in its own dump."""
    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def log_candidates(results: dict[str, CandidateResult], rows: pd.DataFrame, settings: Settings,
                   figures_dir: Path) -> None:
    """One MLflow run per candidate in the train experiment; fills ``run_id``/``model_uri``."""
    tracking.configure(settings, tracking.TRAIN_EXPERIMENT)
    X_val, y_val = split_xy(rows, "validation", settings)
    example = X_val.head(5)
    tags = tracking.lineage_tags(settings)
    train_rows = int((rows["split"] == "train").sum())
    for name, result in results.items():
        with mlflow.start_run(run_name=f"train-{name}", tags={**tags, "candidate": name}) as run:
            mlflow.log_params({
                "candidate": name,
                "seed": settings.seed,
                "train_rows": train_rows,
                "decision_threshold": settings.train.decision_threshold,
                **{f"hp_{k}": v for k, v in settings.train.params_for(name).items()},
            })
            mlflow.log_metrics({f"val_{k}": v for k, v in result.validation.items()
                                if np.isfinite(v)})
            for h, row in result.by_horizon.iterrows():
                mlflow.log_metric("val_brier_by_horizon", float(row["brier"]), step=int(h))
            signature = infer_signature(example, result.model.predict_proba(example)[:, 1])
            info = mlflow.sklearn.log_model(
                result.model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=tracking.pip_requirements(),
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=trusted_types(result.model),
            )
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


def metrics_table(results: dict[str, CandidateResult]) -> pd.DataFrame:
    """Pooled validation metrics, one row per candidate."""
    return pd.DataFrame({name: r.validation for name, r in results.items()}).T


def horizon_table(results: dict[str, CandidateResult], metric: str) -> pd.DataFrame:
    """One validation metric per horizon (rows) and candidate (columns)."""
    return pd.DataFrame({name: r.by_horizon[metric] for name, r in results.items()})
