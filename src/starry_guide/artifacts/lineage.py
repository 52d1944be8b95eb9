"""The champion's lineage: every gate decision that changed or tested the champion, and every
rollback, as a chain that travels with the champion itself.

``models/champion/champion.json`` (committed; read back by the next ``select`` as the
incumbent) carries a ``history`` list, oldest first. The select stage extends the previous
tracked card's history by one entry for its own decision; ``starry champion rollback``
extends it by a rollback entry. So a fresh clone holds the whole chain, and the *Champion
history* page of the docs is built from tracked files alone.

Entries are deterministic: models are named by content id (``model_id``) and candidate name,
the data and parameters by fingerprints of their content — no wall-clock date, MLflow run id
or registry version number (those differ between machines; they stay in MLflow, where
``starry champion history`` reads them and the docs add the dates when this machine has
them).

Which decisions are recorded: every promotion (including the first champion), every decision
in which the gate actually judged a challenger (kept, with its confidence interval), and
every rollback. A select run in which no candidate ranks above the champion ran no gate and
adds nothing; a decision identical to the last entry (the same inputs decided again, e.g.
``dvc repro -f select``) adds nothing either — when only the wording of its reason changed,
the last entry takes the new wording — so re-runs never grow the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from starry_guide.artifacts.reports import jsonable
from starry_guide.config import Settings

#: ``params.yaml`` sections that shape a decision (everything upstream of ``select``)
DECISION_PARAMS = ("seed", "data", "label", "features", "split", "train", "select", "production")
#: the gate's numbers kept per judged challenger
TRIED_KEYS = ("candidate", "model_id", "passed", "brier_difference", "ci_low", "ci_high",
              "confidence", "nights", "losing_horizons", "recent", "transfer")
EVENTS = ("promoted", "kept", "rollback", "recorded")


def _digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:16]


def params_fingerprint(params: Mapping) -> str:
    """Fingerprint of the decision's parameters: a hash of the :data:`DECISION_PARAMS`
    sections of ``params`` (a :meth:`starry_guide.config.Settings.as_dict`), as canonical
    JSON.

    Parameters
    ----------
    params : mapping
        Plain parameter values by section.

    Returns
    -------
    str
        16 hexadecimal digits; equal parameters give equal fingerprints on any machine.
    """
    chosen = {key: params[key] for key in DECISION_PARAMS if key in params}
    text = json.dumps(chosen, sort_keys=True, default=str, separators=(",", ":"))
    return _digest([text.encode()])


def data_fingerprint(folder: Path) -> str:
    """Fingerprint of a data folder's content: a hash of every file's relative path and bytes.

    Parameters
    ----------
    folder : Path
        e.g. ``data/processed`` (the rows the candidates were scored on).

    Returns
    -------
    str
        16 hexadecimal digits, or ``""`` when the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return ""
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    def chunks():
        for path in files:
            yield path.relative_to(folder).as_posix().encode() + b"\0"
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    yield block
    return _digest(chunks())


def fingerprints(settings: Settings) -> dict[str, str]:
    """The ``data`` and ``params`` fingerprints of a select run (see
    :func:`data_fingerprint`, :func:`params_fingerprint`).

    Parameters
    ----------
    settings : starry_guide.config.Settings

    Returns
    -------
    dict
        ``{"data": ..., "params": ...}``.
    """
    return {"data": data_fingerprint(settings.paths.processed_dir),
            "params": params_fingerprint(settings.as_dict())}


def _model(candidate, model_id) -> dict:
    return {"candidate": candidate or "", "model_id": model_id or ""}


