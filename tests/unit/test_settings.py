"""Settings: keyword arguments, then environment variables, then $ERRANDS_HOME/config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from errands.errors import ConfigError
from errands.settings import Settings


def test_defaults_need_no_configuration(home: Path) -> None:
    settings = Settings(home=home)
    assert settings.home == home
    assert settings.model is None
    assert settings.openai_api_key is None
    assert settings.resolved_database_url == f"sqlite:///{home / 'errands.db'}"
    assert settings.workspaces_dir == home / "workspaces"
    assert settings.secrets() == []


def test_errands_environment_variables_are_read(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERRANDS_MODEL", "openai:gpt-test")
    monkeypatch.setenv("ERRANDS_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("ERRANDS_COMMAND_TIMEOUT", "12.5")
    monkeypatch.setenv("ERRANDS_DATABASE_URL", "sqlite:///elsewhere.db")

    settings = Settings(home=home)

    assert settings.model == "openai:gpt-test"
    assert settings.worker_concurrency == 4
    assert settings.command_timeout == 12.5
    assert settings.resolved_database_url == "sqlite:///elsewhere.db"


def test_errands_home_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERRANDS_HOME", str(tmp_path / "data"))
    assert Settings().home == tmp_path / "data"


def test_openai_variables_are_read_under_their_usual_names(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-plain-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-plain")

    settings = Settings(home=home)

    assert settings.openai_base_url == "http://127.0.0.1:11434/v1"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-plain-openai"
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-plain"


def test_errands_prefixed_alias_wins_over_the_plain_name(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-plain-openai")
    monkeypatch.setenv("ERRANDS_OPENAI_API_KEY", "sk-errands-openai")
    settings = Settings(home=home)
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-errands-openai"


def test_secrets_are_not_shown_in_repr(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    settings = Settings(home=home)
    assert "sk-very-secret-value" not in repr(settings)
    assert "sk-very-secret-value" not in str(settings.model_dump())


def test_config_toml_in_home_is_read(home: Path) -> None:
    (home / "config.toml").write_text(
        'worker_concurrency = 5\nmodel = "anthropic:from-toml"\n'
        'openai_base_url = "http://toml.invalid/v1"\n'
    )
    settings = Settings(home=home)
    assert settings.worker_concurrency == 5
    assert settings.model == "anthropic:from-toml"
    assert settings.openai_base_url == "http://toml.invalid/v1"


def test_config_toml_is_found_through_errands_home(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "config.toml").write_text("worker_concurrency = 6\n")
    monkeypatch.setenv("ERRANDS_HOME", str(home))
    assert Settings().worker_concurrency == 6


def test_environment_overrides_config_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text("worker_concurrency = 5\nport = 9000\n")
    monkeypatch.setenv("ERRANDS_WORKER_CONCURRENCY", "8")
    settings = Settings(home=home)
    assert settings.worker_concurrency == 8
    assert settings.port == 9000  # the file still supplies what the environment does not


def test_keyword_arguments_override_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERRANDS_WORKER_CONCURRENCY", "8")
    assert Settings(home=home, worker_concurrency=3).worker_concurrency == 3


def test_config_toml_is_read_from_the_home_actually_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, other = tmp_path / "chosen", tmp_path / "other"
    chosen.mkdir()
    other.mkdir()
    (chosen / "config.toml").write_text("worker_concurrency = 5\n")
    (other / "config.toml").write_text("worker_concurrency = 7\n")
    monkeypatch.setenv("ERRANDS_HOME", str(other))

    settings = Settings(home=chosen)

    assert settings.home == chosen
    assert settings.worker_concurrency == 5


def test_invalid_values_are_rejected(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_WORKER_CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="worker_concurrency"):
        Settings(home=home)


def test_model_for_without_a_model_names_the_setting(home: Path) -> None:
    settings = Settings(home=home)
    for phase in ("research", "execute"):
        with pytest.raises(ConfigError, match="ERRANDS_MODEL") as caught:
            settings.model_for(phase)
        assert f"ERRANDS_{phase.upper()}_MODEL" in caught.value.message
    with pytest.raises(ConfigError):
        settings.require_llm()


def test_model_for_prefers_the_phase_model(home: Path) -> None:
    settings = Settings(home=home, model="openai:general", research_model="openai:reader")
    assert settings.model_for("research") == "openai:reader"
    assert settings.model_for("execute") == "openai:general"
    settings.require_llm()


def test_model_for_falls_back_to_model(home: Path) -> None:
    assert Settings(home=home, model="openai:general").model_for("research") == "openai:general"


def test_phase_model_alone_leaves_the_other_phase_unconfigured(home: Path) -> None:
    settings = Settings(home=home, execute_model="openai:writer")
    assert settings.model_for("execute") == "openai:writer"
    with pytest.raises(ConfigError, match="ERRANDS_RESEARCH_MODEL"):
        settings.model_for("research")


def test_secrets_lists_the_configured_keys(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-123456")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-123456")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-123456")
    assert sorted(Settings(home=home).secrets()) == [
        "google-123456",
        "sk-ant-123456",
        "sk-openai-123456",
    ]
