"""Each project's code index on disk: built or brought up to date by the index stage (only the
files that changed since the last build), read by research and by `errands locate`."""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from errands.errors import GitError, InvalidInput
from errands.ids import id_in
from errands.index import journal
from errands.index.stored import StoredIndex

if TYPE_CHECKING:
    from errands.git import Mirror
    from errands.index import CodeIndex, Located
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
    return _open_query_file(query_file(home, project_id))


def _open_query_file(path: Path, *, any_thread: bool = False) -> StoredIndex | None:
    if not path.is_file():
        return None
    try:
        return StoredIndex(path, any_thread=any_thread)
    except InvalidInput:
        return None


class _Open:
    """One project's query file held open, used by one thread at a time."""

    def __init__(self, key: tuple[int, int], index: StoredIndex) -> None:
        self.key = key  # the file's (device, inode) when it was opened
        self.lock = threading.Lock()
        self.index: StoredIndex | None = index

    def close(self) -> None:
        with self.lock:  # after the locate under way, if any
            if self.index is not None:
                self.index.close()
                self.index = None


class OpenQueryFiles:
    """The query files a long-lived process (the server, the local MCP server) answers
    `locate` from: each project's opened on its first locate and kept open, so the next one
    reads only its query's rows (no imports, no reading of the documents' lengths). Memory
    is a few MB a project (the lengths, SQLite's page cache), not the whole index in memory
    (hundreds of MB on a large repository), which :func:`load_index` would keep.

    An index updated in place is seen by the next locate (the file's generation, checked in
    its read transaction); one written whole is a new file renamed over the old, found by its
    inode: the old is closed once the locate reading it ends, and the new one opened. A
    connection serves one locate at a time (its lock); locates of different projects run
    side by side."""

    def __init__(self, home: Path, *, keep: int = 32) -> None:
        self._home = home
        self._keep = keep  # projects held open at most, the least recently asked let go
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._lock = threading.Lock()

    def locate(self, project_id: int, text: str, *, limit: int = 10) -> list[Located] | None:
        """The ranking, or None when the project has no readable query file (not indexed
        yet, or by an older version: the next index writes it)."""
        while True:
            held = self._held(project_id)
            if held is None:
                return None
            with held.lock:
                if held.index is not None:
                    return held.index.locate(text, limit=limit)
            # Closed while this thread waited for it (replaced by a newer file): again.

    def _held(self, project_id: int) -> _Open | None:
        path = query_file(self._home, project_id)
        try:
            st = path.stat()
        except OSError:
            self._let_go([self._pop(project_id)])
            return None
        key = (st.st_dev, st.st_ino)
        with self._lock:
            found = self._open.get(project_id)
            if found is not None and found.key == key:
                self._open.move_to_end(project_id)
                return found
        # Opened outside the lock: other projects' locates need not wait for it. The file
        # may be replaced again meanwhile; the next locate then sees another inode.
        index = _open_query_file(path, any_thread=True)
        if index is None:
            return None
        fresh = _Open(key, index)
        with self._lock:
            gone = [self._open.pop(project_id, None)]
            self._open[project_id] = fresh
            while len(self._open) > self._keep:
                gone.append(self._open.popitem(last=False)[1])
        self._let_go(gone)
        return fresh

    def _pop(self, project_id: int) -> _Open | None:
        with self._lock:
            return self._open.pop(project_id, None)

    @staticmethod
    def _let_go(held: list[_Open | None]) -> None:
        for one in held:
            if one is not None:
                one.close()

    def held(self) -> int:
        """How many query files are open now."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        with self._lock:
            gone: list[_Open | None] = list(self._open.values())
            self._open.clear()
        self._let_go(gone)


def locate_once(home: Path, project_id: int, text: str, *, limit: int = 10) -> list[Located] | None:
    """A locate by a process that asks once (`errands locate`): from the query file, which
    reads only what this query needs; from the whole index only when there is none. None
    when the project has no index."""
    stored = open_query_file(home, project_id)
    if stored is not None:
        try:
            return stored.locate(text, limit=limit)
        finally:
            stored.close()
    index = load_index_file(index_file(home, project_id))
    return None if index is None else index.locate(text, limit=limit)


def _save(index: CodeIndex, settings: Settings, project_id: int) -> None:
    """The query file first, then the index: a crash between the two leaves an index older
    than its query file, which the next refresh finds out of date and writes both again.

    The saved index is then this process's cached copy: the index job's build is what the
    task's research (in the same worker) reads next, without loading it again."""
    index.save_query_file(query_file(settings.home, project_id))
    path = index_path(settings, project_id)
    _remember(path, index.save(path), index, _keep_bytes(settings))


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
    return journal.saved_size(key) * _RESIDENT_PER_SAVED


def _keep_bytes(settings: Settings) -> int:
    return settings.index_cache_mb * _MB


def loaded_paths() -> list[Path]:
    """The indexes this process holds, least recently used first."""
    with _loaded_lock:
        return list(_loaded)


def load_index(settings: Settings, project_id: int) -> CodeIndex | None:
    """The project's saved index, shared by every reader in this process: never change it
    (:func:`refresh_index` works on its own copy)."""
    return load_index_file(index_path(settings, project_id), keep_bytes=_keep_bytes(settings))


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
        _remember(path, key, index, _keep_bytes(settings))
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
