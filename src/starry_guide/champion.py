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
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from starry_guide import evaluate
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
    incumbent: str | None
    details: dict = field(default_factory=dict)


def gate(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, p_baseline: np.ndarray,
         horizons: np.ndarray, nights: np.ndarray, *, n_boot: int, confidence: float,
         horizon_tolerance: float, seed: int) -> tuple[bool, list[str], dict]:
    """The champion gate: may ``p_new`` replace ``p_old``?

    Yes only if (1) its pooled Brier improvement is significant — the paired bootstrap over
    whole nights gives a ``confidence`` CI of Brier(new) − Brier(old) entirely below 0 — and
    (2) at no horizon is its Brier skill vs calibrated persistence (``p_baseline``) below
    ``-horizon_tolerance``. Returns (passed, reasons, details).
    """
    y = np.asarray(y, dtype=float)
    boot = evaluate.paired_bootstrap_brier(y, p_new, p_old, nights, n_boot, seed, confidence)
    reasons = []
    significant = boot["ci_high"] < 0
    if significant:
        reasons.append(f"Brier improves by {-boot['brier_difference']:.5f} "
                       f"({confidence:.0%} CI {-boot['ci_high']:.5f}..{-boot['ci_low']:.5f}, "
                       f"bootstrap over {int(boot['nights'])} nights)")
    else:
        reasons.append(f"Brier difference {boot['brier_difference']:+.5f} is not significant "
                       f"({confidence:.0%} CI {boot['ci_low']:+.5f}..{boot['ci_high']:+.5f} "
                       "includes or exceeds 0)")
    bss = {}
    for h in np.unique(horizons):
        at = horizons == h
        ref = np.mean((p_baseline[at] - y[at]) ** 2)
        bss[int(h)] = float(1 - np.mean((p_new[at] - y[at]) ** 2) / ref) if ref > 0 else 0.0
    losing = {h: v for h, v in bss.items() if v < -horizon_tolerance}
    if losing:
        reasons.append("worse than calibrated persistence at horizon(s) "
                       + ", ".join(f"{h} h (BSS {v:+.3f})" for h, v in losing.items())
                       + f", beyond the tolerance {horizon_tolerance}")
    details = {**boot, "bss_by_horizon": bss, "losing_horizons": sorted(losing)}
    return significant and not losing, reasons, details


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
    """Score the trained candidates on every split, rank them on validation, pass the best
    through the :func:`gate` against the incumbent (the registry's champion, or calibrated
    persistence when there is none yet), and move the aliases.

    ``rows`` carry a ``split`` column; ``model_uris`` map candidate -> MLflow model URI.
    """
    import mlflow.sklearn

    from starry_guide import tracking
    from starry_guide.training import BASELINE, predict_clear, split_xy

    metric = settings.select.metric
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
    X_val, y_val = split_xy(rows, "validation", settings)
    val_rows = rows.loc[rows["split"] == "validation"]
    p_base_val = predict_clear(loaded[BASELINE], X_val)

    def score_all(model) -> tuple[dict[str, dict[str, float]], np.ndarray]:
        p_val = predict_clear(model, X_val)
        threshold = evaluate.choose_threshold(y_val, p_val, settings.train.threshold_metric)
        out = {}
        for split in ("validation", "held_out", "unseen"):
            X, y = split_xy(rows, split, settings)
            if len(y):
                out[split] = evaluate.scores(y, predict_clear(model, X), threshold,
                                             predict_clear(loaded[BASELINE], X))
        return out, p_val

    scores, prints, p_vals = {}, {}, {}
    for name, model in loaded.items():
        scores[name], p_vals[name] = score_all(model)
        prints[name] = fingerprint(name, p_vals[name])
    ranking = rank({n: s["validation"] for n, s in scores.items()}, metric)
    best = ranking[0]

    client = MlflowClient()
    name = settings.select.model_name
    tags = tracking.lineage_tags(settings)
    tags["training_rows"] = str(int((rows["split"] == "train").sum()))
    tags["params"] = json.dumps(settings.as_dict()["train"], sort_keys=True, default=str)[:4900]
    current = current_version(client, name, CHAMPION)
    incumbent_scores, p_incumbent, incumbent = None, None, None
    if current is not None:
        try:
            incumbent_model = mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")
            incumbent_scores, p_incumbent = score_all(incumbent_model)
            incumbent = current.tags.get("candidate", "champion")
        except Exception as exc:  # e.g. trained on other feature columns
            current_problem = f"the current champion cannot score today's rows ({exc})"
        else:
            current_problem = None

    if p_incumbent is None:  # no (usable) champion: calibrated persistence is the incumbent
        p_incumbent, incumbent = p_base_val, BASELINE
    champion_print = current.tags.get("fingerprint") if incumbent_scores is not None else None
    # challengers in ranking order; the first to pass the gate is promoted. Below the
    # incumbent in the ranking none can beat it, so the search stops there.
    tried, decision, details = [], None, {}
    for candidate in ranking:
        if prints[candidate] == champion_print or (champion_print is None
                                                    and candidate == BASELINE):
            break
        passed, reasons, candidate_details = gate(
            y_val, p_vals[candidate], p_incumbent, p_base_val,
            val_rows["horizon_h"].to_numpy(), evaluate.night_ids(val_rows),
            n_boot=settings.select.bootstrap_samples, confidence=settings.select.confidence,
            horizon_tolerance=settings.select.horizon_tolerance_bss, seed=settings.seed)
        tried.append(f"{candidate} vs {incumbent}: "
                     f"{'promoted' if passed else 'not promoted'} — " + "; ".join(reasons))
        details = details or candidate_details  # the best-ranked challenger's numbers
        if passed:
            decision = Decision(True, tried[-1], candidate, incumbent, candidate_details)
            break
    if decision is None and incumbent_scores is not None:
        verdict = "the champion stays" if tried else \
            "the best candidate is the current champion (same model)"
        decision = Decision(False, "; ".join([*tried, verdict]), best, incumbent, details)
    elif decision is None:
        verdict = "calibrated persistence becomes the champion" if tried else \
            "no champion yet; calibrated persistence ranks first"
        decision = Decision(True, "; ".join([*tried, verdict]), BASELINE, incumbent, details)
    if current is not None and incumbent_scores is None:
        decision.reason = f"{current_problem}; {decision.reason}"

    def version_of(candidate: str):
        return register(client, name, model_uris[candidate], prints[candidate],
                        {**tags, "candidate": candidate, "selection_metric": metric,
                         f"validation_{metric}": str(scores[candidate]["validation"][metric])})

    winner = decision.candidate if decision.promote else None
    if winner is not None:
        champion_version = version_of(winner)
        client.set_registered_model_alias(name, CHAMPION, champion_version.version)
        final_scores, champion_candidate = scores[winner], winner
        runner_up = next((c for c in ranking if c != winner), None)
    else:
        champion_version = current
        final_scores = incumbent_scores
        champion_candidate = current.tags.get("candidate", "unknown")
        runner_up = next((c for c in ranking if prints[c] != champion_print), None)
    challenger = version_of(runner_up) if runner_up else None
    if challenger is not None and challenger.version != champion_version.version:
        client.set_registered_model_alias(name, CHALLENGER, challenger.version)
    for key, value in {"last_decision": decision.reason[:4900],
                       "gate_ci_low": str(decision.details.get("ci_low", "")),
                       "gate_ci_high": str(decision.details.get("ci_high", ""))}.items():
        client.set_model_version_tag(name, champion_version.version, key, value)
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
