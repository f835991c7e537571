"""The query files a long-lived process answers `locate` from (OpenQueryFiles): held open
across threads, and the newer file answered from once an update changes it in place or a
new one is renamed over it — the replaced one closed, not leaked."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from errands.index import CodeIndex
from errands.index.stored import StoredIndex
from errands.workflow.code_index import OpenQueryFiles, query_file
from tests.index.conftest import Commit


def _open_deleted(path: Path) -> list[str]:
    """This process's descriptors on a replaced (deleted) ``path``."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)) and target.endswith("(deleted)"):
            found.append(target)
    return found


def test_threads_share_a_held_file_and_see_it_updated_and_replaced(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    path = query_file(home, 3)
    served = OpenQueryFiles(home)
    assert served.locate(3, "alpha") is None  # not indexed yet
    first = commit({"a.py": "def alpha():\n    return 1\n"})
    index = CodeIndex.build(repo / ".git", first)
    assert not index.save_query_file(path)  # written whole
    errors: list[BaseException] = []
    stop = threading.Event()

    def ask() -> None:
        # Another thread than the one that opened the file: SQLite refuses that unless the
        # connection was opened for it (and then one thread at a time may use it).
        try:
            while not stop.is_set():
                found = served.locate(3, "alpha beta gamma", limit=5)
                assert found is not None and found[0].path in ("a.py", "b.py", "c.py")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # Updated in place (the same file, a newer generation).
        second = commit({"b.py": "def beta():\n    return 2\n"})
        index.update(repo / ".git", second)
        inode = path.stat().st_ino
        assert index.save_query_file(path)
        assert path.stat().st_ino == inode
        found = served.locate(3, "beta")
        assert found is not None and found[0].path == "b.py"
        # Written whole: a new file renamed over the one the threads hold.
        third = commit({"c.py": "def gamma():\n    return 3\n"})
        CodeIndex.build(repo / ".git", third).save_query_file(path)
        assert path.stat().st_ino != inode
        found = served.locate(3, "gamma")
        assert found is not None and found[0].path == "c.py"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    assert served.held() == 1
    assert _open_deleted(path) == []  # the replaced file was closed
    path.unlink()  # gone: no answer from the file still held
    assert served.locate(3, "gamma") is None
    assert served.held() == 0
    served.close()


def test_only_so_many_projects_are_held_open(repo: Path, commit: Commit, tmp_path: Path) -> None:
    home = tmp_path / "home"
    index = CodeIndex.build(repo / ".git", commit({"a.py": "def alpha():\n    return 1\n"}))
    for project in range(1, 5):
        index.save_query_file(query_file(home, project))
    served = OpenQueryFiles(home, keep=2)
    for project in range(1, 5):
        found = served.locate(project, "alpha")
        assert found is not None and found[0].path == "a.py"
    assert served.held() == 2
    served.close()
    assert served.held() == 0


def test_text_with_lone_surrogates_is_answered_as_the_index_in_memory_answers_it(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    # A command line's undecodable bytes arrive as lone surrogates, which SQLite refuses.
    index = CodeIndex.build(repo / ".git", commit({"calc.py": "def add(a, b):\n    return 1\n"}))
    path = tmp_path / "calc.query"
    index.save_query_file(path)
    text = 'File "calc.py\ud800", line 1\n calc.add\udfff x\ud800y'
    stored = StoredIndex(path)
    try:
        assert stored.locate(text) == index.locate(text)
        assert stored.locate(text)[0].path == "calc.py"
    finally:
        stored.close()
