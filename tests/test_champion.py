"""Selection and the registry, on a real MLflow SQLite store with real trained candidates."""

import dataclasses
import json

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from starry_guide.artifacts import champion_card as champion_file
from starry_guide.artifacts import reports
from starry_guide.core import features, splits
from starry_guide.pipeline import champion, registry, training


def test_rank_respects_metric_direction():
    scores = {"a": {"brier": 0.2, "roc_auc": 0.7}, "b": {"brier": 0.1, "roc_auc": 0.9},
              "c": {"brier": 0.1, "roc_auc": 0.8}}
    assert champion.rank(scores, "brier") == ["b", "c", "a"]  # ties by name
    assert champion.rank(scores, "roc_auc") == ["b", "c", "a"]


def test_fingerprint_tells_models_apart():
    p = np.linspace(0, 1, 50)
    assert training.model_id("a", p) == training.model_id("a", p.copy())
    assert training.model_id("a", p) != training.model_id("a", p + 1e-6)
    assert training.model_id("a", p) != training.model_id("b", p)


@pytest.fixture(scope="module")
def rows(observations, settings):
    rows = features.supervised_rows(observations, settings.label, settings.features)
    rows["split"] = splits.assign_splits(rows, settings.split)
    return rows


@pytest.fixture()
def small_settings(settings):
    train = dataclasses.replace(
        settings.train, candidates=("persistence", "calibrated_persistence",
                                    "logistic_regression"))
    return dataclasses.replace(settings, train=train)


@pytest.fixture()
def project(small_settings, tmp_path):
    """Settings whose outputs (models/champion/) live in a temporary folder."""
    return dataclasses.replace(small_settings, project_root=tmp_path)


def publish(selection, settings, rows, observations):
    """What the select stage does after deciding: outputs first, the registry last."""
    champion_dir = settings.paths.champion_dir
    champion.export_bundle(selection, settings, rows, observations, champion_dir / "bundle")
    champion_file.write(champion_dir, champion.champion_card(selection, settings))
    return registry.record_selection(selection, settings, champion_dir / "bundle",
                                     champion.decision_record(selection))


def test_select_crowns_then_keeps_then_refuses_a_registry_that_moved(
        rows, observations, project, tracking_uri):
    results = training.fit_candidates(rows, project)
    training.log_candidates(results, rows, project, project.project_root / "figures")
    uris = training.find_runs(training.candidate_index(results))
    client = MlflowClient(tracking_uri)
    name = project.select.model_name

    # no champion yet: the best candidate must beat calibrated persistence through the gate,
    # else the baseline itself is crowned
    assert registry.current_champion(project) is None
    first = champion.select(rows, uris, project)
    assert first.decision.promote and first.decision.incumbent == "calibrated_persistence"
    assert first.incumbent.source == "baseline"
    assert first.champion_candidate in (first.ranking[0], "calibrated_persistence")
    versions = publish(first, project, rows, observations)
    crowned = client.get_model_version_by_alias(name, "champion")
    assert crowned.version == versions["champion"]
    assert crowned.tags["candidate"] == first.champion_candidate
    assert crowned.tags["model_id"] == first.champion_model_id
    assert client.get_model_version_by_alias(name, "challenger").tags["candidate"] != \
        first.champion_candidate
    assert {"git_commit", "model_id", "bundle_uri", "last_decision", "gate_ci_low"} <= \
        set(crowned.tags)
    assert "Why it is champion" in crowned.description
    # the champion's held-out scores are on its training run, not only val_*
    run = client.get_run(crowned.run_id)
    assert {"val_brier", "held_out_brier", "unseen_brier"} <= set(run.data.metrics)
    # the tracked lineage chain starts with this first promotion (no date, no registry id)
    card = reports.read_json(project.paths.champion_dir / "champion.json")
    assert [(e["event"], e["first"]) for e in card["history"]] == [("promoted", True)]
    assert card["history"][0]["champion"]["model_id"] == first.champion_model_id
    assert card["history"][0]["incumbent"]["source"] == "baseline"
    assert versions["decision_run"] not in json.dumps(card)

    # the same models again: the incumbent is the tracked champion, which the registry
    # agrees with; nothing new is registered and the champion stays
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    again = champion.select(rows, uris, project,
                            registry_champion=registry.current_champion(project))
    assert again.incumbent.source == "models/champion"
    assert again.incumbent.model_id == first.champion_model_id
    assert not again.decision.promote
    assert again.champion_model_id == first.champion_model_id
    publish(again, project, rows, observations)
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before
    # kept: an entry only when the gate judged a challenger; the same decision made again
    # (same inputs) adds nothing, so re-runs never grow champion.json
    history = reports.read_json(project.paths.champion_dir / "champion.json")["history"]
    assert history[0] == card["history"][0]
    assert [e["event"] for e in history[1:]] == (["kept"] if again.decision.tried else [])
    assert champion.champion_card(again, project).history == history
    assert set(again.scores["champion"]) == {"validation", "held_out", "unseen"}
    record = champion.decision_record(again)
    assert record["incumbent_model"]["model_id"] == first.champion_model_id
    assert record["incumbent_model"]["scores"]["validation"]["brier"] > 0

    # the registry's @champion moved elsewhere behind the pipeline's back: refused, clearly
    other = client.get_model_version_by_alias(name, "challenger")
    client.set_registered_model_alias(name, "champion", other.version)
    with pytest.raises(registry.RegistryError, match="models/champion/champion.json"):
        champion.select(rows, uris, project,
                        registry_champion=registry.current_champion(project))

    events = registry.history(project)
    assert [e["event"] for e in events] == ["decision", "decision"]
    assert events[0]["promoted"] and not events[1]["promoted"]
    assert events[0]["model_id"] == first.champion_model_id


