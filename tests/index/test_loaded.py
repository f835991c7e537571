"""A process reads a project's saved index once and answers from memory after that, until
the file is replaced by a newer index."""

from __future__ import annotations

from pathlib import Path

from errands.git import Mirror
from errands.index import CodeIndex
from errands.settings import Settings
from errands.workflow.code_index import (
    held_bytes,
    index_path,
    load_index,
    loaded_paths,
    refresh_index,
)
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


def _sized_index(repo: Path, commit: Commit, name: str) -> str:
    """A commit whose index is about 0.2 MB saved: 0.6 MB as this process counts it."""
    body = "".join(f"def {name}_{i}(value_{i}):\n    return value_{i}\n" for i in range(900))
    others = {path.name: None for path in repo.glob("*.py")}  # this file alone
    return commit({**others, f"{name}.py": body})


def test_the_indexes_held_stay_within_the_cache_least_recently_used_going_first(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """A worker serving many projects must not hold every project's index: what it keeps
    stays within ERRANDS_INDEX_CACHE_MB, the least recently read let go first, and an index
    let go is read again from its file when asked for."""
    settings = Settings(home=tmp_path / "home", index_cache_mb=2)  # room for three, not four
    paths = {}
    for project, name in enumerate(("alpha", "beta", "gamma", "delta"), start=1):
        built = CodeIndex.build(repo / ".git", _sized_index(repo, commit, name))
        paths[project] = index_path(settings, project)
        key = built.save(paths[project])
        assert 0.5 * 2**20 < held_bytes(key) < 2 / 3 * 2**20, held_bytes(key)
    first = load_index(settings, 1)
    load_index(settings, 2)
    load_index(settings, 3)
    assert load_index(settings, 1) is first  # still held, and now the most recently used
    assert loaded_paths()[-3:] == [paths[2], paths[3], paths[1]]
    load_index(settings, 4)
    held = loaded_paths()
    assert paths[2] not in held  # the least recently used went
    assert held[-3:] == [paths[3], paths[1], paths[4]]
    again = load_index(settings, 2)  # read again from its file
    assert again is not None and [hit.path for hit in again.locate("beta_7")][:1] == ["beta.py"]
    assert paths[3] not in loaded_paths()


def test_an_index_larger_than_the_cache_is_still_held_alone(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", index_cache_mb=0)
    for project, name in ((11, "alpha"), (12, "beta")):
        CodeIndex.build(repo / ".git", _sized_index(repo, commit, name)).save(
            index_path(settings, project)
        )
    first = load_index(settings, 11)
    assert load_index(settings, 11) is first
    load_index(settings, 12)
    assert index_path(settings, 11) not in loaded_paths()
    assert loaded_paths()[-1] == index_path(settings, 12)