def decision_entry(record: Mapping, fingerprint: Mapping[str, str]) -> dict | None:
    """The history entry of one select decision, or None when it is not recorded.

    Parameters
    ----------
    record : mapping
        The decision as :func:`starry_guide.pipeline.champion.decision_record` writes it
        (``promoted``, ``reason``, ``champion``, ``incumbent_model``, ``tried``, ...).
    fingerprint : mapping
        ``data`` and ``params`` fingerprints (:func:`fingerprints`).

    Returns
    -------
    dict or None
        ``event`` (``promoted`` or ``kept``), ``champion`` and ``incumbent`` (candidate and
        content id; the incumbent's ``source``), ``first`` (no champion before), the
        challengers the gate judged with their CI (``tried``; on the validation months, and
        ``recent`` on the recent production window when the gate used it), the ``reason`` and the
        fingerprints. None for a kept champion that no challenger was judged against.
    """
    tried = [{key: entry[key] for key in TRIED_KEYS if key in entry}
             for entry in record.get("tried", [])]
    promoted = bool(record.get("promoted"))
    if not promoted and not tried:
        return None
    champion = record.get("champion") or {}
    incumbent = record.get("incumbent_model") or {}
    return {
        "event": "promoted" if promoted else "kept",
        "champion": _model(champion.get("candidate"), champion.get("model_id")),
        "incumbent": {**_model(incumbent.get("candidate", record.get("incumbent")),
                               incumbent.get("model_id")),
                      "source": incumbent.get("source", "")},
        "first": incumbent.get("source") == "baseline",
        "best_candidate": record.get("best_candidate", ""),
        "tried": tried,
        "reason": record.get("reason", ""),
        "data": fingerprint.get("data", ""),
        "params": fingerprint.get("params", ""),
    }


def rollback_entry(to: Mapping, rolled_back_from: Mapping, reason: str, by: str) -> dict:
    """The history entry of ``starry champion rollback``.

    Parameters
    ----------
    to : mapping
        The champion again: ``candidate`` and ``model_id``.
    rolled_back_from : mapping
        The champion it replaces (which the gate will not try again).
    reason, by : str
        Why, and who decided it.

    Returns
    -------
    dict
        ``event`` = ``rollback`` with ``champion``, ``incumbent`` (rolled back from),
        ``reason`` and ``by``.
    """
    return {"event": "rollback",
            "champion": _model(to.get("candidate"), to.get("model_id")),
            "incumbent": _model(rolled_back_from.get("candidate"),
                                rolled_back_from.get("model_id")),
            "reason": reason, "by": by}


def recorded_entry(card: Mapping) -> dict:
    """The first entry for a champion card written before the history was tracked: the
    champion as it was found (its earlier decisions are only in the MLflow store of the
    machine that made them)."""
    return {"event": "recorded",
            "champion": _model(card.get("candidate"), card.get("model_id")),
            "reason": "champion before the history was tracked in champion.json; earlier "
                      "decisions are in the MLflow store of the machine that made them "
                      "(`starry champion history`)"}


def previous_history(card: Mapping | None) -> list[dict]:
    """The chain a previous ``champion.json`` carries (empty when there is none; a card
    from before the history was tracked starts with a ``recorded`` entry)."""
    if not card or not card.get("model_id"):
        return []
    if "history" in card:
        return [dict(entry) for entry in card["history"]]
    return [recorded_entry(card)]


def extend(history: list[dict], entry: Mapping | None) -> list[dict]:
    """``history`` plus ``entry`` — unless there is no entry or it repeats the last one.

    Parameters
    ----------
    history : list of dict
        The chain so far, oldest first (not modified).
    entry : mapping or None

    Returns
    -------
    list of dict
        A new list.
    """
    out = [dict(e) for e in history]
    if entry is None:
        return out
    # plain values rounded as the file holds them (starry_guide.artifacts.reports.write_json),
    # so the same decision made again equals the entry read back from champion.json
    entry = jsonable(dict(entry))
    if (out and entry.get("event") != "rollback"  # a rollback's reason is the person's why
            and _without_wording(jsonable(out[-1])) == _without_wording(entry)):
        out[-1] = entry  # the same decision; its reason in today's words
        return out
    out.append(entry)
    return out


def _without_wording(entry: Mapping) -> dict:
    return {k: v for k, v in entry.items() if k != "reason"}


def chain(card: Mapping | None, entry: Mapping | None) -> list[dict]:
    """The new card's history: the previous card's (:func:`previous_history`) extended by
    ``entry`` (:func:`extend`)."""
    return extend(previous_history(card), entry)
