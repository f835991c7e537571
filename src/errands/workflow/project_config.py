"""A project's configuration: `.errands.toml` in the repository, overridden by the project's
settings in Errands, on top of what the index detected.

```toml
[verify]
commands = ["pytest -q", "ruff check ."]

[setup]                       # dependency installs, run before the agent works
commands = ["pip install -e .[dev]"]
network = true                # through the egress proxy, to `hosts` only; "host": the whole
                              # network of the host (explicit opt-out); nothing else ever has it
hosts = ["pypi.org:443", "files.pythonhosted.org:443"]  # default: ERRANDS_EGRESS_SETUP_HOSTS

[sandbox]
backend = "bubblewrap"        # or "none" (no isolation; explicit opt-out)

[executor]                    # what types the code (research and planning stay native)
execute = "claude-code"       # native (default), claude-code
revise = "native"             # default: the same as execute

[acp]                         # the acp executor: any agent speaking ACP on stdio
command = "gemini --acp"      # run inside the sandbox
provider = "google"           # its model endpoint, through the egress proxy

[mcp_servers.files]           # MCP servers handed to the executors, run inside the sandbox
command = "mcp-server-filesystem"
args = ["."]
env = { LOG_LEVEL = "info" }  # no secrets: this file is in the repository

[limits]
command_timeout = 600         # seconds of wall-clock time per command
cpu_seconds = 900             # CPU seconds per process
memory_mb = 8192              # address space per process
processes = 512               # processes a command may start
file_mb = 2048                # largest file a command may write
output_chars = 50000          # output kept per command
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from errands.errors import ConfigError, InvalidInput
from errands.mcp import NAME as MCP_NAME
from errands.mcp import RESERVED_NAME as RESERVED_MCP_NAME
from errands.mcp import McpServer, parse_env
from errands.sandbox import Limits
from errands.settings import Settings
from errands.store import Project

if TYPE_CHECKING:
    from errands.executors import ExecutorPhase

# The egress proxy and the executors (httpx, pydantic-ai, the agents' drivers) are imported
# where a configuration is checked or resolved, not with this module: the schemas import it,
# and so does every CLI command (`errands task list` must not pay a second for them).

CONFIG_FILE = ".errands.toml"
Backend = Literal["auto", "bubblewrap", "none"]
# How setup commands reach the network: not at all, through the egress proxy to an allowlist of
# hosts, or the host's whole network (an explicit opt-out in .errands.toml).
SetupNetwork = Literal["off", "allowlist", "host"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VerifyConfig(_Section):
    commands: list[str] | None = None


class SetupConfig(_Section):
    commands: list[str] = Field(default_factory=list)
    network: bool | Literal["host"] = False
    hosts: list[str] | None = None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from errands.egress.hosts import parse_hosts

        try:
            return [str(host) for host in parse_hosts(value)]
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc


class SandboxConfig(_Section):
    backend: Backend | None = None


class ExecutorConfig(_Section):
    # Names are checked when the file is read (parse_repo_config), not when a stored copy is
    # used: an executor this server does not know fails the job that needs it, by name.
    execute: str | None = None
    revise: str | None = None


class LimitsConfig(_Section):
    command_timeout: float | None = Field(default=None, gt=0)
    cpu_seconds: int | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    processes: int | None = Field(default=None, gt=0)
    file_mb: int | None = Field(default=None, gt=0)
    output_chars: int | None = Field(default=None, ge=1000)


class AcpConfig(_Section):
    command: str | None = Field(default=None, min_length=1, max_length=2000)
    provider: Literal["anthropic", "openai", "google"] | None = None


class McpServerConfig(_Section):
    command: str = Field(min_length=1, max_length=1000)
    args: list[str] = Field(default_factory=list, max_length=100)
    env: dict[str, str] = Field(default_factory=dict, max_length=100)


class RepoConfig(_Section):
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    setup: SetupConfig = Field(default_factory=SetupConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    acp: AcpConfig = Field(default_factory=AcpConfig)
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict, max_length=20)

    def servers(self) -> tuple[McpServer, ...]:
        """The declared MCP servers, checked (a ValueError names the problem)."""
        found = []
        for name, server in sorted(self.mcp_servers.items()):
            if not MCP_NAME.fullmatch(name):
                raise ValueError(f"mcp_servers.{name}: a name is letters, digits, - and _")
            if name == RESERVED_MCP_NAME:
                raise ValueError(
                    f"mcp_servers.{name}: the name is Errands' own (its ask_human server)"
                )
            env = parse_env(server.env, f"mcp_servers.{name}.env")
            found.append(McpServer(name, server.command, tuple(server.args), env))
        return tuple(found)


def parse_repo_config(text: str) -> RepoConfig:
    from errands.executors import check_executor_name

    config = _validate(text)
    for phase in ("execute", "revise"):
        name = getattr(config.executor, phase)
        try:
            if name is not None:
                check_executor_name(name)
        except ConfigError as exc:
            raise InvalidInput(f"{CONFIG_FILE} is invalid: executor.{phase}: {exc}") from exc
    try:
        config.servers()
    except ValueError as exc:
        raise InvalidInput(f"{CONFIG_FILE} is invalid: {exc}") from exc
    return config


def _validate(text: str) -> RepoConfig:
    try:
        return RepoConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{CONFIG_FILE} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"{CONFIG_FILE} is invalid: {problems}") from exc


@dataclass(frozen=True)
class EffectiveConfig:
    verify_commands: list[str]
    setup_commands: list[str]
    setup_network: bool  # setup reaches the network at all (setup_egress says how)
    backend: Backend
    command_timeout: float
    limits: Limits
    setup_egress: SetupNetwork = "off"
    setup_hosts: tuple[str, ...] = ()  # host:port pairs, for "allowlist"
    # The executor of each coding phase.
    executors: dict[ExecutorPhase, str] = field(
        default_factory=lambda: {"execute": "native", "revise": "native"}
    )
    # The acp executor's agent command and the model endpoint it calls (None: not set).
    acp_command: str | None = None
    acp_provider: Literal["anthropic", "openai", "google"] | None = None
    mcp_servers: tuple[McpServer, ...] = ()


def effective_config(project: Project, settings: Settings) -> EffectiveConfig:
    """Errands' project settings win over the repository's file, which wins over detection
    and the global defaults."""
    repo = RepoConfig.model_validate(project.repo_config or {})
    verify = (
        project.verify_commands
        if project.verify_commands is not None
        else repo.verify.commands
        if repo.verify.commands is not None
        else project.detected_commands
    )
    setup = project.setup_commands if project.setup_commands is not None else repo.setup.commands
    # The project's on/off setting wins; "on" is the allowlist unless the file asks for the
    # host's network.
    asked = repo.setup.network if project.setup_network is not False else False
    if project.setup_network is True and asked is False:
        asked = True
    egress: SetupNetwork = (
        "off" if not setup or asked is False else "host" if asked == "host" else "allowlist"
    )
    backend: Backend = (
        project.sandbox_backend or repo.sandbox.backend or settings.sandbox  # type: ignore[assignment]
    )
    lim, base = repo.limits, Limits()
    limits = Limits(
        cpu_seconds=lim.cpu_seconds or base.cpu_seconds,
        memory_bytes=(lim.memory_mb * 1024**2) if lim.memory_mb else base.memory_bytes,
        processes=lim.processes or base.processes,
        file_bytes=(lim.file_mb * 1024**2) if lim.file_mb else base.file_bytes,
        output_chars=lim.output_chars or settings.command_output_limit,
    )
    execute = project.executor or repo.executor.execute or settings.executor
    revise = (
        project.revise_executor
        or repo.executor.revise
        or settings.revise_executor
        # Unless something names one for revising, revise rounds use execute's executor.
        or execute
    )
    return EffectiveConfig(
        verify_commands=list(verify),
        setup_commands=list(setup),
        setup_network=egress != "off",
        setup_egress=egress,
        setup_hosts=_setup_hosts(
            project.setup_hosts if project.setup_hosts is not None else repo.setup.hosts,
            settings,
        ),
        backend=backend,
        command_timeout=lim.command_timeout or settings.command_timeout,
        limits=limits,
        executors={"execute": execute, "revise": revise},
        acp_command=repo.acp.command or settings.acp_command,
        acp_provider=repo.acp.provider or settings.acp_provider,
        mcp_servers=_servers(repo),
    )


def _setup_hosts(declared: list[str] | None, settings: Settings) -> tuple[str, ...]:
    from errands.egress.hosts import parse_hosts

    if declared is not None:
        return tuple(declared)
    try:
        return tuple(str(host) for host in parse_hosts(settings.egress_setup_hosts))
    except InvalidInput as exc:
        raise ConfigError(f"ERRANDS_EGRESS_SETUP_HOSTS: {exc.message}") from exc


def _servers(repo: RepoConfig) -> tuple[McpServer, ...]:
    # Checked when the file was read (parse_repo_config), so a stored copy passes.
    try:
        return repo.servers()
    except ValueError as exc:
        raise ConfigError(f"{CONFIG_FILE} is invalid: {exc}") from exc
