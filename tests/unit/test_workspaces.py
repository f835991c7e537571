"""Which host directories a job's sandbox may read."""

from __future__ import annotations

from pathlib import Path


def test_toolchains_on_path_are_shown_but_not_the_home(tmp_path: Path) -> None:
    from errands.workflow.workspaces import toolchain_dirs

    home = tmp_path / "home"
    made_dirs = (
        "home/.pyenv/shims",
        "home/.cargo/bin",
        "home/.local/bin",
        "home/.local/lib",
        "home/.local/share/pnpm",
        "opt/venv/bin",
        "home/.ssh",
    )
    for made in made_dirs:
        (tmp_path / made).mkdir(parents=True)
    path = ":".join(
        [
            str(home / ".pyenv/shims"),
            str(home / ".cargo/bin"),
            str(home / ".local/bin"),
            str(home / ".local/share/pnpm"),
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
        # Of directories shared with other programs' data (and credentials), only what the
        # toolchain runs from.
        home / ".cargo/bin",
        home / ".local/bin",
        home / ".local/lib",
        home / ".local/share/pnpm",
        tmp_path / "opt/venv",
    )
