"""Settings → a model per phase, or an error that names the setting to set."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel

from errands.agent.providers import build_model
from errands.errors import ConfigError
from errands.settings import Settings


def test_anthropic_and_openai_per_phase(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        research_model="anthropic:claude-test",
        execute_model="openai:gpt-test",
        anthropic_api_key="sk-ant-123456",
        openai_base_url="http://127.0.0.1:9/v1",
    )
    research = build_model(settings, "research")
    execute = build_model(settings, "execute")
    assert isinstance(research.model, AnthropicModel)
    assert research.model.model_name == "claude-test"
    assert research.endpoint == "the Anthropic API"
    assert isinstance(execute.model, OpenAIChatModel)
    assert execute.endpoint == "http://127.0.0.1:9/v1"

    async def close() -> None:
        await research.aclose()
        await execute.aclose()

    asyncio.run(close())


def test_google_gemini_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic_ai.models.google import GoogleModel

    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key-123456")
    settings = Settings(home=tmp_path, model="google:gemini-3.8-flash")
    assert settings.google_api_key is not None
    assert "gemini-key-123456" in settings.secrets()  # redacted like the other keys

    handle = build_model(settings, "execute")
    assert isinstance(handle.model, GoogleModel)
    assert handle.model.model_name == "gemini-3.8-flash"
    assert handle.endpoint == "the Gemini API"
    assert handle.context_window == 1_048_576

    async def close() -> None:
        await handle.aclose()

    asyncio.run(close())


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({}, "ERRANDS_MODEL"),
        ({"model": "gpt-4"}, "provider:name"),
        ({"model": "mistral:large"}, "provider:name"),
        ({"model": "anthropic:claude"}, "ANTHROPIC_API_KEY"),
        ({"model": "openai:gpt"}, "OPENAI_BASE_URL"),
        ({"model": "google:gemini-3.8-flash"}, "GOOGLE_API_KEY"),
    ],
)
def test_missing_or_wrong_settings_name_what_to_set(
    tmp_path: Path, values: dict[str, Any], names: str
) -> None:
    settings = Settings(home=tmp_path, **values)
    with pytest.raises(ConfigError, match=names):
        build_model(settings, "research")


def test_sdk_response_models_are_built_at_import_not_on_first_use() -> None:
    # A fresh interpreter: the switch only works before the SDKs are imported, which this
    # test process may have done already. Lazily built models raced between the two job
    # threads of a worker (see errands.agent.providers).
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('DEFER_PYDANTIC_BUILD', None)\n"
        "import errands.agent.providers\n"
        "from openai.types import CompletionUsage\n"
        "from openai.types.chat import ChatCompletion\n"
        "from anthropic.types import Message\n"
        "assert CompletionUsage.__pydantic_complete__\n"
        "assert ChatCompletion.__pydantic_complete__\n"
        "assert Message.__pydantic_complete__\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
