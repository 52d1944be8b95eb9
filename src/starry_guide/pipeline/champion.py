"""Champion selection, the select stage's wiring: load the candidates (MLflow) and the
incumbent (``models/champion/``), score them, rank them, decide — the decision's statistics
are :mod:`starry_guide.core.gate`, the words explaining it are rendered here — and export
the champion's bundle. Every change to the model registry (versions, aliases, tags, history,
rollback) is :mod:`starry_guide.pipeline.registry`'s, and happens only after the stage's
outputs are written.

**The incumbent is a tracked input.** ``models/champion/`` (committed with the pipeline's
outputs) holds the champion in production: ``champion.json`` (candidate, content id
``model_id``, scores, models rolled back from) and the ONNX ``bundle/`` that serves it. The
gate judges every challenger against *that* model's predictions, so a decision is a function
of files DVC and git track — a fresh clone decides exactly as this workspace does. The
registry's ``@champion`` must agree with it (checked; a disagreement or a registry read error
stops the stage, naming both). Only when ``models/champion/`` does not exist yet is the
registry's ``@champion`` adopted, and only when there is none is calibrated persistence the
incumbent (the baseline may be champion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from starry_guide.artifacts import champion_card as champion_file
from starry_guide.artifacts.champion_card import ChampionCard
from starry_guide.artifacts.reports import read_json
from starry_guide.config import Settings
from starry_guide.core import adaptation, evaluate
from starry_guide.core import gate as core_gate
from starry_guide.core.evaluate import GREATER_IS_BETTER
from starry_guide.pipeline.training import BASELINE, model_id, predict_clear, split_xy

SPLITS = ("validation", "held_out", "unseen")


def rank(scores: dict[str, dict[str, float]], metric: str) -> list[str]:
    """Candidate names, best first, by ``metric`` (ties broken by name, for determinism)."""
    sign = -1.0 if metric in GREATER_IS_BETTER else 1.0
    return sorted(scores, key=lambda name: (sign * scores[name][metric], name))


def gate(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, p_baseline: np.ndarray,
         horizons: np.ndarray, nights: np.ndarray, *, n_boot: int, confidence: float,
         horizon_tolerance: float, seed: int) -> tuple[bool, list[str], dict]:
    """The champion gate on the validation months: may ``p_new`` replace ``p_old``?

    Yes only if (1) its pooled Brier improvement is significant — the paired bootstrap over
    whole nights gives a ``confidence`` CI of Brier(new) − Brier(old) entirely below 0 — and
    (2) at no horizon is its Brier skill vs calibrated persistence (``p_baseline``) below
    ``-horizon_tolerance``. The statistics are :func:`starry_guide.core.gate.validation_gate`;
    this adds the reasons. Returns (passed, reasons, details).
    """
    result = core_gate.validation_gate(y, p_new, p_old, p_baseline, horizons, nights,
                                       n_boot=n_boot, confidence=confidence,
                                       horizon_tolerance=horizon_tolerance, seed=seed)
    return result["passed"], validation_reasons(result, horizon_tolerance), {
        k: v for k, v in result.items() if k not in ("better", "worse", "passed")}


def _level_text(confidence: float) -> str:
    return f"{confidence:.1%}".replace(".0%", "%")


def validation_reasons(result: dict, horizon_tolerance: float) -> list[str]:
    """The validation gate's result (:func:`starry_guide.core.gate.validation_gate`) in
    words."""
    level = _level_text(result["confidence"])
    if result["better"]:
        reasons = [f"Brier improves by {-result['brier_difference']:.5f} "
                   f"({level} CI {-result['ci_high']:.5f}..{-result['ci_low']:.5f}, "
                   f"bootstrap over {int(result['nights'])} nights)"]
    else:
        reasons = [f"Brier difference {result['brier_difference']:+.5f} is not significant "
                   f"({level} CI {result['ci_low']:+.5f}..{result['ci_high']:+.5f} "
                   "includes or exceeds 0)"]
    losing = {h: result["bss_by_horizon"][h] for h in result["losing_horizons"]}
    if losing:
        reasons.append("worse than calibrated persistence at horizon(s) "
                       + ", ".join(f"{h} h (BSS {v:+.3f})" for h, v in losing.items())
                       + f", beyond the tolerance {horizon_tolerance}")
    return reasons


def held_out_reason(label: str, result: dict) -> str:
    """One further test's comparison (:func:`starry_guide.core.gate.comparison`) in words."""
    return (f"{label}: Brier difference {result['brier_difference']:+.5f} "
            f"({_level_text(result['confidence'])} CI {result['ci_low']:+.5f}.."
            f"{result['ci_high']:+.5f}, bootstrap over {int(result['nights'])} nights): "
            + ("significantly better" if result["better"] else
               "significantly worse" if result["worse"] else "not significant"))


