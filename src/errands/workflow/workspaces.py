"""A job's place to work: a warm workspace from the project's pool, the sandbox its commands
run in, and the project's setup commands already run.

Two sandboxes share the workspace: the setup sandbox may write the project's package caches
(and, when the project allows it, reach its allowlist of hosts — package registries — through
the egress proxy); the work sandbox, used for the agent's commands and verification, sees
those caches read-only and never has network. So only the commands the project declared can
change what later tasks install from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select

from errands.agent.tools import CodeSearch, WorkspaceTools
from errands.domain import JobState
from errands.egress import EgressConfig, egress_proxy, parse_hosts
from errands.egress.hosts import private_hosts
from errands.errors import CommandError
from errands.git import Mirror, Workspace, WorkspacePool
from errands.git.lock import locks_dir
from errands.git.worktrees import INDEX_DIR
from errands.index import CodeIndex
from errands.sandbox import Sandbox, SandboxPolicy, create_sandbox
from errands.settings import Settings, sandbox_env
from errands.store import Database, Job, Project
from errands.workflow.code_index import load_index
from errands.workflow.context import JobContext, workspace_name
from errands.workflow.metering import JobMeter
from errands.workflow.mirrors import mirror_path, open_mirror, pool_for
from errands.workflow.project_config import EffectiveConfig
from errands.workflow.verify import report_output

# Where package managers keep downloads, pointed into the project's cache directory so the
# second task of a project installs from disk.
CACHE_VARIABLES = {
    "XDG_CACHE_HOME": "xdg",
    "PIP_CACHE_DIR": "pip",
    "UV_CACHE_DIR": "uv",
    "npm_config_cache": "npm",
    "YARN_CACHE_FOLDER": "yarn",
    "GOMODCACHE": "go/mod",
    "GOCACHE": "go/build",
    "CARGO_HOME": "cargo",
}


@dataclass(frozen=True)
class JobWorkspace:
    workspace: Workspace
    sandbox: Sandbox | None  # None when the job runs no commands
    tools: WorkspaceTools

    @property
    def path(self) -> Path:
        return self.workspace.path


# Shown read-only to every sandbox anyway.
SYSTEM_PREFIXES = tuple(Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"))


# Directories of the home that hold a toolchain together with things that are not it.
# ~/.local: pip's user scheme is its bin and lib; share/ and state/ hold keyrings, histories
# and other programs' data. ~/.cargo: rustup's proxies are its bin; beside them are
# credentials.toml, config.toml (registry tokens) and a registry cache that CARGO_HOME
# moves into the project's cache anyway.
SHARED_HOME_DIRS = {".local": ("bin", "lib"), ".cargo": ("bin",)}


def toolchain_dirs(path_variable: str, home: Path) -> tuple[Path, ...]:
    """Toolchains that PATH points into outside the system directories, shown read-only so
    `python3`, `pytest` or `cargo` work in the sandbox. Under the home directory, a
    toolchain's own top-level directory (~/.pyenv, ~/.nvm, ~/go — the home itself stays
    hidden, so ~/.ssh does not exist); of a directory shared with other things
    (``SHARED_HOME_DIRS``) only the parts a toolchain runs from, or the tool's own directory
    below it (~/.local/share/pnpm). Elsewhere the directory holding the `bin` (a virtualenv
    in /opt or /srv). The sandbox masks well-known credential files inside all of them."""
    found: list[Path] = []
    for entry in path_variable.split(":"):
        path = Path(entry)
        if not entry or not path.is_absolute() or path in (home, Path("/")):
            continue
        if home in path.parents:
            tops = _home_toolchain(path.relative_to(home).parts, home)
        elif any(path == p or p in path.parents for p in SYSTEM_PREFIXES):
            continue
        else:
            tops = [path.parent if path.parent != Path("/") else path]
        found += [top for top in tops if top not in found and top.is_dir()]
    return tuple(found)


def _home_toolchain(parts: tuple[str, ...], home: Path) -> list[Path]:
    top, rest = parts[0], parts[1:]
    if top not in SHARED_HOME_DIRS or not rest:
        return [home / top]
    if rest[0] in SHARED_HOME_DIRS[top]:
        return [home / top / name for name in SHARED_HOME_DIRS[top]]
    # ~/.local/share/<tool>/bin, ~/.cargo/<tool>/bin: that tool's own directory.
    return [home.joinpath(*parts[: 3 if rest[0] == "share" else 2])]


def policies(
    settings: Settings, mirror: Mirror, workspace: Workspace, cache: Path, config: EffectiveConfig
) -> tuple[SandboxPolicy, SandboxPolicy]:
    """(setup policy, work policy) for one workspace."""
    env = dict(sandbox_env())
    env.update({name: str(cache / sub) for name, sub in CACHE_VARIABLES.items()})
    home = Path.home()
    readable = (mirror.path, *toolchain_dirs(env.get("PATH", ""), home))
    setup = SandboxPolicy(
        workspace=workspace.path,
        env=env,
        writable=(workspace.git_dir, cache),
        readable=readable,
        # The data directory holds the database, other tasks' workspaces and other projects'
        # mirrors; the home holds keys and credentials. The deeper grants above show through.
        # The mirror's worktrees/ holds every other job's private git directory; this job's own
        # (writable, deeper) still shows through. Errands' own indexes, this job's included,
        # are no command's business (see errands.git.worktrees.private_index).
        # Errands' own locks too: a command holding one would hold up every job of the project
        # (made here if missing: bubblewrap covers only what exists when a command starts).
        hidden=(
            settings.home,
            home,
            mirror.path / "worktrees",
            mirror.path / INDEX_DIR,
            locks_dir(mirror.path),
        ),
        # Only a project that asked for the host's whole network gets it; an allowlist goes
        # through the egress proxy, in a network namespace of its own (see _setup).
        network=config.setup_egress == "host",
        limits=config.limits,
    )
    work = replace(setup, writable=(workspace.git_dir,), readable=(*readable, cache), network=False)
    return setup, work


@contextmanager
def job_workspace(
    ctx: JobContext,
    mirror: Mirror,
    *,
    branch: str,
    start_point: str,
    config: EffectiveConfig,
    commands: bool,
    index: CodeIndex | None = None,
) -> Iterator[JobWorkspace]:
    """Acquire a workspace (released, cleaned, back to the pool when the block ends).

    With ``commands`` the project's setup runs first and the tools can run commands;
    without (research only reads), no sandbox is needed at all. The agent's search_code tool
    uses ``index``, or the project's saved index when none is given."""
    index = index or load_index(ctx.settings, ctx.lease.project_id)
    search: CodeSearch | None = (
        (lambda query, limit: index.search(mirror.path, query, limit=limit))
        if index is not None
        else None
    )
    pool = pool_for(ctx.settings, mirror, ctx.lease.project_id)
    _sweep(ctx, pool)
    # Acquiring clears the task branch out of any other work tree (a dead attempt's): a
    # stale attempt must not do that to the one that took its job over.
    ctx.check_lease()
    workspace = pool.acquire(ctx.workspace_name(), branch, start_point)
    tools: WorkspaceTools | None = None
    try:
        cache = ctx.settings.home / "cache" / f"project-{ctx.lease.project_id}"
        for sub in CACHE_VARIABLES.values():
            (cache / sub).mkdir(parents=True, exist_ok=True)
        setup_policy, work_policy = policies(ctx.settings, mirror, workspace, cache, config)
        sandbox = create_sandbox(config.backend, work_policy) if commands else None
        if sandbox is not None and config.backend == "none":
            ctx.emit(
                "sandbox.none",
                "WARNING: this project runs commands without isolation (sandbox 'none')",
            )
        if commands and config.setup_commands:
            _setup(ctx, setup_policy, config)
        tools = WorkspaceTools(
            workspace.path,
            sandbox,
            repository=workspace,
            command_timeout=config.command_timeout,
            cancel=ctx.cancel,
            code_search=search,
            command_output=lambda command, tail: report_output(ctx, command, tail),
        )
        yield JobWorkspace(workspace, sandbox, tools)
    finally:
        # Without commands nothing but Errands' own code ran here: unless one of its tools
        # wrote, the tree is still the checkout acquire made.
        touched = commands or (tools is not None and tools.touched)
        pool.release(workspace, untouched=not touched)


