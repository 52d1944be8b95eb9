"""The model registry: the only code that changes it (versions, aliases, tags, descriptions,
the history of decisions, rollback).

Conventions: one registered model (``select.model_name``); the alias ``champion`` names the
version in production, ``challenger`` the best model that did not (yet) replace it. A version
is registered once per distinct model: its ``model_id`` tag (a content hash, see
:func:`starry_guide.pipeline.training.model_id`) lets a re-run find it instead of registering a
copy.

Every decision of the select stage and every rollback is one run in the select experiment
(``event`` = ``decision`` or ``rollback``), with its parameters, metrics and reasons:
`starry champion history` reads them back.

Order, so that a failure leaves the registry as it was: the select stage writes its outputs
(bundle exported, ONNX parity checked) *before* :func:`record_selection` runs, and
:func:`record_selection` moves the ``@champion`` alias last. :func:`rollback` stages the
version's bundle, verifies it, moves the alias, and only then replaces ``models/champion/``.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from starry_guide.artifacts import lineage
from starry_guide.artifacts.reports import write_json
from starry_guide.config import Settings
from starry_guide.pipeline import tracking

CHAMPION = "champion"
CHALLENGER = "challenger"
DESCRIPTION = "P(clear night sky) at t+h, h = 1..12 hours (Starry Guide)"
KEY_METRICS = ("brier", "bss", "roc_auc", "log_loss", "ece", "accuracy", "f1")


class RegistryError(RuntimeError):
    """The registry cannot be read or written, or contradicts the tracked champion; the
    message says which registry, what failed and what to do."""


def _where() -> str:
    return mlflow.get_registry_uri() or mlflow.get_tracking_uri()


def _failed(action: str, exc: Exception) -> RegistryError:
    text = getattr(exc, "message", None) or str(exc)
    return RegistryError(
        f"cannot {action} in the model registry at {_where()}: {type(exc).__name__}: "
        f"{text.splitlines()[0] if text else ''}. Nothing was changed: @champion and "
        "models/champion/ are as they were. Check that the store is reachable "
        "(MLFLOW_TRACKING_URI) and re-run the stage")


def version_model_id(version) -> str:
    """A version's content id (``model_id``; ``fingerprint`` for older versions)."""
    return version.tags.get("model_id") or version.tags.get("fingerprint", "")


def current_champion(settings: Settings, alias: str = CHAMPION):
    """The version behind ``@alias``, or None when the registry has no such model or alias.

    Raises
    ------
    RegistryError
        when the registry cannot be read — never "no champion" on an error, which would
        make the baseline the incumbent.
    """
    client = MlflowClient()
    name = settings.select.model_name
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise _failed(f"read the registered model '{name}'", exc) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a database error below MLflow
        raise _failed(f"read the registered model '{name}'", exc) from None
    aliases = model.aliases or {}
    if alias not in aliases:
        return None
    try:
        return client.get_model_version(name, str(aliases[alias]))
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"read {name} version {aliases[alias]} (@{alias})", exc) from None


def find_version(settings: Settings, model_id: str):
    """The earliest registered version with this content id, or None."""
    name = settings.select.model_name
    try:
        found = MlflowClient().search_model_versions(
            f"name = '{name}' and tags.model_id = '{model_id}'")
        if not found:  # versions registered before the model_id tag
            found = MlflowClient().search_model_versions(
                f"name = '{name}' and tags.fingerprint = '{model_id}'")
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"search {name} for model {model_id}", exc) from None
    return min(found, key=lambda v: int(v.version)) if found else None


def load_version(version):
    """The scikit-learn estimator of a registered version."""
    from starry_guide.pipeline.mlflow_model import load_estimator

    try:
        return load_estimator(f"models:/{version.name}/{version.version}")
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"load {version.name} version {version.version}", exc) from None