@dataclass
class Incumbent:
    """The model every challenger must beat."""

    candidate: str
    model_id: str
    source: str  # "models/champion", "registry" or "baseline"
    predict: Callable[[pd.DataFrame], np.ndarray]  # P(clear) of model rows
    estimator: object | None = None  # its scikit-learn estimator, when one is at hand
    rolled_back: list[dict] = field(default_factory=list)
    note: str = ""  # why the incumbent is not what one would expect (e.g. cannot score)
    station_maps: dict = field(default_factory=dict)  # its station adaptation (adaptation.py)


@dataclass
class Decision:
    promote: bool
    reason: str
    candidate: str  # the best-ranked candidate
    incumbent: str  # the incumbent's candidate name
    details: dict = field(default_factory=dict)  # the best-ranked challenger's gate numbers
    tried: list[dict] = field(default_factory=list)
    champion: str = ""  # candidate name of the champion after the decision
    champion_model_id: str = ""
    incumbent_model_id: str = ""


@dataclass
class HeldOutTest:
    """Nights beside the validation months on which every challenger is judged against the
    incumbent: the most recent production window (station maps applied), or new places
    (each recipe refit leaving one station out, scored on that station's validation months).

    ``p`` maps a candidate to its P(clear) on ``rows`` (a dict, or a function computing it
    on demand — leave-one-station-out refits are only paid for challengers actually tried).
    """

    rows: pd.DataFrame  # clear, and night ids (``night`` + ``station_id``, or the columns
    #                     evaluate.night_ids needs)
    p: dict[str, np.ndarray] | Callable[[str], np.ndarray]
    #: the incumbent's P(clear) on ``rows``, or a function computing it when first needed
    p_incumbent: np.ndarray | Callable[[], np.ndarray]
    nights: int
    label: str = "recent production window"
    key: str = "recent"  # where the decision record keeps its numbers
    screens: bool = True  # a gain here alone makes a candidate a challenger
    #: calibrated persistence on the same rows: a challenger must not fall below it by more
    #: than ``select.horizon_tolerance_bss`` (the input-profile tests: robustness)
    p_baseline: np.ndarray | None = None
    _computed: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def predict(self, name: str) -> np.ndarray:
        """``name``'s P(clear) on ``rows``; computed once (screening and the gate both ask)."""
        if isinstance(self.p, dict):
            return self.p[name]
        if name not in self._computed:
            self._computed[name] = self.p(name)
        return self._computed[name]

    def incumbent(self) -> np.ndarray:
        """The incumbent's P(clear) on ``rows`` (computed once, when first needed)."""
        if callable(self.p_incumbent):
            self.p_incumbent = self.p_incumbent()
        return self.p_incumbent

    def night_ids(self) -> np.ndarray:
        if "night" in self.rows.columns:
            return pd.factorize(self.rows["station_id"].astype(str) + "/"
                                + self.rows["night"].astype(str))[0]
        return evaluate.night_ids(self.rows)