def _sweep(ctx: JobContext, pool: WorkspacePool) -> None:
    """Reclaim the workspaces of jobs whose worker died (their job is no longer running)."""
    cleaned = pool.sweep(_live_workspaces(ctx.db, ctx.lease.project_id), min_age=60.0)
    if cleaned:
        ctx.emit("workspace.swept", f"Reclaimed {cleaned} workspace(s) of dead jobs")


def _live_workspaces(db: Database, project_id: int) -> set[str]:
    with db.session() as session:
        running = session.execute(
            select(Job.id, Job.task_id, Job.lease_epoch).where(
                Job.project_id == project_id, Job.state == JobState.RUNNING
            )
        ).all()
    return {workspace_name(task_id, job_id, epoch) for job_id, task_id, epoch in running if task_id}


def sweep_machine(settings: Settings, db: Database) -> int:
    """The periodic clean-up of this machine's workspaces, for every project whose mirror
    lives here (a project with no new jobs would otherwise keep a dead job's tree)."""
    with db.session() as session:
        projects = session.execute(select(Project.id, Project.origin)).all()
    cleaned = 0
    for project_id, origin in projects:
        if not mirror_path(settings, project_id).is_dir():
            continue
        pool = pool_for(settings, open_mirror(settings, project_id, origin), project_id)
        cleaned += pool.sweep(_live_workspaces(db, project_id), min_age=60.0)
    return cleaned


