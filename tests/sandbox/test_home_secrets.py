"""A worker's home holds toolchains next to credentials. A job's sandbox sees the toolchains
that PATH points to (so `python3` or `cargo` run) and none of the credentials beside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from errands.git import Mirror, Workspace
from errands.sandbox import BubblewrapSandbox, SandboxPolicy
from errands.settings import Settings
from errands.workflow.project_config import EffectiveConfig
from errands.workflow.workspaces import policies
from tests.sandbox.conftest import requires_bwrap

pytestmark = requires_bwrap

# Credential files a developer's home typically holds, each with a secret of its own.
CREDENTIALS = (
    ".netrc",
    ".git-credentials",
    ".config/git/credentials",
    ".pypirc",
    ".npmrc",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".docker/config.json",
    ".aws/credentials",
    ".config/gcloud/application_default_credentials.json",
    ".kube/config",
    ".config/gh/hosts.yml",
    ".local/share/python_keyring/keyring_pass.cfg",
    ".local/share/keyrings/login.keyring",
    ".gnupg/private-keys-v1.d/key.key",
    ".ssh/id_ed25519",
)
# What the toolchains on PATH need, and must keep finding.
TOOLS = {
    ".local/bin/mytool": "#!/bin/sh\necho local tool runs\n",
    ".local/lib/python3.11/site-packages/userpkg.py": "VALUE = 1\n",
    ".cargo/bin/cargotool": "#!/bin/sh\necho cargo tool runs\n",
    ".pyenv/shims/pytool": "#!/bin/sh\necho pyenv tool runs\n",
    ".pyenv/versions/3.11/bin/python": "not really python\n",
}


def secret(name: str) -> str:
    return f"SECRET-{name.replace('/', '-')}-4711"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for name in CREDENTIALS:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(secret(name) + "\n")
    for name, text in TOOLS.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
        (home / name).chmod(0o755)
    path = [str(home / d) for d in (".local/bin", ".cargo/bin", ".pyenv/shims")]
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", ":".join([*path, os.environ["PATH"]]))
    return home


def job_policy(tmp_path: Path) -> SandboxPolicy:
    """The work policy a job gets, built by the code every job uses."""
    data = tmp_path / "data"
    mirror = Mirror(data / "mirrors" / "project-1.git")
    workspace = Workspace(
        data / "workspaces" / "task-1", "errands/1-x", mirror.path / "worktrees" / "t1"
    )
    cache = data / "cache" / "project-1"
    for made in (mirror.path / "worktrees" / "t1", workspace.path, cache):
        made.mkdir(parents=True)
    config = EffectiveConfig(
        verify_commands=[],
        setup_commands=[],
        setup_network=False,
        backend="bubblewrap",
        command_timeout=30,
        limits=SandboxPolicy(workspace=workspace.path, env={}).limits,
    )
    _, work = policies(Settings(home=data), mirror, workspace, cache, config)
    return work


def test_toolchains_under_the_home_run_but_no_credential_is_readable(
    tmp_path: Path, home: Path
) -> None:
    sandbox = BubblewrapSandbox(job_policy(tmp_path))

    tools = sandbox.run("mytool && cargotool && pytool", timeout=30)
    site = sandbox.run(f"cat {home}/.local/lib/python3.11/site-packages/userpkg.py", timeout=30)
    reads = {name: sandbox.run(f"cat {home / name}", timeout=30).output for name in CREDENTIALS}
    everything = sandbox.run(f"grep -rs SECRET {home} /tmp; ls -aR {home}", timeout=30)

    assert tools.ok, tools.output
    assert tools.output.split("\n")[:3] == ["local tool runs", "cargo tool runs", "pyenv tool runs"]
    assert site.output == "VALUE = 1\n"
    leaked = {name: out for name, out in reads.items() if "SECRET" in out}
    assert leaked == {}
    assert "SECRET" not in everything.output
    # Beside the bin, only what the toolchain itself is made of shows: of ~/.local its bin and
    # lib (pip's user scheme), of ~/.cargo its bin (CARGO_HOME is the project's cache).
    listing = everything.output
    assert "python_keyring" not in listing
    assert "credentials.toml" not in listing
    assert ".kube" not in listing and ".aws" not in listing


def test_credentials_inside_an_exposed_directory_are_masked(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATH entry that shows a whole directory of the home (here ~/.local and ~/.cargo
    themselves) still shows none of the well-known credential files in it."""
    monkeypatch.setenv("PATH", f"{home}/.local:{home}/.cargo:{home}:{os.environ['PATH']}")
    sandbox = BubblewrapSandbox(job_policy(tmp_path))

    result = sandbox.run(
        f"cat {home}/.local/share/python_keyring/keyring_pass.cfg "
        f"{home}/.local/share/keyrings/login.keyring {home}/.cargo/credentials.toml "
        f"{home}/.cargo/credentials {home}/.netrc {home}/.ssh/id_ed25519; "
        f"ls {home}/.local/bin; ls {home}/.cargo/bin",
        timeout=30,
    )

    assert "SECRET" not in result.output
    assert result.output.split()[-2:] == ["mytool", "cargotool"]