def decide(ranking: list[str], model_ids: dict[str, str], p_validation: dict[str, np.ndarray],
           incumbent: Incumbent, p_incumbent: np.ndarray, p_baseline: np.ndarray,
           val_rows: pd.DataFrame, settings: Settings,
           validation_scores: dict[str, dict[str, float]],
           incumbent_validation: dict[str, float],
           recent: HeldOutTest | None = None, transfer: HeldOutTest | None = None,
           profile_tests: list[HeldOutTest] | None = None) -> Decision:
    """Challengers in ranking order against the incumbent; the first to pass is promoted.

    On the validation months alone this is the :func:`gate`: a candidate that does not rank
    above the incumbent on the validation metric cannot beat it, so the search stops there.
    With further held-out nights — the most recent production window (``recent``, at least
    ``production.min_recent_nights`` nights: what matters now) and new places (``transfer``:
    the challenger's recipe vs the incumbent's, leave one station out on validation months:
    what a user at a new place gets) and the validation months under each input profile
    (``profile_tests``: the same rows with a poorer source's inputs, see
    :mod:`starry_guide.core.profiles` — robustness) — a challenger is judged on each: it is
    promoted when its Brier improvement is significant on **any** of them, it is
    significantly worse on **none**, no horizon falls below calibrated persistence on
    validation, and under no input profile does its pooled skill fall below calibrated
    persistence (fit on that profile's fields) by more than ``select.horizon_tolerance_bss``.
    Candidates better than the incumbent on validation, on the recent window or under a
    profile are challengers. Models rolled back from are never tried again.

    Trying several challengers (and several tests each) on the same nights inflates the
    chance that one passes by luck, so each test is judged at a Bonferroni-corrected level:
    with ``k`` challengers and ``m`` tests, ``1 - (1 - select.confidence) / (k * m)``.
    """
    blocked = {entry["model_id"] for entry in incumbent.rolled_back}
    metric = settings.select.metric
    sign = 1.0 if metric in GREATER_IS_BETTER else -1.0
    # cheapest first: the new-places test refits recipes, so it is judged last (and only
    # when nothing before refused the challenger)
    tests = [t for t in (recent, *(profile_tests or ()), transfer) if t is not None
             and len(t.rows) and (t is not recent
                                  or t.nights >= settings.production.min_recent_nights)]
    screening = [t for t in tests if t.screens]
    better_elsewhere = set()
    for t in screening:
        y_t = t.rows["clear"].to_numpy(dtype=float)
        old = np.mean((t.incumbent() - y_t) ** 2)
        better_elsewhere |= {n for n in ranking if np.mean((t.predict(n) - y_t) ** 2) < old}
    challengers = []
    for name in ranking:
        if model_ids[name] == incumbent.model_id:
            if not screening:
                break
            continue
        better = (sign * validation_scores[name][metric]
                  > sign * incumbent_validation[metric])
        if not better and not screening:
            break
        if (better or name in better_elsewhere) and model_ids[name] not in blocked:
            challengers.append(name)
    m = 1 + len(tests)
    level = core_gate.bonferroni_level(settings.select.confidence, len(challengers), m)
    y = val_rows["clear"].to_numpy()
    horizons, nights = val_rows["horizon_h"].to_numpy(), evaluate.night_ids(val_rows)
    tried, texts, winner, best_details = [], [], None, {}
    n_boot, seed = settings.select.bootstrap_samples, settings.seed
    for name in challengers:
        passed, reasons, details = gate(
            y, p_validation[name], p_incumbent, p_baseline, horizons, nights,
            n_boot=n_boot, confidence=level,
            horizon_tolerance=settings.select.horizon_tolerance_bss, seed=seed)
        entry = {"candidate": name, "model_id": model_ids[name], "passed": passed,
                 "reasons": reasons, "brier_difference": details["brier_difference"],
                 "ci_low": details["ci_low"], "ci_high": details["ci_high"],
                 "confidence": level, "nights": details["nights"],
                 "losing_horizons": details["losing_horizons"]}
        if tests:
            validation = {**details, "better": details["ci_high"] < 0,
                          "worse": details["ci_low"] > 0}
            held_out, below_floor = [], []
            reasons = [f"validation months: {reasons[0]}", *reasons[1:]]
            for t in tests:
                if t.key == "transfer" and name == incumbent.candidate:
                    # the same recipe at new places: identical refits, a difference of 0
                    reasons.append(f"{t.label}: the champion's own recipe, nothing to compare")
                    continue
                if (validation["worse"] or validation["losing_horizons"] or below_floor
                        or any(h["worse"] for h in held_out)):
                    # refused already, whatever this test says: its (costly) refits are
                    # not paid for
                    reasons.append(f"{t.label}: not judged (refused above)")
                    continue
                p_t = t.predict(name)
                now = core_gate.comparison(t.rows["clear"].to_numpy(dtype=float),
                                           p_t, t.incumbent(), t.night_ids(),
                                           n_boot=n_boot, confidence=level, seed=seed)
                held_out.append(now)
                reasons.append(held_out_reason(t.label, now))
                entry[t.key] = {k: now[k] for k in ("brier_difference", "ci_low", "ci_high",
                                                     "nights")}
                if t.p_baseline is not None:
                    floor = core_gate.profile_floor(
                        t.rows["clear"].to_numpy(dtype=float), p_t, t.p_baseline,
                        settings.select.horizon_tolerance_bss)
                    entry[t.key]["bss_vs_calibrated_persistence"] = floor["bss"]
                    if floor["below"]:
                        below_floor.append(t.label)
                        reasons.append(
                            f"{t.label}: worse than calibrated persistence (BSS "
                            f"{floor['bss']:+.3f}, beyond the tolerance "
                            f"{settings.select.horizon_tolerance_bss})")
                details = {**details, t.key: entry[t.key]}
            if validation["worse"]:
                reasons.append("significantly worse on the validation months")
            passed = core_gate.passes(validation, held_out) and not below_floor
            entry.update(passed=passed, reasons=reasons)
        tried.append(entry)
        # the champion's own recipe, retrained on today's data, is a model of its own
        label = f"{name} (retrained)" if name == incumbent.candidate else name
        texts.append(f"{label} vs the champion {incumbent.candidate}: "
                     f"{'promoted' if passed else 'not promoted'} — " + "; ".join(reasons))
        best_details = best_details or details
        if passed:
            winner = name
            break
    skipped = [n for n in ranking if model_ids[n] in blocked]
    if skipped:
        texts.append("not tried (rolled back from): " + ", ".join(skipped))
    if len(challengers) * m > 1:
        texts.append(f"{len(challengers)} challenger(s) x {m} test(s): each judged at "
                     f"{level:.2%} (Bonferroni for {settings.select.confidence:.0%} overall)")
    if winner is not None:
        champion, champion_id, promote = winner, model_ids[winner], True
        texts.insert(len(tried), f"{winner} becomes the champion")
    elif incumbent.source == "baseline":
        champion, champion_id, promote = incumbent.candidate, incumbent.model_id, True
        texts.append("no champion yet: calibrated persistence becomes the champion")
    else:
        champion, champion_id, promote = incumbent.candidate, incumbent.model_id, False
        texts.append("the champion stays" if tried else
                     "no candidate beats the champion on validation or the recent window: "
                     "the champion stays" if screening else
                     "no candidate ranks above the champion: the champion stays")
    if incumbent.note:
        texts.insert(0, incumbent.note)
    return Decision(promote=promote, reason="; ".join(texts), candidate=ranking[0],
                    incumbent=incumbent.candidate, details=best_details, tried=tried,
                    champion=champion, champion_model_id=champion_id,
                    incumbent_model_id=incumbent.model_id)


