"""A process reads a project's saved index once and answers from memory after that, until
the file is replaced by a newer index."""

from __future__ import annotations

from pathlib import Path

from errands.git import Mirror
from errands.index import CodeIndex
from errands.settings import Settings
from errands.workflow.code_index import index_path, load_index, refresh_index
from tests.index.conftest import Commit


def test_a_saved_index_is_read_once_and_again_when_replaced(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    assert load_index(settings, 7) is None
    first = commit({"a.py": "def alpha():\n    return 1\n"})
    CodeIndex.build(repo / ".git", first).save(index_path(settings, 7))
    loaded = load_index(settings, 7)
    assert loaded is not None and loaded.commit == first
    assert load_index(settings, 7) is loaded  # from memory
    second = commit({"b.py": "def beta():\n    return 2\n"})
    CodeIndex.build(repo / ".git", second).save(index_path(settings, 7))
    again = load_index(settings, 7)
    assert again is not None and again is not loaded and again.commit == second
    assert [hit.path for hit in again.locate("beta")][:1] == ["b.py"]


def test_the_index_a_refresh_saved_is_what_the_next_reader_gets_until_replaced(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """The index job builds and saves; research in the same worker then reads that very
    index (not a second load of the file), and a newer file written by another writer
    afterwards is read again rather than shadowed by the remembered one."""
    settings = Settings(home=tmp_path / "home")
    first = commit({"a.py": "def alpha():\n    return 1\n"})
    mirror = Mirror(repo / ".git")
    built, changed = refresh_index(settings, 8, mirror, first)
    assert changed is None  # a cold build
    assert load_index(settings, 8) is built
    again, changed = refresh_index(settings, 8, mirror, first)
    assert again is built and changed == []
    second = commit({"b.py": "def beta():\n    return 2\n"})
    CodeIndex.build(repo / ".git", second).save(index_path(settings, 8))  # another writer
    newer = load_index(settings, 8)
    assert newer is not None and newer is not built and newer.commit == second
