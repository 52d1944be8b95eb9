"""MLflow conventions: where the store is, experiment names, tags and lineage.

By default tracking and the model registry live in ``mlflow.db`` (SQLite) at the project
root, with artifacts under ``mlartifacts/``; both are git-ignored. ``MLFLOW_TRACKING_URI``
overrides the store (tests point it at a temporary folder).

mlflow is imported inside the functions that use it: the stage runner
(:mod:`starry_guide.pipeline.stage`) imports this module for ``STAGE_RUN_TAG`` alone, and
would otherwise pay mlflow's import (about a second) at every stage's start.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import yaml

from starry_guide.config import Settings

#: every MLflow run a stage starts carries this tag (its value: the stage run's id)
STAGE_RUN_TAG = "starry_stage_run"
TRAIN_EXPERIMENT = "starry-guide/train"
SELECT_EXPERIMENT = "starry-guide/select"


def tracking_uri(settings: Settings) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.paths.mlflow_db}"


def configure(settings: Settings, experiment: str) -> str:
    """Point MLflow at the store and select ``experiment`` (created on first use with its
    artifacts beside the store). Returns the experiment id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(settings)
    # MLflow logs store creation and pip probing at INFO/WARNING; only errors matter here
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        artifacts = _artifact_root(uri, settings)
        experiment_id = client.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _artifact_root(uri: str, settings: Settings) -> str | None:
    """Where a new experiment keeps its artifacts: a tracking *server* decides itself (its
    ``--artifacts-destination``, reached through ``mlflow-artifacts:``), so nothing of a
    remote run lands on this machine; a local SQLite store keeps them beside the file,
    never in ./mlruns (refused by MLflow 3)."""
    if uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return settings.paths.mlflow_artifacts_dir.resolve().as_uri()


def git_commit(root: Path) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty.strip() else "")


def data_hashes(root: Path) -> dict[str, str]:
    """``path -> md5`` of each stage output recorded in ``dvc.lock`` (empty before the first
    ``dvc repro``): ties a run to the exact data it saw."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    out = {}
    for stage in stages.values():
        for entry in stage.get("outs", []):
            if "md5" in entry:
                out[entry["path"]] = entry["md5"]
    return dict(sorted(out.items()))


def lineage_tags(settings: Settings) -> dict[str, str]:
    """Tags every run and model version carries: code and data it came from."""
    tags = {"git_commit": git_commit(settings.project_root), "seed": str(settings.seed)}
    processed = data_hashes(settings.project_root).get("data/processed")
    if processed:
        tags["data_processed_md5"] = processed
    return tags




def close_stage_runs(uri: str, stage_run: str, status: str, reason: str,
                     ended_since_ms: int | None = None) -> list[str]:
    """Mark the runs of ``stage_run`` (tag ``starry_stage_run``) still ``RUNNING`` in the
    store at ``uri`` as ``status`` (``KILLED`` or ``FAILED``), with the tag
    ``starry_closed_because`` = ``reason``; with ``ended_since_ms``, also the runs that
    ended at or after that time (epoch ms) — the ones the interruption itself ended, which
    MLflow marks ``FAILED`` (a ``with`` block left by the exception) or even ``FINISHED``
    (its exit handler in a kernel shut down mid-cell).

    A stage killed mid-run leaves its runs ``RUNNING`` for ever; the stage runner calls this
    when it is interrupted or fails, and for a runner that died outright, when the next
    stage starts (:func:`starry_guide.pipeline.stage.close_abandoned_runs`). Returns the run ids.
    """
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    closed, token = [], None
    while True:
        page = client.search_runs(experiments, filter_string=f"tags.{STAGE_RUN_TAG} = "
                                                             f"'{stage_run}'",
                                  run_view_type=ViewType.ALL, max_results=1000,
                                  page_token=token)
        for run in page:
            info = run.info
            ended_by_it = (ended_since_ms is not None and info.end_time is not None
                           and info.end_time >= ended_since_ms and info.status != status)
            if info.status == "RUNNING" or ended_by_it:
                client.set_tag(info.run_id, "starry_closed_because", reason)
                client.set_terminated(info.run_id, status=status,
                                      end_time=info.end_time if ended_by_it else None)
                closed.append(info.run_id)
        token = page.token
        if not token:
            return closed