def _setup(ctx: JobContext, policy: SandboxPolicy, config: EffectiveConfig) -> None:
    if config.setup_egress != "allowlist" or config.backend == "none":
        _run_setup(ctx, create_sandbox(config.backend, policy), config)
        return
    egress = EgressConfig(
        hosts=parse_hosts(config.setup_hosts),
        private_hosts=private_hosts(ctx.settings),
    )
    # No model routes: setup commands reach package registries, never a model with a key.
    with egress_proxy(egress, JobMeter(ctx)) as proxy:
        _run_setup(ctx, create_sandbox(config.backend, replace(policy, egress=proxy.grant)), config)


def _network_words(config: EffectiveConfig) -> str:
    if config.setup_egress == "off":
        return "no network"
    if config.setup_egress == "host" or config.backend == "none":
        return "with the host's whole network"
    return f"network through the egress proxy to {', '.join(config.setup_hosts) or 'no host'}"


def _run_setup(ctx: JobContext, sandbox: Sandbox, config: EffectiveConfig) -> None:
    network = _network_words(config)
    for command in config.setup_commands:
        ctx.check_cancelled()
        ctx.emit("setup.started", f"setup ({network}): {command}", command=command)
        result = sandbox.run(
            command,
            timeout=config.command_timeout,
            cancel=ctx.cancel,
            network=config.setup_egress == "host",
        )
        ctx.check_cancelled()
        ctx.emit(
            "setup.finished",
            f"setup: {command} → {'done' if result.ok else result.describe()}",
            command=command,
            exit_code=result.exit_code,
            duration=round(result.duration, 3),
            output=result.output,
        )
        if not result.ok:
            raise CommandError(
                f"The setup command {command!r} failed ({result.describe()}); fix the project's "
                "setup commands (errands project set --setup …, or .errands.toml)."
            )
