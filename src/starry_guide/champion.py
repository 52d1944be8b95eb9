"""Champion selection: rank candidates, decide against the current champion, move the
registry aliases, export the champion.

Registry conventions: one registered model (``select.model_name``); the alias ``champion``
names the version in production, ``challenger`` the best model that did not (yet) replace it.
A version is registered once per distinct model: its ``fingerprint`` tag (a hash of its
predictions on the validation rows) lets a re-run find it instead of registering a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from starry_guide.evaluate import GREATER_IS_BETTER

CHAMPION = "champion"
CHALLENGER = "challenger"


def fingerprint(candidate: str, p_validation: np.ndarray) -> str:
    """Identity of a fitted model: its name and its rounded validation predictions."""
    digest = hashlib.sha256(candidate.encode())
    digest.update(np.round(np.asarray(p_validation, dtype=float), 9).tobytes())
    return digest.hexdigest()[:16]


def rank(scores: dict[str, dict[str, float]], metric: str) -> list[str]:
    """Candidate names, best first, by ``metric`` (ties broken by name, for determinism)."""
    sign = -1.0 if metric in GREATER_IS_BETTER else 1.0
    return sorted(scores, key=lambda name: (sign * scores[name][metric], name))


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate: str
    candidate_score: float
    champion_score: float | None = None
    details: dict = field(default_factory=dict)


def decide(candidate: str, candidate_score: float, champion_score: float | None,
           metric: str, same_model: bool = False) -> Decision:
    """Promote ``candidate`` unless a current champion scores at least as well on ``metric``
    (both scored on the same, current validation rows)."""
    if champion_score is None:
        return Decision(True, "no champion yet", candidate, candidate_score)
    if same_model:
        return Decision(False, "the candidate is the current champion (same fingerprint)",
                        candidate, candidate_score, champion_score)
    better = (candidate_score > champion_score if metric in GREATER_IS_BETTER
              else candidate_score < champion_score)
    if better:
        return Decision(True, f"{metric} {candidate_score:.6g} beats the champion's "
                        f"{champion_score:.6g}", candidate, candidate_score, champion_score)
    return Decision(False, f"{metric} {candidate_score:.6g} does not beat the champion's "
                    f"{champion_score:.6g}; the champion stays", candidate, candidate_score,
                    champion_score)


def current_version(client: MlflowClient, model_name: str, alias: str):
    """The model version behind ``alias``, or None when there is none."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def register(client: MlflowClient, model_name: str, model_uri: str, model_fingerprint: str,
             tags: dict[str, str]):
    """Register ``model_uri`` unless a version with the same fingerprint exists; return it."""
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(
            model_name, description="P(clear night sky) at t+h, h = 1..12 hours (Starry Guide)"
        )
    existing = client.search_model_versions(
        f"name = '{model_name}' and tags.fingerprint = '{model_fingerprint}'"
    )
    if existing:
        return sorted(existing, key=lambda v: int(v.version))[0]
    # register_model announces itself on stderr, which would land in the notebook's outputs
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(model_uri, model_name,
                                        tags={**tags, "fingerprint": model_fingerprint})
    return client.get_model_version(model_name, version.version)


def export_model(model_uri: str, destination: Path) -> Path:
    """Copy the MLflow model at ``model_uri`` into ``destination`` (replaced atomically)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staged))
        if destination.exists():
            shutil.rmtree(destination)
        staged.rename(destination)
    return destination


@dataclass
class Selection:
    """Outcome of the select stage."""

    ranking: list[str]
    decision: Decision
    champion_candidate: str
    champion_version: str
    challenger_version: str | None
    scores: dict[str, dict[str, dict[str, float]]]  # candidate -> split -> metrics
    champion_model_uri: str


def select(rows, model_uris: dict[str, str], settings) -> Selection:
    """Score the trained candidates on every split, pick the best on validation, decide
    against the registry's current champion and move the aliases.

    ``rows`` carry a ``split`` column; ``model_uris`` map candidate -> MLflow model URI.
    """
    import mlflow.sklearn

    from starry_guide import evaluate, tracking
    from starry_guide.training import BASELINE, predict_clear, split_xy

    metric = settings.select.metric
    threshold = settings.train.decision_threshold
    try:
        loaded = {name: mlflow.sklearn.load_model(uri) for name, uri in model_uris.items()}
    except MlflowException as exc:
        raise MlflowException(
            f"reports/train_runs.json lists models the MLflow store "
            f"({mlflow.get_tracking_uri()}) does not hold ({exc.message}); was mlflow.db "
            "deleted or MLFLOW_TRACKING_URI changed? Re-train with `dvc repro -f train`"
        ) from None
    if BASELINE not in loaded:
        raise ValueError(f"the baseline '{BASELINE}' was not trained; add it to "
                         "params.yaml 'train.candidates'")

    def score_all(model) -> tuple[dict[str, dict[str, float]], np.ndarray]:
        out, p_val = {}, None
        for split in ("validation", "test", "unseen"):
            X, y = split_xy(rows, split, settings)
            if not len(y):
                continue
            p = predict_clear(model, X)
            out[split] = evaluate.scores(y, p, threshold, predict_clear(loaded[BASELINE], X))
            if split == "validation":
                p_val = p
        return out, p_val

    scores, prints = {}, {}
    for name, model in loaded.items():
        scores[name], p_val = score_all(model)
        prints[name] = fingerprint(name, p_val)
    ranking = rank({n: s["validation"] for n, s in scores.items()}, metric)
    best, runner_up = ranking[0], (ranking[1] if len(ranking) > 1 else None)

    client = MlflowClient()
    name = settings.select.model_name
    tags = tracking.lineage_tags(settings)
    current = current_version(client, name, CHAMPION)
    champion_scores = None
    if current is not None:
        try:
            champion_model = mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")
            champion_scores, _ = score_all(champion_model)
        except Exception as exc:  # e.g. trained on other feature columns
            current_reason = f"the current champion cannot score today's rows ({exc})"
        else:
            current_reason = None
    decision = decide(
        best, scores[best]["validation"][metric],
        None if champion_scores is None else champion_scores["validation"][metric],
        metric,
        same_model=current is not None and current.tags.get("fingerprint") == prints[best],
    )
    if current is not None and champion_scores is None:
        decision.reason = current_reason + "; promoting the best candidate"

    def version_of(candidate: str):
        return register(client, name, model_uris[candidate], prints[candidate],
                        {**tags, "candidate": candidate, "selection_metric": metric,
                         f"validation_{metric}": str(scores[candidate]["validation"][metric])})

    if decision.promote:
        champion_version = version_of(best)
        client.set_registered_model_alias(name, CHAMPION, champion_version.version)
        challenger = version_of(runner_up) if runner_up else None
        final_scores = scores[best]
        champion_candidate = best
    else:
        champion_version = current
        challenger = version_of(best) if prints[best] != current.tags.get("fingerprint") else None
        final_scores = champion_scores
        champion_candidate = current.tags.get("candidate", "unknown")
    if challenger is not None and challenger.version != champion_version.version:
        client.set_registered_model_alias(name, CHALLENGER, challenger.version)
    client.set_model_version_tag(name, champion_version.version, "last_decision",
                                 decision.reason)
    decision.details = {"champion_scores_on_current_rows": champion_scores}
    scores = {**scores, "champion": final_scores}
    return Selection(
        ranking=ranking,
        decision=decision,
        champion_candidate=champion_candidate,
        champion_version=str(champion_version.version),
        challenger_version=None if challenger is None else str(challenger.version),
        scores=scores,
        champion_model_uri=f"models:/{name}/{champion_version.version}",
    )
