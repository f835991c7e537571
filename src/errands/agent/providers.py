"""Turn settings into a pydantic-ai model for a phase. The only place that knows providers."""

from __future__ import annotations

import dataclasses
import functools
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# The OpenAI and Anthropic SDKs build their response models' validators on first use, and
# pydantic's deferred build is not thread-safe: two jobs of one worker meeting a model at
# once failed a task with "type object 'CompletionUsage' has no attribute
# '__pydantic_core_schema__'" (the chaos test, worker concurrency 2). Built when the SDK's
# modules are imported instead, under Python's import lock: about a second more to import
# the SDK, once per process. Read by the SDKs at import, so set before they are imported
# (they are imported lazily, in `_openai` and `_anthropic`).
os.environ.setdefault("DEFER_PYDANTIC_BUILD", "false")

from pydantic_ai.models import Model

from errands.agent.context import FALLBACK_CONTEXT_WINDOW, context_window
from errands.errors import ConfigError
from errands.settings import MODEL_PROVIDERS, Phase, Settings, check_model_spec

PROVIDERS = MODEL_PROVIDERS


@dataclass(frozen=True)
class ModelHandle:
    """A model plus how to close its HTTP client. Each agent run opens and closes its own
    inside its event loop: a client outliving its loop fails when it is garbage-collected."""

    model: Model
    aclose: Callable[[], Awaitable[None]]
    endpoint: str  # for error messages: which server we failed to talk to
    # What the loop fits each request to (see errands.agent.context).
    context_window: int = FALLBACK_CONTEXT_WINDOW  # tokens
    tool_output_limit: int = 40_000  # characters of one tool result


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for the clients of this process, as the SDKs would build each (the
    CA bundle, SSL_CERT_FILE and SSL_CERT_DIR honoured): building one reads the bundle,
    about 20 ms, and every agent run builds a client. A context is safe to share across
    threads and event loops; the clients themselves are not shared (see ModelHandle)."""
    import httpx

    return httpx.create_ssl_context()


def build_model(settings: Settings, phase: Phase) -> ModelHandle:
    spec = settings.model_for(phase)
    try:
        check_model_spec(spec)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.message} (set ERRANDS_MODEL or ERRANDS_{phase.upper()}_MODEL, or the "
            "project's model)"
        ) from exc
    provider, _, name = spec.partition(":")
    # The SDK clients retry 429 and 5xx with exponential backoff and honour retry-after.
    builders = {"openai": _openai, "anthropic": _anthropic, "google": _google}
    handle = builders[provider](settings, name)
    return dataclasses.replace(
        handle,
        context_window=context_window(spec, settings.context_windows),
        tool_output_limit=settings.tool_output_limit,
    )


def _openai(settings: Settings, name: str) -> ModelHandle:
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and settings.openai_base_url is None:
        raise ConfigError(
            "The openai provider needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio)."
        )
    openai_client = AsyncOpenAI(
        base_url=settings.openai_base_url,
        # Local servers accept any key; the SDK insists on one.
        api_key=key or "not-needed",
        max_retries=settings.llm_max_retries,
        timeout=settings.llm_timeout,
        http_client=DefaultAsyncHttpxClient(verify=_tls()),
    )
    return ModelHandle(
        OpenAIChatModel(name, provider=OpenAIProvider(openai_client=openai_client)),
        openai_client.close,
        settings.openai_base_url or "the OpenAI API",
    )


def _anthropic(settings: Settings, name: str) -> ModelHandle:
    # Imported here: the Anthropic SDK alone takes a second to import.
    from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    if settings.anthropic_api_key is None:
        raise ConfigError("The anthropic provider needs ANTHROPIC_API_KEY.")
    anthropic_client = AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=settings.llm_max_retries,
        timeout=settings.llm_timeout,
        http_client=DefaultAsyncHttpxClient(verify=_tls()),
    )
    return ModelHandle(
        AnthropicModel(name, provider=AnthropicProvider(anthropic_client=anthropic_client)),
        anthropic_client.close,
        settings.anthropic_base_url or "the Anthropic API",
    )


def _google(settings: Settings, name: str) -> ModelHandle:
    # Imported here: google-genai is only needed by those who use Gemini.
    import httpx2
    from google.genai.types import HttpRetryOptions
    from pydantic_ai.models.google import GoogleModel
    from pydantic_ai.providers.google import GoogleProvider

    if settings.google_api_key is None:
        raise ConfigError("The google provider needs GOOGLE_API_KEY (or GEMINI_API_KEY).")
    # Our own client, so that the run closes it (and so that its timeout is ours).
    http_client = httpx2.AsyncClient(timeout=httpx2.Timeout(settings.llm_timeout, connect=10))
    provider = GoogleProvider(
        api_key=settings.google_api_key.get_secret_value(),
        base_url=settings.google_base_url,
        http_client=http_client,
        # google-genai retries 408, 429 and 5xx with backoff; attempts count the first one.
        retry_options=HttpRetryOptions(attempts=settings.llm_max_retries + 1),
    )
    return ModelHandle(
        GoogleModel(name, provider=provider),
        http_client.aclose,
        settings.google_base_url or "the Gemini API",
    )
