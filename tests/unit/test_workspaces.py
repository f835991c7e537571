"""Which host directories a job's sandbox may read."""

from __future__ import annotations

from pathlib import Path


def test_toolchains_on_path_are_shown_but_not_the_home(tmp_path: Path) -> None:
    from errands.workflow.workspaces import toolchain_dirs

    home = tmp_path / "home"
    for made in ("home/.pyenv/shims", "home/.cargo/bin", "opt/venv/bin", "home/.ssh"):
        (tmp_path / made).mkdir(parents=True)
    path = ":".join(
        [
            str(home / ".pyenv/shims"),
            str(home / ".cargo/bin"),
            str(tmp_path / "opt/venv/bin"),
            "/usr/local/bin",
            "/usr/bin",
            "relative/bin",
            "/",
            str(home),
        ]
    )
    assert toolchain_dirs(path, home) == (
        home / ".pyenv",
        home / ".cargo",
        tmp_path / "opt/venv",
    )
