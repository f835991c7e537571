"""`errands locate` finds the data directory and the store without Settings (pydantic): it
must find the same ones Settings does, or hand over to Settings when it cannot tell."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands.settings import Settings
from errands.store_location import store_location

# (environment, config.toml at the data directory Settings reads it from, or None for none)
CASES: list[tuple[dict[str, str], str | None]] = [
    ({}, None),
    ({"ERRANDS_HOME": "{tmp}/data"}, None),
    ({"errands_home": "{tmp}/data"}, None),  # pydantic-settings ignores the case
    ({"ERRANDS_HOME": "{tmp}/data", "ERRANDS_DATABASE_URL": "sqlite:///{tmp}/x.db"}, None),
    ({"Errands_Database_Url": "postgresql://u@127.0.0.1/db"}, None),
    ({"ERRANDS_HOME": "{tmp}/data"}, 'database_url = "sqlite:///{tmp}/from-toml.db"\n'),
    (
        {"ERRANDS_HOME": "{tmp}/data", "ERRANDS_DATABASE_URL": "sqlite:///{tmp}/env.db"},
        'database_url = "sqlite:///{tmp}/from-toml.db"\n',
    ),
    ({}, 'home = "{tmp}/moved"\nmodel = "openai:x"\n'),  # the file names another home
    ({"ERRANDS_HOME": "{tmp}/data"}, 'home = "{tmp}/moved"\n'),  # the environment wins
    ({"ERRANDS_HOME": "{tmp}/data"}, "[section]\nkey = 1\n"),
]


@pytest.mark.parametrize(("env", "toml"), CASES)
def test_the_quick_location_is_the_one_settings_finds(
    env: dict[str, str],
    toml: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the default home
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    home = Path(env["ERRANDS_HOME"].format(tmp=tmp_path)) if "ERRANDS_HOME" in env else None
    if "errands_home" in env:
        home = Path(env["errands_home"].format(tmp=tmp_path))
    config_dir = home or Settings().home
    if toml is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config.toml").write_text(toml.format(tmp=tmp_path))
    settings = Settings()
    assert store_location() == (settings.home, settings.resolved_database_url)


@pytest.mark.parametrize(
    ("env", "toml"),
    [
        ({"ERRANDS_HOME": "{tmp}/a", "errands_home": "{tmp}/b"}, None),  # which one? Settings says
        ({"ERRANDS_DATABASE_URL": ""}, None),
        ({"ERRANDS_HOME": "{tmp}/data"}, "database_url = [\n"),  # not TOML: Settings says so
        ({"ERRANDS_HOME": "{tmp}/data"}, "database_url = 5\n"),  # not a string: likewise
        ({"ERRANDS_HOME": "{tmp}/data"}, 'DATABASE_URL = "sqlite:///x.db"\n'),
    ],
)
def test_anything_unusual_is_left_to_settings(
    env: dict[str, str], toml: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    if toml is not None:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "config.toml").write_text(toml)
    assert store_location() is None
