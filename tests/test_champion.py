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


def test_decide():
    assert champion.decide("m", 0.2, None, "brier").promote
    assert champion.decide("m", 0.18, 0.2, "brier").promote
    kept = champion.decide("m", 0.2, 0.2, "brier")
    assert not kept.promote and "does not beat" in kept.reason
    assert not champion.decide("m", 0.1, 0.2, "brier", same_model=True).promote
    assert champion.decide("m", 0.9, 0.8, "roc_auc").promote


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


def test_select_promotes_then_keeps_then_replaces_a_worse_champion(
        rows, small_settings, tracking_uri, tmp_path):
    results = training.fit_candidates(rows, small_settings)
    training.log_candidates(results, rows, small_settings, tmp_path)
    uris = {name: r.model_uri for name, r in results.items()}
    client = MlflowClient(tracking_uri)
    name = small_settings.select.model_name

    first = champion.select(rows, uris, small_settings)
    assert first.decision.promote and first.decision.reason == "no champion yet"
    best = first.ranking[0]
    assert best != "persistence"  # hard 0/1 probabilities have a poor Brier score
    version = client.get_model_version_by_alias(name, "champion")
    assert version.tags["candidate"] == best
    assert client.get_model_version_by_alias(name, "challenger").tags["candidate"] == \
        first.ranking[1]
    assert {"git_commit", "fingerprint"} <= set(version.tags)

    # the same models again: nothing new is registered, the champion stays
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    again = champion.select(rows, uris, small_settings)
    assert not again.decision.promote
    assert again.champion_version == first.champion_version
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before

    # a worse model holding the alias is replaced, and the decision says why
    worst = first.ranking[-1]
    worse_version = champion.register(client, name, uris[worst],
                                      champion.fingerprint(worst, results[worst].p_validation),
                                      {"candidate": worst})
    client.set_registered_model_alias(name, "champion", worse_version.version)
    third = champion.select(rows, uris, small_settings)
    assert third.decision.promote and "beats the champion" in third.decision.reason
    assert client.get_model_version_by_alias(name, "champion").tags["candidate"] == best
    # the champion's held-out scores are reported on every split
    assert set(third.scores["champion"]) == {"validation", "test", "unseen"}


def test_export_writes_a_loadable_mlflow_model(rows, small_settings, tracking_uri, tmp_path):
    results = training.fit_candidates(rows, small_settings)
    training.log_candidates(results, rows, small_settings, tmp_path)
    destination = tmp_path / "models" / "champion" / "mlflow_model"
    champion.export_model(results["calibrated_persistence"].model_uri, destination)
    assert (destination / "MLmodel").is_file()
    loaded = mlflow.sklearn.load_model(str(destination))
    X, _ = training.split_xy(rows, "test", small_settings)
    np.testing.assert_allclose(training.predict_clear(loaded, X),
                               training.predict_clear(results["calibrated_persistence"].model, X))
