"""Selection and the registry, on a real MLflow SQLite store with real trained candidates."""

import dataclasses

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from starry_guide import champion, features, splits, training


def test_rank_respects_metric_direction():
    scores = {"a": {"brier": 0.2, "roc_auc": 0.7}, "b": {"brier": 0.1, "roc_auc": 0.9},
              "c": {"brier": 0.1, "roc_auc": 0.8}}
    assert champion.rank(scores, "brier") == ["b", "c", "a"]  # ties by name
    assert champion.rank(scores, "roc_auc") == ["b", "c", "a"]


def test_fingerprint_tells_models_apart():
    p = np.linspace(0, 1, 50)
    assert champion.fingerprint("a", p) == champion.fingerprint("a", p.copy())
    assert champion.fingerprint("a", p) != champion.fingerprint("a", p + 1e-6)
    assert champion.fingerprint("a", p) != champion.fingerprint("b", p)


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


def test_select_crowns_then_keeps_then_replaces_a_worse_champion(
        rows, small_settings, tracking_uri, tmp_path):
    results = training.fit_candidates(rows, small_settings)
    training.log_candidates(results, rows, small_settings, tmp_path)
    uris = {name: r.model_uri for name, r in results.items()}
    client = MlflowClient(tracking_uri)
    name = small_settings.select.model_name

    # no champion yet: the best candidate must beat calibrated persistence through the gate,
    # else the baseline itself is crowned
    first = champion.select(rows, uris, small_settings)
    assert first.decision.promote and first.decision.incumbent == "calibrated_persistence"
    crowned = client.get_model_version_by_alias(name, "champion")
    assert crowned.tags["candidate"] == first.champion_candidate
    assert first.champion_candidate in (first.ranking[0], "calibrated_persistence")
    assert client.get_model_version_by_alias(name, "challenger").tags["candidate"] != \
        first.champion_candidate
    assert {"git_commit", "fingerprint", "params", "training_rows", "last_decision"} <= \
        set(crowned.tags)

    # the same models again: nothing new is registered, the champion stays
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    again = champion.select(rows, uris, small_settings)
    assert not again.decision.promote
    assert again.champion_version == first.champion_version
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before

    # a clearly worse model holding the alias (hard 0/1 persistence) is replaced, through
    # the gate, and the decision says why
    worse = champion.register(client, name, uris["persistence"],
                              champion.fingerprint("persistence",
                                                   results["persistence"].p_validation),
                              {"candidate": "persistence"})
    client.set_registered_model_alias(name, "champion", worse.version)
    third = champion.select(rows, uris, small_settings)
    assert third.decision.promote and third.decision.incumbent == "persistence"
    assert "vs persistence: promoted" in third.decision.reason
    assert third.decision.details["ci_high"] < 0
    assert client.get_model_version_by_alias(name, "champion").tags["candidate"] != \
        "persistence"
    # the champion's held-out scores are reported on every split
    assert set(third.scores["champion"]) == {"validation", "held_out", "unseen"}


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


def test_export_writes_a_loadable_mlflow_model(rows, small_settings, tracking_uri, tmp_path):
    results = training.fit_candidates(rows, small_settings)
    training.log_candidates(results, rows, small_settings, tmp_path)
    destination = tmp_path / "models" / "champion" / "mlflow_model"
    champion.export_model(results["calibrated_persistence"].model_uri, destination)
    assert (destination / "MLmodel").is_file()
    loaded = mlflow.sklearn.load_model(str(destination))
    X, _ = training.split_xy(rows, "held_out", small_settings)
    np.testing.assert_allclose(training.predict_clear(loaded, X),
                               training.predict_clear(results["calibrated_persistence"].model, X))