def test_a_registry_read_error_is_an_error_not_an_empty_registry(project, tmp_path,
                                                                 monkeypatch):
    import sqlite3

    db = tmp_path / "broken.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_registry_uri(f"sqlite:///{db}")
    MlflowClient().create_registered_model(project.select.model_name)
    with sqlite3.connect(db) as con:  # a real store that cannot answer
        con.execute("ALTER TABLE registered_models RENAME TO registered_models_gone")
    with pytest.raises(registry.RegistryError, match="cannot read the registered model"):
        registry.current_champion(project)


def test_search_trials_are_child_runs(rows, settings, tracking_uri, tmp_path):
    import dataclasses

    train = dataclasses.replace(settings.train, candidates=("calibrated_persistence",
                                                            "hist_gradient_boosting"),
                                search_budget=2)
    small = dataclasses.replace(settings, train=train)
    results = training.fit_candidates(rows, small)
    trials = results["hist_gradient_boosting"].trials
    assert len(trials) == 2
    assert results["hist_gradient_boosting"].params == min(
        trials, key=lambda t: t["cv_brier"])["params"]
    training.log_candidates(results, rows, small, tmp_path)
    parent = results["hist_gradient_boosting"].run_id
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                  search_all_experiments=True)
    assert len(children) == 2 and children["metrics.cv_brier"].notna().all()
    # the validation curves by horizon: one point per horizon, the step is the horizon
    by_horizon = results["hist_gradient_boosting"].by_horizon
    for key, column in (("val_bss_by_horizon", "bss"), ("val_brier_by_horizon", "brier")):
        history = MlflowClient().get_metric_history(parent, key)
        assert {m.step: m.value for m in history} == {
            int(h): float(v) for h, v in by_horizon[column].items()}


def test_logged_models_answer_p_clear_as_their_signature_says(rows, small_settings,
                                                             tracking_uri, tmp_path):
    import mlflow.pyfunc

    results = training.fit_candidates(rows, small_settings)
    training.log_candidates(results, rows, small_settings, tmp_path)
    uri = results["logistic_regression"].model_uri
    model = mlflow.pyfunc.load_model(uri)
    X, _ = training.split_xy(rows, "held_out", small_settings)
    out = model.predict(X.head(50))
    outputs = model.metadata.get_output_schema().input_names()
    assert list(out.columns) == outputs == ["p_clear"]
    np.testing.assert_allclose(out["p_clear"],
                               training.predict_clear(results["logistic_regression"].model,
                                                      X.head(50)))


def test_a_kept_champion_no_candidate_reproduces_is_registered_from_its_bundle(
        rows, observations, project, tracking_uri, tmp_path, monkeypatch):
    """A fresh clone's store never saw the committed champion, and today's code trains a
    slightly different model: the registry still gets the champion — its ONNX bundle."""
    import mlflow
    import numpy as np

    from starry_guide.artifacts.bundle import load_bundle

    results = training.fit_candidates(rows, project)
    training.log_candidates(results, rows, project, project.project_root / "figures")
    first = champion.select(rows, training.find_runs(training.candidate_index(results)), project)
    publish(first, project, rows, observations)

    # a new machine (an empty store) and code that moved on (every recipe slightly changed)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    mlflow.set_tracking_uri(fresh)
    hyper = {**project.train.hyperparameters,
             "logistic_regression": {**project.train.params_for("logistic_regression"),
                                     "C": 0.9},
             "calibrated_persistence": {"prior_strength": 1.1}}
    moved = dataclasses.replace(project, train=dataclasses.replace(project.train,
                                                                  hyperparameters=hyper))
    results = training.fit_candidates(rows, moved)
    training.log_candidates(results, rows, moved, moved.project_root / "figures2")
    uris = training.find_runs(training.candidate_index(results))
    again = champion.select(rows, uris, moved, registry_champion=registry.current_champion(moved))
    assert first.champion_model_id not in again.model_ids.values()
    assert not again.decision.promote, again.decision.reason
    publish(again, moved, rows, observations)

    crowned = MlflowClient(fresh).get_model_version_by_alias(moved.select.model_name, "champion")
    assert crowned.tags["model_id"] == first.champion_model_id
    assert crowned.tags["flavor"] == "onnx-bundle"
    bundle = load_bundle(moved.paths.champion_dir / "bundle")
    X, _ = training.split_xy(rows, "held_out", moved)
    X = X.iloc[:200].astype("float32")
    served = mlflow.pyfunc.load_model(
        f"models:/{moved.select.model_name}@champion").predict(X)
    np.testing.assert_allclose(served["p_clear"].to_numpy(), bundle.predict(X), atol=1e-6)
