"""Settings: nested GRIDSIM_* variables, defaults, and clear errors for bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gridsim_shared.settings import Settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    settings = Settings()
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.mqtt.base_topic == "gridsim"
    assert settings.sim.speed == 1440.0
    assert settings.sim.interval_s == 60
    assert settings.gateway.port == 8000
    assert settings.gateway.api_keys == []


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRIDSIM_MQTT__URL", "mqtt://broker:1884")
    monkeypatch.setenv("GRIDSIM_DB__SCHEMA_NAME", "grid")
    monkeypatch.setenv("GRIDSIM_SIM__SPEED", "60")
    monkeypatch.setenv("GRIDSIM_GATEWAY__API_KEYS", '["k1","k2"]')
    settings = Settings()
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker", 1884)
    assert settings.db.schema_name == "grid"
    assert settings.sim.speed == 60.0
    assert settings.gateway.api_keys == ["k1", "k2"]


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRIDSIM_MQTT__URL", "http://broker")
    with pytest.raises(ValidationError, match="GRIDSIM_MQTT__URL must start with mqtt://"):
        Settings()
    monkeypatch.setenv("GRIDSIM_MQTT__URL", "mqtt://broker")
    monkeypatch.setenv("GRIDSIM_SIM__SPEED", "-1")
    with pytest.raises(ValidationError, match=r"sim\.speed"):
        Settings()
