"""A process reads a project's saved index once and answers from memory after that, until
the file is replaced by a newer index."""

from __future__ import annotations

from pathlib import Path

from errands.index import CodeIndex
from errands.settings import Settings
from errands.workflow.code_index import index_path, load_index
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