@dataclass
class Selection:
    """Outcome of the select stage (before anything is written)."""

    ranking: list[str]
    decision: Decision
    incumbent: Incumbent
    model_ids: dict[str, str]
    model_uris: dict[str, str]
    estimators: dict[str, object]
    scores: dict[str, dict[str, dict[str, float]]]  # candidate | "champion" | "incumbent"
    challenger: str | None  # best-ranked candidate that is not the champion
    station_maps: dict[str, dict] = field(default_factory=dict)  # candidate -> its maps
    recent_window: dict = field(default_factory=dict)  # what the gate's "now" test saw
    transfer_test: dict = field(default_factory=dict)  # what its "new places" test saw
    profile_test: dict = field(default_factory=dict)  # what its input-profile tests saw

    @property
    def champion_station_maps(self) -> dict:
        """The champion's station adaptation (empty: none)."""
        if self.decision.champion_model_id == self.incumbent.model_id:
            return self.incumbent.station_maps
        return self.station_maps.get(self.decision.champion, {})

    @property
    def champion_candidate(self) -> str:
        return self.decision.champion

    @property
    def champion_model_id(self) -> str:
        return self.decision.champion_model_id

    @property
    def champion_estimator(self):
        """The champion's scikit-learn estimator, or None (a kept champion that is not among
        today's candidates and not in the registry: scored through its ONNX bundle)."""
        if self.decision.champion_model_id == self.incumbent.model_id:
            return self.incumbent.estimator
        return self.estimators[self.decision.champion]

    def predict_champion(self, X: pd.DataFrame) -> np.ndarray:
        estimator = self.champion_estimator
        if estimator is not None:
            return predict_clear(estimator, X)
        return self.incumbent.predict(X)


def bundle_predictor(bundle_dir: Path) -> Callable[[pd.DataFrame], np.ndarray]:
    """P(clear) from a verified ONNX bundle, for rows with the bundle's feature columns."""
    from starry_guide.artifacts.bundle import load_bundle

    loaded = load_bundle(bundle_dir, threads=0)
    return loaded.predict


