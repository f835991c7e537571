"""Building and inspecting real git repositories for the tests (not through errands.git)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def sh(cwd: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    """Run git directly (not through errands.git) to build and inspect fixtures."""
    full_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", **(env or {})}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, input=input, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode()}"
    return proc.stdout.decode(errors="replace")


def commit_files(repo: Path, files: dict[str, str | bytes | None], message: str) -> str:
    """Write (None: delete) files and commit them; return the new HEAD."""
    for name, content in files.items():
        target = repo / name
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    sh(repo, "add", "--all")
    sh(repo, "commit", "--quiet", "-m", message)
    return sh(repo, "rev-parse", "HEAD").strip()
