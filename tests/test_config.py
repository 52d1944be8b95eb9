from pathlib import Path

import pytest
import yaml

from starry_guide import config

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, key = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            del node[key]
        else:
            node[key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def test_loads_the_projects_params(settings):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert settings.seed == raw["seed"]
    assert settings.label.horizons == tuple(raw["label"]["horizons"])
    assert settings.train.params_for("hist_gradient_boosting") == \
        raw["train"]["hist_gradient_boosting"]
    assert settings.paths.processed_dir == ROOT / "data" / "processed"


def test_settings_are_frozen(settings):
    with pytest.raises(AttributeError):
        settings.seed = 1


def test_found_from_a_subfolder_like_a_notebook_does():
    assert config.find_project_root(ROOT / "notebooks") == ROOT


def test_missing_key_is_named(tmp_path):
    write_params(tmp_path, label__horizons=None)
    with pytest.raises(config.ConfigError, match=r"'label\.horizons' is missing"):
        config.load_settings(tmp_path)


def test_wrong_kind_names_key_and_value(tmp_path):
    write_params(tmp_path, data__reference_year="soon")
    with pytest.raises(config.ConfigError, match=r"'data\.reference_year' = 'soon'"):
        config.load_settings(tmp_path)


def test_month_in_two_splits_is_refused(tmp_path):
    write_params(tmp_path, split__validation_months=[2, 4], split__held_out_months=[4, 8])
    with pytest.raises(config.ConfigError, match=r"months \[4\] are in both"):
        config.load_settings(tmp_path)


def test_unseen_station_must_be_listed(tmp_path):
    write_params(tmp_path, split__unseen_stations=["nowhere"])
    with pytest.raises(config.ConfigError, match="nowhere"):
        config.load_settings(tmp_path)


def test_no_params_file(tmp_path):
    with pytest.raises(config.ConfigError, match="no params.yaml"):
        config.find_project_root(tmp_path)


def test_loso_challenger_is_a_yes_or_no_that_defaults_to_no(tmp_path):
    assert config.load_settings(write_params(tmp_path, select__loso_challenger=True)) \
        .select.loso_challenger is True
    assert config.load_settings(write_params(tmp_path, select__loso_challenger=None)) \
        .select.loso_challenger is False  # an older params.yaml without the key
    write_params(tmp_path, select__loso_challenger="yes")
    with pytest.raises(config.ConfigError, match=r"select\.loso_challenger") as error:
        config.load_settings(tmp_path)
    assert str(tmp_path / "params.yaml") in str(error.value)
