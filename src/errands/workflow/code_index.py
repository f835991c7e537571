"""Each project's code index on disk: built or brought up to date by the index stage (only the
files that changed since the last build), read by research and by `errands locate`."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from errands.errors import GitError, InvalidInput
from errands.ids import id_in
from errands.index import journal
from errands.index.stored import StoredIndex

if TYPE_CHECKING:
    from errands.git import Mirror
    from errands.index import CodeIndex
    from errands.settings import Settings

Progress = Callable[[int, int], None]


def _code_index() -> type[CodeIndex]:
    # Imported when an index is loaded or built, not by `errands locate` on a query file.
    from errands.index.core import CodeIndex

    return CodeIndex


def index_path(settings: Settings, project_id: int) -> Path:
    return index_file(settings.home, project_id)


def index_file(home: Path, project_id: int) -> Path:
    """Where a project's index is kept in the data directory ``home``."""
    return home / "index" / f"project-{project_id}.idx"


def query_file(home: Path, project_id: int) -> Path:
    """Where the project's query file is (see :mod:`errands.index.stored`): the same index,
    for a fresh process to answer from without loading it whole."""
    return home / "index" / f"project-{project_id}.query"


def open_query_file(home: Path, project_id: int) -> StoredIndex | None:
    """The project's query file, or None when there is none (yet) or it is unreadable (an
    older version wrote it): the caller then loads the index."""
    path = query_file(home, project_id)
    if not path.is_file():
        return None
    try:
        return StoredIndex(path)
    except InvalidInput:
        return None


def _save(index: CodeIndex, settings: Settings, project_id: int) -> None:
    """The query file first, then the index: a crash between the two leaves an index older
    than its query file, which the next refresh finds out of date and writes both again.

    The saved index is then this process's cached copy: the index job's build is what the
    task's research (in the same worker) reads next, without loading it again."""
    index.save_query_file(query_file(settings.home, project_id))
    path = index_path(settings, project_id)
    _remember(path, index.save(path), index, settings.index_cache_mb * _MB)


def _query_file_current(settings: Settings, project_id: int, commit: str) -> bool:
    stored = open_query_file(settings.home, project_id)
    if stored is None:
        return False
    try:
        return stored.commit == commit
    finally:
        stored.close()


# Indexes this process has read, by file and its identity on disk: the server and a worker
# answer `locate` and `search_code` from memory after the first time, and an index saved
# again (a new base renamed over the old, or a record appended to its journal) is read again.
# Least recently used first; together they stay within Settings.index_cache_mb.
_Key = journal.Identity
_loaded: dict[Path, tuple[_Key, CodeIndex]] = {}
_loaded_lock = threading.Lock()
# A loaded index's memory over its saved size (base and journal): 1.7-2.5 measured on the
# benchmark's repositories, and its lookup tables, made by the first query, add more.
_RESIDENT_PER_SAVED = 3
_MB = 1 << 20


def held_bytes(key: _Key) -> int:
    """The memory an index saved as ``key`` (:func:`journal.identity`) is counted as."""
    base_size, journal_size = key[2], key[5]
    return (base_size + journal_size) * _RESIDENT_PER_SAVED


def loaded_paths() -> list[Path]:
    """The indexes this process holds, least recently used first."""
    with _loaded_lock:
        return list(_loaded)


def load_index(settings: Settings, project_id: int) -> CodeIndex | None:
    """The project's saved index, shared by every reader in this process: never change it
    (:func:`refresh_index` works on its own copy)."""
    return load_index_file(
        index_path(settings, project_id), keep_bytes=settings.index_cache_mb * _MB
    )


def load_index_file(path: Path, *, keep_bytes: int = 0) -> CodeIndex | None:
    """:func:`load_index` by the index's file (`errands locate` finds it without Settings);
    what is held stays within ``keep_bytes``, this index aside."""
    key = journal.identity(path)
    if key is None:
        return None
    with _loaded_lock:
        cached = _loaded.pop(path, None)
        if cached is not None and cached[0] == key:
            _loaded[path] = cached  # the most recently used now
            return cached[1]
    try:
        index = _code_index().load(path)
    except InvalidInput:  # written by another version of Errands: the next index rebuilds it
        return None
    _remember(path, key, index, keep_bytes)
    return index


def _remember(path: Path, key: _Key, index: CodeIndex, keep_bytes: int) -> None:
    """Hold ``index`` as the most recently used, letting the least recently used go until
    the rest fit beside it: an index larger than ``keep_bytes`` alone is still held (its
    reader needs it now, and the next reader most likely too)."""
    with _loaded_lock:
        _loaded.pop(path, None)
        room = keep_bytes - held_bytes(key)
        while _loaded and sum(held_bytes(k) for k, _ in _loaded.values()) > room:
            del _loaded[next(iter(_loaded))]
        _loaded[path] = (key, index)


def _load_own(path: Path) -> CodeIndex | None:
    """A copy of the saved index for this caller alone (to update)."""
    try:
        return _code_index().load(path) if path.exists() else None
    except InvalidInput:
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
    path = index_path(settings, project_id)
    key = journal.identity(path)
    with _loaded_lock:
        cached = _loaded.get(path)
    index: CodeIndex | None
    if cached is not None and cached[0] == key:
        if cached[1].commit == commit and _query_file_current(settings, project_id, commit):
            return cached[1], []
        # The saved index, as this process has it: updated as a fork, never the shared
        # copy another thread may be reading (reading it again took seconds on a large
        # repository; the save then appends to the journal of the very files it is).
        index = cached[1].fork()
    else:
        # Read once, and updated in place.
        index = _load_own(path)
    if index is not None and key is not None and index.commit == commit:
        if not _query_file_current(settings, project_id, commit):  # an older Errands' index
            index.save_query_file(query_file(settings.home, project_id))
        _remember(path, key, index, settings.index_cache_mb * _MB)
        return index, []
    changed: list[str] | None = None
    if index is not None:
        try:
            changed = index.update(mirror.path, commit)
        except GitError:  # the indexed commit is gone (a force-push): start over
            index = None
    if index is None:
        index = _code_index().build(mirror.path, commit, progress=progress)
    _save(index, settings, project_id)
    return index, changed


def quick_project_id(url: str, ref: str) -> int | None:
    """The id of the project ``ref`` names (its id or its name, as the store's
    ``get_project`` reads it) straight from the SQLite store at ``url``, without loading the
    store's ORM (importing it costs more than the rest of `errands locate`); None when the
    store is not SQLite, or not there yet, or names no such project — the caller then asks
    the store."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        number = id_in(ref)
        row = None
        if number is not None:
            row = conn.execute("SELECT id FROM projects WHERE id = ?", (number,)).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM projects WHERE name = ?", (ref,)).fetchone()
    except sqlite3.Error:  # an old or locked store: the store itself will say
        return None
    finally:
        conn.close()
    return int(row[0]) if row is not None else None