def incumbent_from(tracked: dict | None, champion_dir: Path, registry_champion,
                   estimators: dict[str, object], model_ids: dict[str, str],
                   load_version: Callable[[object], object]) -> Incumbent:
    """The incumbent: the tracked champion (``models/champion/``), else the registry's
    ``@champion`` (adopted once, when ``models/champion/`` does not exist yet), else the
    baseline.

    The tracked champion is scored by today's estimator when one of today's candidates *is*
    that model (same content id), otherwise through its committed ONNX bundle — what is
    served — never through an estimator loaded from this machine's registry: a fresh clone,
    whose registry is empty, must score it exactly as this workspace does.

    ``registry_champion`` is the registry's ``@champion`` version (or None: there is none);
    ``load_version`` loads a version's estimator (only to adopt a registry champion). A
    tracked champion that the registry contradicts raises
    :class:`starry_guide.pipeline.registry.RegistryError`.
    """
    from starry_guide.pipeline.registry import RegistryError, version_model_id

    by_id = {mid: name for name, mid in model_ids.items()}
    if tracked is not None:
        mid = tracked["model_id"]
        if registry_champion is not None and version_model_id(registry_champion) != mid:
            raise RegistryError(
                f"the registry's @champion is version {registry_champion.version} (model "
                f"{version_model_id(registry_champion)}), but models/champion/champion.json "
                f"(tracked) holds model {mid}. The pipeline decides against the tracked "
                "champion and will not overwrite a registry that moved elsewhere: check out "
                "the commit that holds the registry's champion, or move the registry back "
                "with `starry champion rollback VERSION --reason ...`")
        estimator = estimators.get(by_id[mid]) if mid in by_id else None
        bundle = Path(champion_dir) / "bundle"
        if estimator is not None:  # today's candidate is the champion itself
            predict = lambda X, e=estimator: predict_clear(e, X)  # noqa: E731
        elif bundle.is_dir():  # what is served, within the ONNX parity tolerance
            predict = bundle_predictor(bundle)
        else:
            raise FileNotFoundError(
                f"{bundle} is missing and model {mid} is not among today's candidates: the "
                "incumbent cannot be judged. Restore it with `git checkout -- models/champion`")
        return Incumbent(tracked["candidate"], mid, "models/champion", predict, estimator,
                         list(tracked.get("rolled_back", [])),
                         station_maps=dict(tracked.get("station_calibration", {})))
    if registry_champion is not None:
        estimator = load_version(registry_champion)
        return Incumbent(registry_champion.tags.get("candidate", "champion"),
                         version_model_id(registry_champion), "registry",
                         lambda X, e=estimator: predict_clear(e, X), estimator)
    return Incumbent(BASELINE, model_ids[BASELINE], "baseline",
                     lambda X, e=estimators[BASELINE]: predict_clear(e, X),
                     estimators[BASELINE])


