"""Settings: layers (file, environment, options) and one clear line for every bad value."""
from __future__ import annotations

import pytest

from hotline.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("HOTLINE_"):
            monkeypatch.delenv(name)


def test_defaults_mean_embedded_stores():
    settings = load_settings()
    assert settings.database_url is None and settings.redis_url is None
    assert settings.ami_port == 5038 and settings.agi_port == 4573


def test_environment_beats_file_and_options_beat_environment(tmp_path, monkeypatch):
    config = tmp_path / "hotline.yaml"
    config.write_text("ami_port: 6000\ncti_port: 9000\nwrapup_s: 3\n")
    monkeypatch.setenv("HOTLINE_AMI_PORT", "7000")
    settings = load_settings(config, wrapup_s=9)
    assert (settings.ami_port, settings.cti_port, settings.wrapup_s) == (7000, 9000, 9)


def test_config_file_from_environment(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("default_queue: elderly\n")
    monkeypatch.setenv("HOTLINE_CONFIG", str(config))
    assert load_settings().default_queue == "elderly"


@pytest.mark.parametrize("name, value, expected", [
    ("HOTLINE_AMI_PORT", "abc", "setting HOTLINE_AMI_PORT: Input should be a valid integer"),
    ("HOTLINE_AMI_PORT", "70000", "setting HOTLINE_AMI_PORT: Input should be less than or equal to 65535"),
    ("HOTLINE_DATABASE_URL", "mysql://x", "setting HOTLINE_DATABASE_URL: must start with postgresql://"),
    ("HOTLINE_REDIS_URL", "http://x", "setting HOTLINE_REDIS_URL: must start with redis://"),
    ("HOTLINE_LOG_LEVEL", "LOUD", "setting HOTLINE_LOG_LEVEL: must be one of"),
    ("HOTLINE_DEFAULT_QUEUE", "a b;c", "setting HOTLINE_DEFAULT_QUEUE: must be letters"),
    ("HOTLINE_AMI_PROT", "5038", "setting HOTLINE_AMI_PROT: unknown setting"),
    ("HOTLINE_ACD_NODE", "acd 1;rm", "setting HOTLINE_ACD_NODE: String should match pattern"),
    ("HOTLINE_ACD_LEASE_S", "0.1", "setting HOTLINE_ACD_LEASE_S: Input should be greater than or equal to 0.5"),
])
def test_bad_environment_value_is_one_line(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


@pytest.mark.parametrize("text, expected", [
    ("ami_port: [1, 2]\n", "setting ami_port: Input should be a valid integer"),
    ("no_such: 1\n", "unknown setting 'no_such'"),
    ("- a list\n", "must be a mapping"),
    ("ami_port: : :\n", "is not valid YAML"),
])
def test_bad_config_file_is_one_line(tmp_path, text, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")
