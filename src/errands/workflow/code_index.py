"""Each project's code index on disk: built or brought up to date by the index stage (only the
files that changed since the last build), read by research and by `errands locate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from errands.errors import GitError, InvalidInput
from errands.git import Mirror
from errands.index import CodeIndex
from errands.settings import Settings

Progress = Callable[[int, int], None]


def index_path(settings: Settings, project_id: int) -> Path:
    return settings.home / "index" / f"project-{project_id}.idx"


def load_index(settings: Settings, project_id: int) -> CodeIndex | None:
    path = index_path(settings, project_id)
    if not path.exists():
        return None
    try:
        return CodeIndex.load(path)
    except InvalidInput:  # written by another version of Errands: the next index rebuilds it
        return None


def refresh_index(
    settings: Settings,
    project_id: int,
    mirror: Mirror,
    commit: str,
    *,
    progress: Progress | None = None,
) -> tuple[CodeIndex, list[str] | None]:
    """(index at ``commit``, the paths re-indexed — None for a cold build)."""
    index = load_index(settings, project_id)
    if index is not None and index.commit == commit:
        return index, []
    changed: list[str] | None = None
    if index is not None:
        try:
            changed = index.update(mirror.path, commit)
        except GitError:  # the indexed commit is gone (a force-push): start over
            index = None
    if index is None:
        index = CodeIndex.build(mirror.path, commit, progress=progress)
    path = index_path(settings, project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    index.save(path)
    return index, changed
