"""Choosing a backend: bubblewrap when it works, a clear error when it does not, and no
isolation only when asked for by name (with a loud warning)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import errands.sandbox
from errands.errors import ConfigError
from errands.sandbox import BubblewrapSandbox, PlainSandbox, SandboxPolicy, create_sandbox
from errands.sandbox.bubblewrap import bwrap_problem
from tests.sandbox.conftest import requires_bwrap


@pytest.fixture
def policy(tmp_path: Path) -> SandboxPolicy:
    return SandboxPolicy(workspace=tmp_path, env={"PATH": os.environ["PATH"]})


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    bwrap_problem.cache_clear()
    yield
    bwrap_problem.cache_clear()


@requires_bwrap
@pytest.mark.parametrize("backend", ["auto", "bubblewrap"])
def test_bubblewrap_is_chosen_where_it_works(backend: str, policy: SandboxPolicy) -> None:
    sandbox = create_sandbox(backend, policy)  # type: ignore[arg-type]

    assert isinstance(sandbox, BubblewrapSandbox)
    assert sandbox.name == "bubblewrap"
    assert sandbox.policy is policy


@pytest.mark.usefixtures("fresh_probe")
def test_auto_refuses_to_run_unsandboxed_when_bwrap_is_missing(
    policy: SandboxPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(ConfigError) as caught:
        create_sandbox("auto", policy)

    assert "bwrap is not installed" in caught.value.message
    assert "apt-get install bubblewrap" in caught.value.message
    assert "ERRANDS_SANDBOX=none" in caught.value.message


@pytest.mark.usefixtures("fresh_probe")
def test_a_bwrap_that_cannot_create_namespaces_is_reported(
    policy: SandboxPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What bwrap says where user namespaces are off (e.g. docker's default seccomp profile).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(ConfigError, match="No permissions to create new namespace"):
        create_sandbox("bubblewrap", policy)


def test_none_is_plain_and_warns_once_per_process(
    policy: SandboxPolicy, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(errands.sandbox, "_warned_none", type(errands.sandbox._warned_none)())
    caplog.set_level(logging.WARNING, logger="errands.sandbox")

    first = create_sandbox("none", policy)
    second = create_sandbox("none", policy)

    assert isinstance(first, PlainSandbox)
    assert isinstance(second, PlainSandbox)
    assert first.name == "none"
    warnings = [r for r in caplog.records if "WITHOUT isolation" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