def register(client: MlflowClient, model_name: str, model_uri: str, model_id: str,
             tags: dict[str, str]):
    """Register ``model_uri`` unless a version with the same content id exists; return it."""
    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model_name, description=DESCRIPTION)
    for tag in ("model_id", "fingerprint"):  # versions registered before model_id: fingerprint
        existing = client.search_model_versions(
            f"name = '{model_name}' and tags.{tag} = '{model_id}'")
        if existing:
            return min(existing, key=lambda v: int(v.version))
    # register_model announces itself on stderr, which would land in the notebook's outputs
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(model_uri, model_name,
                                        tags={**tags, "model_id": model_id,
                                              "fingerprint": model_id})
    return client.get_model_version(model_name, version.version)


def register_bundle(client: MlflowClient, model_name: str, bundle_dir: Path, model_id: str,
                    tags: dict[str, str]):
    """Register a champion's ONNX bundle itself as a model version (MLflow's ``onnx``
    flavor: ``mlflow.pyfunc.load_model`` answers P(clear) from it with onnxruntime), with
    the bundle's files as artifacts of the same run. For a tracked champion that no
    candidate of this checkout reproduces and this machine's registry has never seen (a fresh
    clone of a project whose champion was trained by earlier code): the registry then holds
    what is served."""
    import mlflow.onnx
    import onnx

    from starry_guide.pipeline.mlflow_model import pip_requirements

    requirements = [r for r in pip_requirements() if r.split("==")[0] in ("mlflow", "numpy",
                                                                             "pandas")]
    from importlib.metadata import version as installed

    requirements += [f"onnx=={installed('onnx')}", f"onnxruntime=={installed('onnxruntime')}"]
    with contextlib.redirect_stderr(io.StringIO()), mlflow.start_run(
            run_name=f"bundle-{tags.get('candidate', 'champion')}",
            tags={**tags, "model_id": model_id, "purpose": "the tracked champion's bundle"}):
        info = mlflow.onnx.log_model(onnx.load(str(Path(bundle_dir) / "model.onnx")),
                                     name="model", pip_requirements=requirements,
                                     onnx_execution_providers=["CPUExecutionProvider"])
        mlflow.log_artifacts(str(bundle_dir), artifact_path="bundle")
    return register(client, model_name, info.model_uri, model_id,
                    {**tags, "flavor": "onnx-bundle"})


def _round(value, digits: int = 5) -> str:
    return "" if value is None or value == "" else f"{float(value):.{digits}f}"


def _metrics(prefix: str, scores: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": round(float(v), 6) for k, v in scores.items()
            if k in KEY_METRICS and v is not None and v == v}


def description(selection, registered_version) -> str:
    """The champion version's description in the MLflow UI: what, why, held-out scores."""
    d = selection.decision
    s = selection.scores["champion"]
    lines = [f"**{d.champion}** (model {d.champion_model_id}) — P(clear sky) at t+1..12 h.",
             "",
             f"Why it is champion: {d.reason}", "",
             "| split | rows | Brier | BSS vs calibrated persistence | ROC AUC |",
             "|---|---|---|---|---|"]
    for split in ("validation", "held_out", "unseen"):
        if split in s:
            m = s[split]
            lines.append(f"| {split} | {int(m['rows'])} | {m['brier']:.4f} | "
                         f"{m.get('bss', float('nan')):+.4f} | {m['roc_auc']:.3f} |")
    lines += ["", "*validation* chose it; *held_out* = held-out months, *unseen* = a station "
              "never trained on. Bundle (ONNX): tag `bundle_uri`. History: "
              "`starry champion history`."]
    return "\n".join(lines)


