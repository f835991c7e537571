"""One typed settings object. Nothing else in Errands reads ``os.environ``, but for
:mod:`errands.store_location`, which finds the store as this does without importing pydantic
(for `errands locate`; a test holds the two to the same answers).

Values come from (highest first): keyword arguments, environment variables, a TOML file at
``$ERRANDS_HOME/config.toml``, then the defaults declared here. Every field is documented in
the README's configuration table; a test fails when one is missing there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from errands.errors import ConfigError

Phase = Literal["research", "execute"]


# The only host variables a command in a workspace sees (plus what the sandbox sets itself):
# never credentials, never LLM or GitHub keys.
SANDBOX_ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


def sandbox_env() -> dict[str, str]:
    return {name: os.environ[name] for name in SANDBOX_ENV_ALLOWLIST if name in os.environ}


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("errands", appauthor=False))


MODEL_PROVIDERS = ("openai", "anthropic", "google")

# What setup commands reach through the egress proxy when a project names nothing: the public
# package registries of the ecosystems Errands detects (pip/uv, npm/yarn, cargo, go).
DEFAULT_SETUP_HOSTS = (
    "pypi.org:443",
    "files.pythonhosted.org:443",
    "registry.npmjs.org:443",
    "registry.yarnpkg.com:443",
    "crates.io:443",
    "index.crates.io:443",
    "static.crates.io:443",
    "proxy.golang.org:443",
    "sum.golang.org:443",
)


def check_model_spec(spec: str) -> str:
    """``spec`` if it is ``provider:name`` with a provider we speak, else ConfigError."""
    provider, sep, name = spec.partition(":")
    if not sep or not name.strip() or provider not in MODEL_PROVIDERS:
        raise ConfigError(
            f"Model {spec!r} is not of the form provider:name with provider one of "
            f"{', '.join(MODEL_PROVIDERS)}."
        )
    return spec


class BillingPlan(BaseModel):
    """A plan of the billing module: what its Stripe price is and what a paid invoice grants."""

    price: str = Field(min_length=1)
    monthly_credits_usd: float = Field(ge=0)
    seats: int | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERRANDS_", extra="ignore", populate_by_name=True)

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory: the SQLite database, repository mirrors, workspaces.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default: SQLite at $ERRANDS_HOME/errands.db.",
    )
    model: str | None = Field(
        default=None,
        description="Model for every phase as provider:name, e.g. openai:gpt-4.1, "
        "anthropic:claude-sonnet-5-5 or google:gemini-3.8-flash.",
    )
    research_model: str | None = Field(
        default=None, description="Model for research (read-only); defaults to ERRANDS_MODEL."
    )
    execute_model: str | None = Field(
        default=None,
        description="Model for planning, editing and revising; defaults to ERRANDS_MODEL.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, LM Studio, …).",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="API key for the OpenAI-compatible endpoint.",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="API key for Anthropic.",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        description="Anthropic endpoint override (a proxy or gateway).",
    )
    google_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_GOOGLE_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"),
        description="API key for Google Gemini (the Gemini API, google:<model>).",
    )
    google_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ERRANDS_GOOGLE_BASE_URL", "GOOGLE_GEMINI_BASE_URL"),
        description="Gemini API endpoint override (a proxy or gateway).",
    )
    executor: str = Field(
        default="native",
        description="What types the code of each subtask (execute and revise): native (Errands' "
        "own loop with ERRANDS_EXECUTE_MODEL), claude-code or codex (the Claude Code or Codex "
        "CLI inside the sandbox). A project may choose its own (.errands.toml, the project "
        "page, the CLI).",
    )
    revise_executor: str | None = Field(
        default=None,
        description="The executor for revise rounds, when it differs; default: ERRANDS_EXECUTOR.",
    )
    acp_command: str | None = Field(
        default=None,
        description="The acp executor's agent: a command speaking the Agent Client Protocol on "
        "stdio, run inside the sandbox (e.g. 'gemini --acp'); a project's .errands.toml [acp] "
        "command wins.",
    )
    acp_provider: Literal["anthropic", "openai", "google"] | None = Field(
        default=None,
        description="The model endpoint the acp executor's agent calls through the egress "
        "proxy (anthropic, openai or google); a project's [acp] provider wins.",
    )
    llm_max_retries: int = Field(
        default=3, ge=0, description="Retries (with backoff) of an LLM request on 429/5xx."
    )
    llm_timeout: float = Field(default=300.0, gt=0, description="Seconds per LLM request.")
    context_windows: dict[str, int] = Field(
        default_factory=dict,
        description="Context window in tokens per model, as JSON by provider:name prefix, e.g. "
        '{"openai:qwen2.5-coder": 32768}; the longest matching prefix wins. Built in: '
        "anthropic 200k, gpt-4.1 1M, gpt-4o 128k, gpt-5 400k, o1/o3/o4 200k, gemini 1M; any "
        "other model 32k. Each request is fitted to about three quarters of it.",
    )
    tool_output_limit: int = Field(
        default=40_000,
        ge=1000,
        description="Characters of one tool result the model sees (head and tail, with a note "
        "on what was cut); at most a quarter of what fits the model's context window.",
    )
    agent_max_requests: int = Field(
        default=60, ge=1, description="Most model requests one agent run may make."
    )
    output_retries: int = Field(
        default=2, ge=0, description="Times an invalid structured output is sent back to fix."
    )
    verify_attempts: int = Field(
        default=3, ge=1, description="Tries per subtask to make its verify commands pass."
    )
    execution_questions: int = Field(
        default=3,
        ge=0,
        description="Questions the executing and revising agent may ask per task; past it, "
        "it goes on with the option it leans towards (recorded as the answer).",
    )
    command_timeout: float = Field(
        default=600.0, gt=0, description="Wall-clock seconds for one command in a workspace."
    )
    command_output_limit: int = Field(
        default=50_000, ge=1000, description="Characters of a command's output kept (head+tail)."
    )
    index_cache_mb: int = Field(
        default=1024,
        ge=0,
        description="Memory the code indexes a worker or server keeps loaded may take, in MB "
        "(each counted as three times its saved size); the least recently used go first.",
    )
    sandbox: Literal["auto", "bubblewrap", "none"] = Field(
        default="auto",
        description="How commands are isolated: auto (bubblewrap, required), bubblewrap, or "
        "none (no isolation: an explicit, logged opt-out). A project may choose too.",
    )
    local_origins: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories (separated by ':' in the environment, a list in config.toml) "
        "inside which a repository on the server's disk (a local path or file:// origin) may "
        "be attached to a project through the server once accounts exist. Default none: then "
        "only the machine's user may attach local repositories (the CLI, and the server while "
        "no account exists). $ERRANDS_HOME is never allowed.",
    )
    egress_setup_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SETUP_HOSTS),
        description="host:port pairs (comma-separated in the environment) that projects' setup "
        "commands reach through the egress proxy when their .errands.toml names none.",
    )
    egress_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host:port pairs (comma-separated) a project's allowlist may reach even "
        "though they resolve to a loopback, private or link-local address (a registry mirror "
        "on the LAN). Default none: such addresses are refused.",
    )
    host: str = Field(default="127.0.0.1", description="Address `errands serve` listens on.")
    port: int = Field(default=8765, description="Port `errands serve` listens on.")
    worker_concurrency: int = Field(
        default=8,
        ge=1,
        description="Jobs one worker runs at once (most of a job is waiting for the model).",
    )
    worker_poll_interval: float = Field(
        default=0.5, gt=0, description="Seconds between looks for queued jobs."
    )
    job_lease_seconds: float = Field(
        default=120.0, gt=0, description="A running job not heartbeating this long is re-queued."
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts of a job (its worker died, or a retryable error such as an LLM "
        "outage) before it gives up and the task fails.",
    )
    job_retry_delay: float = Field(
        default=15.0,
        ge=0,
        description="Seconds before the first retry of a job that hit a retryable error; "
        "doubles with each attempt (with jitter).",
    )
    job_retry_max_delay: float = Field(
        default=600.0, ge=0, description="Upper bound of the retry delay, in seconds."
    )
    project_max_jobs: int = Field(
        default=4,
        ge=1,
        description="Jobs of one project running at once across all workers (a project "
        "may set its own).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0). When set, workers on any machine are "
        "woken through Redis (Huey's queue) the moment a job is queued; unset, they poll "
        "the database.",
    )
    queue_name: str = Field(
        default="errands",
        description="Name of the Redis queue; installs sharing one Redis need different names.",
    )

    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub REST API base URL; for GitHub Enterprise Server https://HOST/api/v3.",
    )
    github_app_id: str | None = Field(
        default=None, description="GitHub App id (with a private key: App authentication)."
    )
    github_private_key: SecretStr | None = Field(
        default=None, description="The GitHub App's private key (PEM text)."
    )
    github_private_key_path: Path | None = Field(
        default=None, description="File holding the GitHub App's private key (PEM)."
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None, description="Secret GitHub signs webhook deliveries with."
    )
    stripe_secret_key: SecretStr | None = Field(
        default=None,
        description="Billing (hosted installs, pip install 'errands[billing]'): Stripe's secret "
        "API key. Billing is on only when this, ERRANDS_STRIPE_WEBHOOK_SECRET and "
        "ERRANDS_BILLING_PLANS are all set; otherwise no billing route exists.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The signing secret (whsec_…) of the Stripe webhook endpoint "
        "/api/billing/stripe/webhook.",
    )
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API endpoint override (a proxy; tests' fake Stripe)."
    )
    billing_plans: dict[str, BillingPlan] = Field(
        default_factory=dict,
        description='Billing plans as JSON: {"team": {"price": "price_…", "monthly_credits_usd": '
        '50, "seats": 5}}: the Stripe price id of each plan\'s subscription, the credits each '
        "paid invoice grants, the seats it includes.",
    )
    github_token: SecretStr | None = Field(
        default=None,
        description="Fine-grained personal access token (instead of a GitHub App).",
    )
    github_oauth_client_id: str | None = Field(
        default=None,
        description="Client id of a GitHub OAuth App; with its secret, users may sign in with "
        "GitHub.",
    )
    github_oauth_client_secret: SecretStr | None = Field(
        default=None, description="Client secret of that GitHub OAuth App."
    )
    github_web_url: str = Field(
        default="https://github.com",
        description="GitHub's web address, for OAuth sign-in; for GitHub Enterprise Server "
        "https://HOST.",
    )
    github_trigger_label: str = Field(
        default="errands", description="Issue label that starts research on a GitHub issue."
    )
    github_max_wait: float = Field(
        default=120.0,
        ge=0,
        description="Longest GitHub rate-limit wait (seconds) honoured inside a job; a longer "
        "one fails the job with the time to retry.",
    )

    # -- accounts and teams (errands.accounts) ------------------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts organizations' secrets (LLM and GitHub keys) in the "
        "store; any long random string. Without it, organization secrets cannot be saved.",
    )
    public_url: str | None = Field(
        default=None,
        description="The address users reach Errands at (e.g. https://errands.example.com), "
        "for links in emails; default: http://HOST:PORT.",
    )
    session_days: float = Field(
        default=14.0, gt=0, description="Days a browser session lasts before signing in again."
    )
    sign_in_free_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins in a row an account may have before each further attempt "
        "waits: 1 second after this many, doubling with every further failure up to "
        "ERRANDS_SIGN_IN_MAX_DELAY; a successful sign-in starts the count again.",
    )
    sign_in_address_free_attempts: int = Field(
        default=20,
        ge=1,
        description="The same count per client address, over every account it tries (more "
        "than per account: people behind one NAT share an address).",
    )
    sign_in_max_delay: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait (seconds) between sign-in attempts of one account or address, "
        "however many failed: how long an attacker can keep a real user out at most.",
    )
    stream_recheck_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often (seconds) an open event stream checks again that its caller "
        "may still read it (token revoked, member removed, signed out): the longest it "
        "outlives the access.",
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for invitations, email verification and password resets; "
        "unset, no email is sent (invitation codes are still shown to the owner).",
    )
    smtp_port: int = Field(default=587, description="SMTP server port.")
    smtp_tls: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="SMTP transport security: starttls, ssl (implicit TLS), or none "
        "(plain; only for a relay on the same machine).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP user name, if any.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password, if any.")
    mail_from: str = Field(
        default="errands@localhost", description="Sender address of the emails Errands sends."
    )

    # -- notifications (errands.notifications) -------------------------------------------
    notify_coalesce_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Events of one task within this many seconds of each other become one "
        "notification (sent once the task has been quiet that long, or after five times as "
        "long at most).",
    )
    notify_retry_delay: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before the first retry of a notification that could not be "
        "delivered (a webhook answering 5xx, an unreachable SMTP server); doubles per attempt, "
        "with jitter, up to an hour.",
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, description="Attempts to deliver one notification before giving up."
    )
    notify_claim_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a worker holds a notification it is delivering; one whose "
        "worker died is tried again after this.",
    )
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks (CIDR, comma-separated) a notification webhook may reach although "
        "they are internal (loopback, private, link-local); default none: webhooks go only to "
        "public addresses.",
    )

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("local_origins", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        # The environment gives one string, like PATH; config.toml and Python give a list.
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("egress_setup_hosts", "egress_private_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # host:port holds a colon, so the environment separates them with commas.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file lives in the data directory, which itself may come from the
        # environment, so resolve ERRANDS_HOME first.
        home_env = init_settings().get("home") or env_settings().get("home")
        home = Path(home_env) if home_env else _default_home()
        toml = TomlConfigSettingsSource(settings_cls, toml_file=home / "config.toml")
        return (init_settings, env_settings, toml)

    # -- derived values -------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'errands.db'}"

    @property
    def mirrors_dir(self) -> Path:
        return self.home / "mirrors"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def github_oauth_configured(self) -> bool:
        return bool(self.github_oauth_client_id and self.github_oauth_client_secret)

    def for_project(self, research_model: str | None, execute_model: str | None) -> Settings:
        """These settings with a project's own model per phase, where it chose one."""
        chosen = {"research_model": research_model, "execute_model": execute_model}
        update = {field: value for field, value in chosen.items() if value}
        return self.model_copy(update=update) if update else self

    def model_for(self, phase: Phase) -> str:
        """The ``provider:name`` model for a phase, or a ConfigError naming what to set."""
        specific = self.research_model if phase == "research" else self.execute_model
        name = specific or self.model
        if not name:
            raise ConfigError(
                "No LLM is configured: set ERRANDS_MODEL (e.g. openai:gpt-4.1 with OPENAI_API_KEY"
                " or OPENAI_BASE_URL, anthropic:claude-sonnet-5-5 with ANTHROPIC_API_KEY, or"
                " google:gemini-3.8-flash with GOOGLE_API_KEY)"
                f" or ERRANDS_{phase.upper()}_MODEL."
            )
        return name

    def secrets(self) -> list[str]:
        """Secret values, so logs and events can be scrubbed of them."""
        return [
            secret.get_secret_value()
            for secret in (
                self.openai_api_key,
                self.anthropic_api_key,
                self.google_api_key,
                self.github_token,
                self.github_webhook_secret,
                self.github_private_key,
                self.secret_key,
                self.smtp_password,
                self.github_oauth_client_secret,
                self.stripe_secret_key,
                self.stripe_webhook_secret,
            )
            if secret is not None and len(secret.get_secret_value()) >= 6
        ]

    @property
    def billing_enabled(self) -> bool:
        """Billing is on only when Stripe's key, the webhook secret and plans are all set."""
        return bool(self.stripe_secret_key and self.stripe_webhook_secret and self.billing_plans)

    def require_llm(self) -> None:
        """Fail early, before any work is accepted, when no model is configured."""
        self.model_for("research")
        self.model_for("execute")
