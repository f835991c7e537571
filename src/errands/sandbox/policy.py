"""What a sandboxed command may see and use. Secure by default: only the workspace is
writable, no network, a scrubbed environment, and limits on CPU, memory, processes, file size,
output and wall-clock time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Well-known credential files and directories, relative to a home directory. The bubblewrap
# backend masks each of them in the worker's home whatever the policy shows: a toolchain's
# directory granted read-only (a PATH entry) must never carry a token along with it.
HOME_SECRETS = (
    ".ssh",
    ".gnupg",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".config/git/credentials",
    ".pypirc",
    ".config/pip",
    ".pip",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".config/yarn",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".cargo/config",
    ".cargo/config.toml",
    ".docker",
    ".config/containers/auth.json",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".config/gh",
    ".config/hub",
    ".config/glab-cli",
    ".gem/credentials",
    ".m2/settings.xml",
    ".m2/settings-security.xml",
    ".gradle/gradle.properties",
    ".composer/auth.json",
    ".config/composer/auth.json",
    ".terraform.d/credentials.tfrc.json",
    ".vault-token",
    ".pgpass",
    ".my.cnf",
    ".password-store",
    ".local/share/keyrings",
    ".local/share/python_keyring",
    ".local/share/kwalletd",
)


def home_secrets(home: Path) -> tuple[Path, ...]:
    return tuple(home / name for name in HOME_SECRETS)


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 900  # CPU time of each process (RLIMIT_CPU)
    memory_bytes: int = 8 * 1024**3  # address space of each process (RLIMIT_AS)
    processes: int = 512  # processes the sandbox may add on top of what already runs
    file_bytes: int = 2 * 1024**3  # largest file a command may write (RLIMIT_FSIZE)
    output_chars: int = 50_000  # characters of output kept (head and tail)


@dataclass(frozen=True)
class EgressGrant:
    """The sandbox's one way out, through the egress proxy on the host (errands.egress): its
    Unix socket is shown inside, and a forwarder started before each command listens on the
    sandbox's own loopback at ``port`` and relays to it. ``env`` tells clients inside where
    that is (base URLs, HTTP(S)_PROXY, placeholder keys) and joins the command's environment."""

    socket: Path  # the proxy's socket on the host
    port: int  # where the forwarder listens inside, on 127.0.0.1
    env: Mapping[str, str]
    forwarder: Path  # the forwarder script (standard library only)


@dataclass(frozen=True)
class SandboxPolicy:
    workspace: Path  # the working directory, and the only writable tree (with `writable`)
    env: Mapping[str, str]  # the complete environment of the command (already allowlisted)
    writable: tuple[Path, ...] = ()  # e.g. the worktree's private git directory
    readable: tuple[Path, ...] = ()  # e.g. the project's mirror, toolchains under $HOME
    hidden: tuple[Path, ...] = ()  # never visible, even below a readable path (data dir, home)
    network: bool = False  # whether run(network=True) may turn the network on at all
    egress: EgressGrant | None = None  # the egress proxy, for commands without the network
    limits: Limits = field(default_factory=Limits)