def record_selection(selection, settings: Settings, bundle_dir: Path, decision: dict,
                     loso: dict[str, dict] | None = None) -> dict:
    """Write the select stage's decision into the registry — after its outputs were written.

    Registers the champion (when it is one of today's candidates) and the challenger, logs
    the decision as a run of the select experiment (parameters, rounded gate CI, the
    champion's validation / held-out / unseen scores, the bundle and the decision file), puts
    the champion's held-out and leave-one-station-out scores on its training run, tags and
    describes its version, and **moves the aliases last**. ``loso`` maps candidate ->
    :meth:`starry_guide.pipeline.loso.LosoResult.summary`. Returns the registry versions
    (``champion``, ``challenger``, ``decision_run``), which stay out of the stage's
    outputs because they differ between machines.

    Raises
    ------
    RegistryError
        when a write fails; the ``@champion`` alias then still names the previous version.
    """
    client = MlflowClient()
    name = settings.select.model_name
    d = selection.decision
    tags = tracking.lineage_tags(settings)
    run = None
    try:
        tracking.configure(settings, tracking.SELECT_EXPERIMENT)
        def version_for(candidate: str | None, model_id: str):
            if candidate is not None and candidate in selection.model_uris and \
                    selection.model_ids.get(candidate) == model_id:
                return register(client, name, selection.model_uris[candidate], model_id,
                                {**tags, "candidate": candidate})
            found = find_version(settings, model_id)
            if found is None and model_id == selection.incumbent.model_id == d.champion_model_id:
                # the kept champion, made by code this checkout no longer runs the same way
                # (a fresh clone's store never saw it): its committed bundle is the model
                found = register_bundle(client, name, bundle_dir, model_id,
                                        {**tags, "candidate": str(candidate)})
            return found

        champion_version = version_for(d.champion, d.champion_model_id)
        challenger_version = None if selection.challenger is None else version_for(
            selection.challenger, selection.model_ids[selection.challenger])
        previous = current_champion(settings)
        gate = d.details or {}
        with mlflow.start_run(run_name=f"decision-{d.champion}",
                              tags={**tags, "event": "decision",
                                    "champion_model_id": d.champion_model_id,
                                    "incumbent_model_id": d.incumbent_model_id,
                                    "reason": d.reason[:4900]}) as run:
            mlflow.log_params({
                "champion": d.champion, "incumbent": d.incumbent,
                "best_candidate": d.candidate, "promoted": d.promote,
                "incumbent_source": selection.incumbent.source,
                "champion_version": getattr(champion_version, "version", "unregistered"),
                "previous_version": getattr(previous, "version", "none"),
                "challengers_tried": len(d.tried),
            })
            metrics = {**_metrics("champion_recent",
                                  selection.scores["champion"].get("recent", {})),
                       **_metrics("champion_validation", selection.scores["champion"]
                                  .get("validation", {})),
                       **_metrics("champion_held_out",
                                  selection.scores["champion"].get("held_out", {})),
                       **_metrics("champion_unseen",
                                  selection.scores["champion"].get("unseen", {}))}
            if gate:
                metrics.update({"gate_brier_difference": round(gate["brier_difference"], 6),
                                "gate_ci_low": round(gate["ci_low"], 6),
                                "gate_ci_high": round(gate["ci_high"], 6),
                                "gate_nights": gate["nights"]})
            mlflow.log_metrics(metrics)
            with tempfile.TemporaryDirectory() as tmp:
                write_json(Path(tmp) / "select_decision.json", decision)
                mlflow.log_artifact(str(Path(tmp) / "select_decision.json"))
            mlflow.log_artifacts(str(bundle_dir), artifact_path="bundle")
        bundle_uri = f"runs:/{run.info.run_id}/bundle"
        if champion_version is not None:
            version = champion_version.version
            for key, value in {
                    "bundle_uri": bundle_uri, "last_decision": d.reason[:4900],
                    "last_decision_run": run.info.run_id,
                    "gate_ci_low": _round(gate.get("ci_low")),
                    "gate_ci_high": _round(gate.get("ci_high")),
                    # the pooled MLflow model is the same for every place; a production
                    # station's own recalibration travels with it here and in the bundle
                    "station_calibration": json.dumps(selection.champion_station_maps,
                                                      sort_keys=True)[:4900]}.items():
                client.set_model_version_tag(name, version, key, value)
            client.update_model_version(name, version,
                                        description=description(selection, champion_version))
            source_run = champion_version.run_id
            if source_run:
                extra = {**_metrics("held_out",
                                    selection.scores["champion"].get("held_out", {})),
                         **_metrics("unseen", selection.scores["champion"].get("unseen", {}))}
                summary = (loso or {}).get(d.champion) or {}
                extra.update(_metrics("loso_pooled", summary.get("pooled", {})))
                for station, bss in summary.get("bss_by_station", {}).items():
                    extra[f"loso_{station}_bss"] = round(float(bss), 6)
                for key, value in extra.items():
                    client.log_metric(source_run, key, value)
        # the aliases move last: everything before can fail without touching @champion
        if challenger_version is not None and (
                champion_version is None or challenger_version.version != champion_version.version):
            client.set_registered_model_alias(name, CHALLENGER, challenger_version.version)
        if champion_version is not None:
            client.set_registered_model_alias(name, CHAMPION, champion_version.version)
    except Exception as exc:  # noqa: BLE001 - any store failure
        if run is not None:  # a decision that did not take effect is not history
            with contextlib.suppress(Exception):
                client.delete_run(run.info.run_id)
        if isinstance(exc, RegistryError):
            raise
        raise _failed("record the decision", exc) from None
    return {"champion": getattr(champion_version, "version", None),
            "challenger": getattr(challenger_version, "version", None),
            "decision_run": run.info.run_id}


