"""Every setting is documented in README.md's configuration table (as datasette does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from errands.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def env_names(field: str) -> list[str]:
    """The environment variables that set ``field``: the aliases when it has them."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"ERRANDS_{field.upper()}"]


def configuration_table() -> str:
    """The table rows of the README section whose heading mentions configuration."""
    if not README.exists():
        pytest.fail(f"{README} does not exist; it must document every setting")
    lines = README.read_text(encoding="utf-8").splitlines()
    for start, line in enumerate(lines):
        heading = re.match(r"(#+)\s+(.*)", line)
        if heading and re.search(r"configur", heading.group(2), re.IGNORECASE):
            level = len(heading.group(1))
            rows = []
            for body in lines[start + 1 :]:
                nested = re.match(r"(#+)\s", body)
                if nested and len(nested.group(1)) <= level:
                    break
                if body.lstrip().startswith("|"):
                    rows.append(body)
            if rows:
                return "\n".join(rows)
    pytest.fail("README.md has no configuration section with a table")


def mentions(table: str, name: str) -> bool:
    return re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", table) is not None


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_configuration_table(field: str) -> None:
    table = configuration_table()
    names = env_names(field)
    assert any(mentions(table, name) for name in names), (
        f"setting {field!r} is not documented in README.md's configuration table "
        f"(expected one of {names})"
    )


def test_the_table_documents_no_setting_that_does_not_exist() -> None:
    table = configuration_table()
    known = {name for field in Settings.model_fields for name in env_names(field)}
    documented = set(re.findall(r"(?<![A-Z0-9_])ERRANDS_[A-Z0-9_]+", table))
    assert documented <= known, f"README documents unknown settings: {documented - known}"
