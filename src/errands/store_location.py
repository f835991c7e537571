"""Where the data directory and the store are, read the way :class:`errands.settings.Settings`
reads them (keyword arguments aside: environment, then ``$ERRANDS_HOME/config.toml``, then
the defaults) without importing pydantic, which costs a fresh `errands locate` about as much
CPU as everything else it does.

Only the common cases are resolved here; anything unusual (a name set twice in different
cases, an empty value, a config file that does not parse, a value that is not a string)
gives None, and the caller builds the full Settings, which reads it or says what is wrong.
Settings remains the one definition: a test compares the two on many configurations.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

_NAMES = ("home", "database_url")


def _environment() -> dict[str, str] | None:
    """ERRANDS_HOME and ERRANDS_DATABASE_URL in any case (as pydantic-settings matches
    them); None when one is set twice or empty."""
    found: dict[str, str] = {}
    for key, value in os.environ.items():
        low = key.lower()
        if not low.startswith("errands_") or low.removeprefix("errands_") not in _NAMES:
            continue
        name = low.removeprefix("errands_")
        if name in found or not value:
            return None
        found[name] = value
    return found


def _config(path: Path) -> dict[str, str] | None:
    """``home`` and ``database_url`` from a config.toml (nothing when there is none)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    found: dict[str, str] = {}
    for key, value in data.items():
        if key.lower() not in _NAMES:
            continue
        if key not in _NAMES or not isinstance(value, str) or not value:
            return None
        found[key] = value
    return found


def store_location() -> tuple[Path, str] | None:
    """(data directory, the store's SQLAlchemy URL) as Settings would resolve them, or None
    when only Settings can say."""
    env = _environment()
    if env is None:
        return None
    if "home" in env:
        home = Path(env["home"])
    else:
        import platformdirs  # as errands.settings._default_home

        home = Path(platformdirs.user_data_dir("errands", appauthor=False))
    config = _config(home / "config.toml")
    if config is None:
        return None
    if "home" not in env and "home" in config:
        home = Path(config["home"])
    url = env.get("database_url") or config.get("database_url")
    return home, url or f"sqlite:///{home / 'errands.db'}"