def history(settings: Settings) -> list[dict]:
    """Every decision and rollback, oldest first: date, event, candidate, model id, registry
    version, incumbent, gate CI, reasons and lineage (from the select experiment's runs)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.SELECT_EXPERIMENT)
    if experiment is None:
        return []
    try:
        runs = client.search_runs([experiment.experiment_id],
                                  filter_string="tags.event != ''",
                                  order_by=["attributes.start_time ASC"], max_results=10_000)
    except Exception as exc:  # noqa: BLE001
        raise _failed("read the decision history", exc) from None
    out = []
    for run in runs:
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        when = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
        entry = {"date": when.strftime("%Y-%m-%d %H:%M:%S UTC"), "event": t.get("event"),
                 "run_id": run.info.run_id, "git_commit": t.get("git_commit", ""),
                 "data_processed_md5": t.get("data_processed_md5", "")}
        if t.get("event") == "decision":
            entry.update({
                "candidate": p.get("champion"), "model_id": t.get("champion_model_id"),
                "version": p.get("champion_version"), "promoted": p.get("promoted") == "True",
                "incumbent": p.get("incumbent"), "incumbent_model_id":
                    t.get("incumbent_model_id"), "incumbent_source": p.get("incumbent_source"),
                "previous_version": p.get("previous_version"),
                "best_candidate": p.get("best_candidate"),
                "ci_low": m.get("gate_ci_low"), "ci_high": m.get("gate_ci_high"),
                "reason": t.get("reason", "")})
        else:
            entry.update({
                "candidate": t.get("candidate"), "model_id": t.get("model_id"),
                "version": p.get("to_version"), "promoted": True,
                "previous_version": p.get("from_version"), "incumbent": t.get("from_candidate"),
                "incumbent_model_id": t.get("from_model_id"),
                "reason": t.get("reason", ""), "by": t.get("by", "")})
        out.append(entry)
    return out


def rollback(settings: Settings, version: str, reason: str, by: str | None = None) -> dict:
    """Make registered ``version`` the champion again.

    Downloads and verifies its bundle, writes ``models/champion/`` anew in a staging folder
    (``champion.json`` remembers the model rolled back from, which the gate will not try
    again, and its tracked ``history`` gets a rollback entry:
    :mod:`starry_guide.artifacts.lineage`),
    records who and why as tags on both versions and as a ``rollback`` run, moves
    the ``@champion`` alias, and only then swaps the new ``models/champion/`` in.

    Raises
    ------
    RegistryError
        when the version does not exist, has no bundle, or the registry fails; nothing is
        changed then.
    """
    from starry_guide.artifacts import champion_card as champion_file
    from starry_guide.artifacts.bundle import BundleError, load_bundle
    from starry_guide.artifacts.champion_card import ChampionCard
    from starry_guide.artifacts.reports import replace_atomically
    from starry_guide.pipeline.stage import STAGING_DIR

    if not reason.strip():
        raise RegistryError("a rollback needs a reason (--reason ...): it is recorded")
    client = MlflowClient()
    name = settings.select.model_name
    by = by or getpass.getuser()
    try:
        target = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{name} has no version {version}; `starry champion history` "
                                "lists the versions that were champion") from None
        raise _failed(f"read {name} version {version}", exc) from None
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"read {name} version {version}", exc) from None
    uri = target.tags.get("bundle_uri")
    if not uri:
        raise RegistryError(f"{name} version {version} has no bundle (it was never champion); "
                            "only a former champion can be rolled back to")
    current = current_champion(settings)
    if current is not None and current.version == target.version:
        raise RegistryError(f"{name} version {version} is already @champion")
    champion_dir = settings.paths.champion_dir
    staging = settings.project_root / STAGING_DIR / "rollback"
    if staging.exists():
        shutil.rmtree(staging)
    staged = staging / "champion"
    staged.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
        (staging / "bundle").rename(staged / "bundle")
        card = load_bundle(staged / "bundle").card  # verifies every file's SHA-256
    except (BundleError, OSError, MlflowException) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RegistryError(f"the bundle of {name} version {version} ({uri}) cannot be used: "
                            f"{exc}; nothing was changed") from None
    tracked = champion_file.read(champion_dir) or {}
    from_id = tracked.get("model_id") or (version_model_id(current) if current else "")
    from_candidate = tracked.get("candidate") or (
        current.tags.get("candidate", "") if current else "")
    rolled_back = [e for e in tracked.get("rolled_back", [])
                   if e.get("model_id") != version_model_id(target)]
    if from_id:
        rolled_back.append({"model_id": from_id, "candidate": from_candidate,
                            "reason": reason, "by": by})
    candidate = target.tags.get("candidate", card.get("candidate"))
    history = lineage.chain(tracked, lineage.rollback_entry(
        {"candidate": candidate, "model_id": version_model_id(target)},
        {"candidate": from_candidate, "model_id": from_id}, reason, by))
    # the station maps are the ones the rolled-back bundle serves (its model card carries them)
    champion_file.write(staged, ChampionCard(
        model_name=name, candidate=candidate, model_id=version_model_id(target),
        scores=card.get("scores", {}), rolled_back=rolled_back,
        station_calibration=dict(card.get("station_calibration") or {}), history=history))
    when = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        tracking.configure(settings, tracking.SELECT_EXPERIMENT)
        with mlflow.start_run(run_name=f"rollback-to-v{target.version}",
                              tags={**tracking.lineage_tags(settings), "event": "rollback",
                                    "reason": reason[:4900], "by": by,
                                    "candidate": target.tags.get("candidate", ""),
                                    "model_id": version_model_id(target),
                                    "from_candidate": from_candidate,
                                    "from_model_id": from_id}):
            mlflow.log_params({"to_version": target.version,
                               "from_version": getattr(current, "version", "none")})
        for key, value in {"rollback_reason": reason[:4900], "rollback_by": by,
                           "rollback_at": when,
                           "rollback_from_version": getattr(current, "version", "none")
                           }.items():
            client.set_model_version_tag(name, target.version, key, value)
        if current is not None:
            for key, value in {"rolled_back": "true", "rolled_back_reason": reason[:4900],
                               "rolled_back_by": by, "rolled_back_at": when}.items():
                client.set_model_version_tag(name, current.version, key, value)
        client.set_registered_model_alias(name, CHAMPION, target.version)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(staging, ignore_errors=True)
        raise _failed(f"roll back to version {version}", exc) from None
    replace_atomically(staged, champion_dir)
    shutil.rmtree(staging, ignore_errors=True)
    return {"from_version": getattr(current, "version", None), "to_version": target.version,
            "candidate": target.tags.get("candidate", ""), "model_id": version_model_id(target),
            "by": by}
