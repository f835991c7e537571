"""The models our README, settings and pages offer as examples are ones a provider still
serves, and the built-in price table knows them: a user copying an example must not get a
retired model (Anthropic retired claude-sonnet-4-5 on 2026-11-30) or an unpriced one, whose
calls a budget refuses."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from pydantic_ai.providers._model_deprecations import (
    ANTHROPIC_MODEL_DEPRECATIONS,
    GEMINI_API_MODEL_DEPRECATIONS,
    OPENAI_MODEL_DEPRECATIONS,
)

from errands.accounts.cost import DEFAULT_PRICES
from errands.errors import ConfigError
from errands.executors.codex import codex_model
from errands.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RETIRING = {
    "anthropic": ANTHROPIC_MODEL_DEPRECATIONS,
    "openai": OPENAI_MODEL_DEPRECATIONS,
    "google": GEMINI_API_MODEL_DEPRECATIONS,
}
# provider:name as the examples write it; names with a dot or a dash and a digit.
_SPEC = re.compile(r"\b(anthropic|openai|google):([a-z][a-z0-9.\-]*[0-9a-z])")


def _examples() -> set[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text().splitlines()
    texts = [
        # The lines that set a model (ERRANDS_MODEL=…, its row in the settings' table), not
        # the context windows' prefixes or history.
        *(line for line in readme if "MODEL" in line),
        (ROOT / "src/errands/web/ui/templates/project.html").read_text(),
        str(Settings.model_fields["model"].description),
    ]
    # Each refusal's message names a model per provider to set.
    with pytest.raises(ConfigError) as unset:
        Settings(model=None, execute_model=None).model_for("execute")
    with pytest.raises(ConfigError) as not_openai:
        codex_model(None)
    texts += [str(unset.value), str(not_openai.value)]
    return {(m.group(1), m.group(2)) for text in texts for m in _SPEC.finditer(text)}


def test_the_examples_name_models_their_provider_still_serves() -> None:
    found = _examples()
    assert ("anthropic", "claude-sonnet-5-5") in found  # the check reads what it should
    retired = sorted(
        f"{provider}:{name} (retired {when.retirement_date})"
        for provider, name in found
        if (when := RETIRING[provider].get(name)) is not None
        and when.retirement_date is not None
        and when.retirement_date <= date.today()
    )
    assert not retired, f"examples name retired models: {retired}"


@pytest.mark.parametrize("spec", ["anthropic:claude-sonnet-5-5", "google:gemini-3.8-flash"])
def test_the_example_models_of_hosted_providers_have_a_built_in_price(spec: str) -> None:
    provider, name = spec.split(":", 1)
    assert (provider, name) in _examples()
    assert name in DEFAULT_PRICES