def _transfer_test(rows: pd.DataFrame, estimators: dict[str, object], incumbent_recipe: str,
                   settings: Settings) -> tuple[HeldOutTest, dict]:
    """The gate's "new places" test: each recipe refit leaving one station out (research
    stations, training months) and scored on that station's validation months
    (:func:`starry_guide.pipeline.loso.leave_one_station_out` with ``design=True``), against the
    incumbent's recipe (today's candidate of the same name: recipes, not fitted models, are
    compared). Refits happen only for the challengers the gate actually judges here — the
    incumbent recipe's too: the scored rows and their nights are known without any refit."""
    from starry_guide.pipeline import loso

    research = rows[rows["source"] == "research"] if "source" in rows.columns else rows
    scored = research[(research["segment"] % 100).isin(settings.split.validation_months)]
    # the rows in the order leave_one_station_out returns them: by station, then as given
    parts = [scored[scored["station_id"] == station]
             for station in sorted(scored["station_id"].unique())]
    test_rows = pd.DataFrame({
        "station_id": np.concatenate([p["station_id"].to_numpy() for p in parts]),
        "clear": np.concatenate([p["clear"].to_numpy().astype(int) for p in parts]),
        "night": np.concatenate([evaluate.night_ids(p) for p in parts]),
    }) if parts else pd.DataFrame(columns=["station_id", "clear", "night"])
    cache: dict[str, np.ndarray] = {}

    def refit(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = loso.leave_one_station_out(rows, estimators[name], settings, name,
                                                     design=True).rows["p"].to_numpy()
        return cache[name]

    nights = int(test_rows.groupby("station_id")["night"].nunique().sum()) if parts else 0
    test = HeldOutTest(test_rows, refit, lambda: refit(incumbent_recipe), nights,
                       label="new places (leave one station out, validation months)",
                       key="transfer", screens=False)
    return test, {"rows": int(len(test_rows)), "nights": nights,
                  "stations": sorted(map(str, test_rows["station_id"].unique())),
                  "incumbent_recipe": incumbent_recipe}


def _profile_tests(profile_rows: dict[str, pd.DataFrame], estimators: dict[str, object],
                   incumbent: Incumbent, settings: Settings) -> tuple[list[HeldOutTest], dict]:
    """The gate's input-profile tests: every profile but ``full`` (the validation test
    itself), on the validation months of the rows
    :func:`starry_guide.pipeline.profiles.profile_rows` built; calibrated persistence, the
    floor, is fit on that profile's training months."""
    from starry_guide.core import models

    tests, info = [], {}
    for name, frame in profile_rows.items():
        if name == "full":
            continue
        X_val, _ = split_xy(frame, "validation", settings)
        if not len(X_val):
            continue
        val_rows = frame.loc[frame["split"] == "validation"].reset_index(drop=True)
        X_train, y_train = split_xy(frame, "train", settings)
        baseline = models.build_candidate(BASELINE, settings.train.params_for(BASELINE),
                                          settings.seed, settings.label.clear_max_opaque_tenths)
        p_baseline = predict_clear(baseline.fit(X_train, y_train), X_val)
        p_incumbent = incumbent.predict(X_val)
        test = HeldOutTest(val_rows, lambda c, X=X_val: predict_clear(estimators[c], X),
                           p_incumbent, int(len(np.unique(evaluate.night_ids(val_rows)))),
                           label=f"input profile {name} (validation months)",
                           key=f"profile_{name}", screens=True, p_baseline=p_baseline)
        tests.append(test)
        y = val_rows["clear"].to_numpy(dtype=float)
        info[name] = {"rows": int(len(val_rows)), "nights": test.nights,
                      "incumbent_bss_vs_calibrated_persistence": float(
                          core_gate.profile_floor(y, p_incumbent, p_baseline, 0.0)["bss"])}
    return tests, info


def select(rows: pd.DataFrame, model_uris: dict[str, str], settings: Settings, incumbent=None,
           registry_champion=None,
           profile_rows: dict[str, pd.DataFrame] | None = None) -> Selection:
    """Score the trained candidates on every split, rank them on validation and pass the
    challengers through the :func:`gate` against the incumbent. Writes nothing.

    ``rows`` carry a ``split`` column; ``model_uris`` map candidate -> MLflow model URI;
    ``profile_rows`` (optional) the same rows under input profiles, for the gate's profile
    tests (:func:`_profile_tests`).
    ``incumbent`` defaults to :func:`incumbent_from` the tracked ``models/champion/`` and
    the registry (read by :func:`starry_guide.pipeline.registry.current_champion`).
    """
    from starry_guide.pipeline import registry
    from starry_guide.pipeline.mlflow_model import load_estimator

    try:
        estimators = {name: load_estimator(uri) for name, uri in model_uris.items()}
    except Exception as exc:  # noqa: BLE001 - any failure to read a model is the same story
        raise LookupError(
            f"the MLflow store cannot load the candidates of reports/train_runs.json ({exc}); "
            "was mlflow.db deleted or MLFLOW_TRACKING_URI changed? Re-train with "
            "`dvc repro -f train`") from None
    if BASELINE not in estimators:
        raise ValueError(f"the baseline '{BASELINE}' was not trained; add it to "
                         "params.yaml 'train.candidates'")
    X_val, y_val = split_xy(rows, "validation", settings)
    val_rows = rows.loc[rows["split"] == "validation"]
    p_base = {split: predict_clear(estimators[BASELINE], X) for split in SPLITS
              if len(X := split_xy(rows, split, settings)[0])}

    def score_all(predict) -> tuple[dict[str, dict[str, float]], np.ndarray]:
        p_val = predict(X_val)
        threshold = evaluate.choose_threshold(y_val, p_val, settings.train.threshold_metric)
        out = {}
        for split in SPLITS:
            X, y = split_xy(rows, split, settings)
            if len(y):
                p = p_val if split == "validation" else predict(X)  # predicted just above
                out[split] = evaluate.scores(y, p, threshold, p_base[split])
        return out, p_val

    # production rows that train each candidate's station maps, and the recent window
    source = rows["source"] if "source" in rows.columns else pd.Series("research", rows.index)
    adapt_rows = rows.loc[(rows["split"] == "train") & (source == "production")]
    adapt_rows = adapt_rows.assign(night=evaluate.night_ids(adapt_rows))
    recent_rows = rows.loc[rows["split"] == "recent"].reset_index(drop=True)
    X_adapt, _ = split_xy(adapt_rows, "train", settings)
    X_recent, _ = split_xy(recent_rows, "recent", settings)

    y_recent = recent_rows["clear"].to_numpy()
    p_base_recent = predict_clear(estimators[BASELINE], X_recent) if len(recent_rows) else None

    def recent_scores(p_recent: np.ndarray, threshold: float) -> dict[str, float]:
        return evaluate.scores(y_recent, p_recent, threshold, p_base_recent)

    scores, p_vals, model_ids, maps, p_recent = {}, {}, {}, {}, {}
    for name, estimator in estimators.items():
        scores[name], p_vals[name] = score_all(lambda X, e=estimator: predict_clear(e, X))
        maps[name] = (adaptation.fit_station_maps(
            adapt_rows, predict_clear(estimator, X_adapt),
            min_nights=settings.production.min_adaptation_nights) if len(adapt_rows) else {})
        model_ids[name] = adaptation.adapted_id(model_id(name, p_vals[name]), maps[name])
        if len(recent_rows):
            p_recent[name] = adaptation.apply_station_maps(
                predict_clear(estimator, X_recent), recent_rows["station_id"], maps[name])
            scores[name]["recent"] = recent_scores(p_recent[name],
                                                   scores[name]["validation"]["threshold"])
    ranking = rank({n: s["validation"] for n, s in scores.items()}, settings.select.metric)

    if incumbent is None:
        incumbent = incumbent_from(champion_file.read(settings.paths.champion_dir),
                                   settings.paths.champion_dir, registry_champion,
                                   estimators, model_ids, registry.load_version)
    try:
        scores["incumbent"], p_incumbent = score_all(incumbent.predict)
    except Exception as exc:  # noqa: BLE001 - e.g. trained on feature columns we no longer build
        if incumbent.source == "baseline":
            raise
        note = (f"the current champion ({incumbent.candidate}, model {incumbent.model_id}) "
                f"cannot score today's rows ({type(exc).__name__}: {exc}); judged against "
                "calibrated persistence instead")
        incumbent = Incumbent(BASELINE, model_ids[BASELINE], "baseline",
                              lambda X, e=estimators[BASELINE]: predict_clear(e, X),
                              estimators[BASELINE], incumbent.rolled_back, note)
        scores["incumbent"], p_incumbent = score_all(incumbent.predict)

    window, recent_info = None, {"rows": int(len(recent_rows))}
    if len(recent_rows):
        p_recent_incumbent = adaptation.apply_station_maps(
            incumbent.predict(X_recent), recent_rows["station_id"], incumbent.station_maps)
        scores["incumbent"]["recent"] = recent_scores(
            p_recent_incumbent, scores["incumbent"]["validation"]["threshold"])
        window = HeldOutTest(recent_rows, p_recent, p_recent_incumbent,
                              int(len(np.unique(evaluate.night_ids(recent_rows)))))
        recent_info |= {
            "nights": window.nights,
            "stations": sorted(map(str, recent_rows["station_id"].unique())),
            "first_target": recent_rows["target_time"].min().isoformat(),
            "last_target": recent_rows["target_time"].max().isoformat(),
            "used_by_gate": window.nights >= settings.production.min_recent_nights}
    transfer, transfer_info = None, {}
    if settings.select.transfer_test and incumbent.candidate in estimators:
        transfer, transfer_info = _transfer_test(rows, estimators, incumbent.candidate,
                                                 settings)
    profile_tests, profile_info = [], {}
    if profile_rows:
        profile_tests, profile_info = _profile_tests(profile_rows, estimators, incumbent,
                                                     settings)
    decision = decide(ranking, model_ids, p_vals, incumbent, p_incumbent, p_vals[BASELINE],
                      val_rows, settings, {n: scores[n]["validation"] for n in estimators},
                      scores["incumbent"]["validation"], window, transfer, profile_tests)
    blocked = {entry["model_id"] for entry in incumbent.rolled_back}
    challenger = next((n for n in ranking if model_ids[n] != decision.champion_model_id
                       and model_ids[n] not in blocked), None)
    champion_scores = (scores["incumbent"] if decision.champion_model_id == incumbent.model_id
                       else scores[decision.champion])
    return Selection(ranking=ranking, decision=decision, incumbent=incumbent,
                     model_ids=model_ids, model_uris=dict(model_uris), estimators=estimators,
                     scores={**scores, "champion": champion_scores}, challenger=challenger,
                     station_maps=maps, recent_window=recent_info,
                     transfer_test=transfer_info, profile_test=profile_info)


def decision_record(selection: Selection) -> dict:
    """``reports/select_decision.json``: the decision with the incumbent it was judged
    against (content id, where it came from, its scores) — no registry version or run id,
    which differ between machines (those are in MLflow: `starry champion history`)."""
    d = selection.decision
    inc = selection.incumbent
    return {
        "promoted": d.promote,
        "reason": d.reason,
        "best_candidate": d.candidate,
        "incumbent": d.incumbent,
        "incumbent_model": {"candidate": inc.candidate, "model_id": inc.model_id,
                            "source": inc.source,
                            "scores": selection.scores.get("incumbent", {})},
        "champion": {"candidate": d.champion, "model_id": d.champion_model_id},
        "challenger": None if selection.challenger is None else {
            "candidate": selection.challenger,
            "model_id": selection.model_ids[selection.challenger]},
        "gate": d.details,
        "tried": d.tried,
        "ranking": selection.ranking,
        "model_ids": selection.model_ids,
        "rolled_back": inc.rolled_back,
        "recent_window": selection.recent_window,
        "transfer_test": selection.transfer_test,
        "profile_test": selection.profile_test,
        "champion_station_calibration": selection.champion_station_maps,
    }


def champion_card(selection: Selection, settings: Settings) -> ChampionCard:
    """``models/champion/champion.json``: what the champion is, by content id, and its
    ``history`` — the tracked champion's chain plus this decision
    (:mod:`starry_guide.artifacts.lineage`)."""
    from starry_guide.artifacts import lineage

    entry = lineage.decision_entry(decision_record(selection), lineage.fingerprints(settings))
    return ChampionCard(
        model_name=settings.select.model_name,
        candidate=selection.champion_candidate,
        model_id=selection.champion_model_id,
        scores=selection.scores["champion"],
        rolled_back=selection.incumbent.rolled_back,
        station_calibration=selection.champion_station_maps,
        history=lineage.chain(champion_file.read(settings.paths.champion_dir), entry),
    )


def export_bundle(selection: Selection, settings: Settings, rows: pd.DataFrame,
                  observations: pd.DataFrame, destination: Path) -> dict:
    """Write the champion's ONNX bundle into ``destination`` and check parity with
    scikit-learn on every held-out row (:class:`starry_guide.artifacts.onnx_export.ExportError`
    when they disagree). A kept champion with no estimator at hand keeps its tracked bundle as is.
    Returns the model card."""
    import shutil

    from starry_guide.artifacts import bundle as transfer
    from starry_guide.artifacts import onnx_export
    from starry_guide.core.features import feature_columns

    estimator = selection.champion_estimator
    if estimator is None:
        source = settings.paths.champion_dir / "bundle"
        if Path(destination).resolve() != source.resolve():
            if Path(destination).exists():
                shutil.rmtree(destination)
            shutil.copytree(source, destination)
        return read_json(Path(destination) / "model_card.json")
    X_check, _ = split_xy(rows, "held_out", settings)
    train_rows = int((rows["split"] == "train").sum())
    return onnx_export.write_bundle(
        estimator, feature_columns(settings.features), Path(destination),
        card={"model_name": settings.select.model_name,
              "version": selection.champion_model_id,
              "model_id": selection.champion_model_id,
              "candidate": selection.champion_candidate,
              "scores": selection.scores["champion"],
              "station_calibration": selection.champion_station_maps,
              "lineage": {"seed": settings.seed, "training_rows": train_rows,
                          "params": settings.as_dict()["train"]}},
        feature_spec=transfer.feature_spec(settings),
        climate=onnx_export.climatology(observations, settings.label.night_max_sun_elevation_deg,
                                     settings.label.clear_max_opaque_tenths),
        X_check=X_check, tolerance=settings.select.onnx_parity_tolerance)
