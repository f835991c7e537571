"""The index as a query file: a SQLite database a fresh process opens and reads only what a
query needs (a few rows per name and term), instead of unpickling the whole index — which on
a 50,000-file repository means 700,000 symbols and seconds before the first answer.

Written whole after a cold build (:func:`write`), next to the pickled index that updates
start from; an update then changes only the rows of the files it re-indexed, and the history
columns that moved (:func:`update`), in one transaction. Files and symbols keep their ids;
each BM25 index's documents are numbered as its files (or symbols) are, its postings a *base*
written whole (two blobs, read a slice per term) plus the postings of documents added since
(rows) and the base documents removed since. :class:`StoredIndex` answers what the ranker asks
(:mod:`errands.index.locate`) with the same numbers as the index it was written from, and
:meth:`StoredIndex.dump` gives its contents by path and term, whatever the ids: an updated
query file dumps as a fresh build's does.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from errands.errors import InvalidInput
from errands.index.bm25 import BM25, Floats, add_term, best_of, idf, length_norm
from errands.index.keys import Ranks, chunk_order
from errands.index.locate import locate
from errands.index.model import Located, Symbol
from errands.index.tables import TABLES, path_keys

if TYPE_CHECKING:
    from errands.index.analyse import FileInfo

# 4: a file's newest commit in the history window, not its age (which every new commit
# changes); 3: updated in place (ids kept, added and removed documents beside the base)
FORMAT = 4
FILES, CHUNKS = 0, 1  # the two BM25 indexes: whole files, symbol chunks

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, blob TEXT NOT NULL,
    churn INTEGER NOT NULL, last TEXT, first_symbol INTEGER NOT NULL,
    symbols INTEGER NOT NULL
);
CREATE TABLE symbols (
    id INTEGER PRIMARY KEY, file INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, parent TEXT
);
CREATE TABLE lookup (tbl INTEGER NOT NULL, key TEXT NOT NULL, file INTEGER NOT NULL);
CREATE TABLE terms (
    bm INTEGER NOT NULL, term TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    PRIMARY KEY (bm, term)
) WITHOUT ROWID;
CREATE TABLE postings (
    bm INTEGER PRIMARY KEY, docs BLOB NOT NULL, tfs BLOB NOT NULL, lengths BLOB NOT NULL
);
CREATE TABLE added (
    bm INTEGER NOT NULL, doc INTEGER NOT NULL, length INTEGER NOT NULL, PRIMARY KEY (bm, doc)
) WITHOUT ROWID;
CREATE TABLE extra (
    bm INTEGER NOT NULL, term TEXT NOT NULL, doc INTEGER NOT NULL, tf INTEGER NOT NULL,
    PRIMARY KEY (bm, term, doc)
) WITHOUT ROWID;
CREATE TABLE dead (bm INTEGER NOT NULL, doc INTEGER NOT NULL, PRIMARY KEY (bm, doc)) WITHOUT ROWID;
"""
# The base's postings are two blobs per BM25 index (document ids, term frequencies, in the
# in-memory index's integer types: `docs_type0` … in meta), term t's at [lo:hi] (a row per
# term took most of the time writing the file), and the base documents' lengths (int32).
# Indexes made after the rows are in: one sort each, not a B-tree insert per row.
_INDEXES = """
CREATE INDEX symbols_name ON symbols (name, id);
CREATE INDEX lookup_key ON lookup (tbl, key, file);
CREATE INDEX extra_doc ON extra (bm, doc);
"""
# Added and removed documents past this share of the base (or this many): the update is
# a whole write instead, so queries never read mostly rows.
_FRAGMENTED = 0.25
_FRAGMENTED_MIN = 64


@dataclass(frozen=True, slots=True)
class Contents:
    """What a query file holds: an index's commit, files, BM25 indexes and history."""

    commit: str
    files: Mapping[str, FileInfo]
    file_bm25: BM25
    sym_bm25: BM25
    churn: Mapping[str, int]
    last: Mapping[str, str]  # the newest commit of the window that changed each file
    window: Sequence[str]  # the history window's commits, newest first (age 0)


def write(path: Path, contents: Contents) -> None:
    """Write the query file whole and atomically (a reader sees the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        # SQLite writes into the empty file mkstemp made: the owner's alone (0600), as the
        # pickled index is — it names a private repository's files and symbols.
        with closing(sqlite3.connect(tmp)) as conn:
            _fill(conn, contents)
        _replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` while holding the old file's write lock: no update is
    half-way through it then, so no journal of the old file is left for the new one."""
    if not path.exists():
        tmp.replace(path)
        return
    try:
        old = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.Error:
        tmp.replace(path)
        return
    with closing(old):
        # Not a database (an older or broken file): nothing to wait for.
        with suppress(sqlite3.Error):
            old.execute("BEGIN EXCLUSIVE")
        tmp.replace(path)


def _fill(conn: sqlite3.Connection, contents: Contents) -> None:
    files = contents.files
    # Nothing to recover if this process dies mid-write: the file is not in place yet.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(_SCHEMA)
    paths = sorted(files)
    counts = [files[p].symbol_count for p in paths]
    # Rows are generated as SQLite takes them, never held in lists: on a large repository
    # they would be hundreds of megabytes of tuples at once.
    conn.executemany(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
        _file_rows(paths, counts, contents),
    )
    conn.executemany(
        "INSERT INTO symbols VALUES (?, ?, ?, ?, ?, ?, ?)",
        _symbol_rows(enumerate(paths), files, 0),
    )
    conn.executemany("INSERT INTO lookup VALUES (?, ?, ?)", _lookup_rows(enumerate(paths)))
    meta: dict[str, object] = {
        "format": FORMAT, "commit": contents.commit, "files": len(paths), "generation": 0,
        "window": "\n".join(contents.window),
    }  # fmt: skip
    chunk_keys = _ChunkKeys(paths, counts)
    for bm, (bm25, keys) in enumerate(
        ((contents.file_bm25, paths), (contents.sym_bm25, chunk_keys))
    ):
        exported = bm25.export(keys)
        # Read as Python ints one by one: as a list, hundreds of thousands of them at once.
        ptr = array("q", exported.ptr.tobytes())
        conn.executemany(
            "INSERT INTO terms VALUES (?, ?, ?, ?)",
            zip(repeat(bm), exported.terms, ptr, islice(ptr, 1, None)),
        )
        del ptr
        columns = {"docs": exported.docs, "tfs": exported.tfs, "lengths": exported.lengths}
        # Room made first and filled a slice at a time: a blob bound whole is copied by
        # SQLite, and again into its record, each tens of MB on a large repository.
        conn.execute(
            "INSERT INTO postings VALUES (?, zeroblob(?), zeroblob(?), zeroblob(?))",
            (bm, *(values.nbytes for values in columns.values())),
        )
        for column, values in columns.items():
            data = np.ascontiguousarray(values).view(np.uint8).data
            with conn.blobopen("postings", column, bm) as blob:
                for lo in range(0, len(data), 1 << 20):
                    blob.write(data[lo : lo + (1 << 20)])
        meta[f"docs_type{bm}"] = exported.docs.dtype.str
        meta[f"tfs_type{bm}"] = exported.tfs.dtype.str
        meta[f"base{bm}"] = meta[f"next{bm}"] = meta[f"live{bm}"] = len(exported.lengths)
        meta[f"total_len{bm}"] = int(exported.lengths.sum(dtype=np.int64))
    conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    conn.executescript(_INDEXES)
    conn.commit()


class _ChunkKeys(Sequence[str]):
    """The symbol chunks' keys (``path\0i``) in path order, made as they are read."""

    def __init__(self, paths: list[str], counts: list[int]) -> None:
        self._paths, self._counts = paths, counts
        self._len = sum(counts)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        for p, n in zip(self._paths, self._counts, strict=True):
            for i in range(n):
                yield f"{p}\0{i}"

    def __getitem__(self, i: Any) -> Any:
        raise NotImplementedError  # only iterated


def _file_rows(
    paths: Iterable[str], counts: Iterable[int], contents: Contents
) -> Iterator[tuple[object, ...]]:
    first = 0
    for fid, (p, n) in enumerate(zip(paths, counts, strict=True)):
        churn, last = _history(contents, p)
        yield (fid, p, contents.files[p].blob, churn, last, first, n)
        first += n


def _history(contents: Contents, path: str) -> tuple[int, str | None]:
    """A file's history columns: its churn, and the newest commit of the window that
    changed it (kept rather than its age, which every commit added to the window changes:
    an update would rewrite every file's row)."""
    return contents.churn.get(path, 0), contents.last.get(path)


def _symbol_rows(
    numbered: Iterable[tuple[int, str]], files: Mapping[str, FileInfo], first: int
) -> Iterator[tuple[object, ...]]:
    # From the files' symbol columns: no symbol object made for a row.
    sid = first
    for fid, p in numbered:
        strings, line_bytes = files[p].columns()
        lines = array("i")
        lines.frombytes(line_bytes)
        for j in range(len(lines) // 2):
            name, kind, parent = strings[3 * j : 3 * j + 3]
            yield (sid, fid, name, kind, lines[2 * j], lines[2 * j + 1], parent)
            sid += 1


def _lookup_rows(numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str, int]]:
    table = {name: i for i, name in enumerate(TABLES)}
    for fid, p in numbered:
        for name, key in path_keys(p):
            yield (table[name], key, fid)


def update(
    path: Path,
    contents: Contents,
    *,
    base: str,
    changed: Iterable[str],
    history: Iterable[str] | None = None,
) -> bool:
    """Bring the query file from the index at ``base`` to ``contents``, which differ in
    the files ``changed`` and in the history signals of the files ``history`` (None: of any
    file), changing only their rows, in one
    transaction. False, and nothing changed, when the file is not at ``base`` (another
    writer moved it, or there is none) or so many documents changed that a whole
    :func:`write` is due."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.Error:
        return False
    with closing(conn):
        try:
            conn.execute("BEGIN IMMEDIATE")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error:
            return False
        if meta.get("format") != FORMAT or meta.get("commit") != base:
            conn.execute("ROLLBACK")
            return False
        try:
            moved = None if history is None else set(history)
            done = _apply(conn, meta, contents, sorted(set(changed)), moved)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT" if done else "ROLLBACK")
        return done


def _apply(
    conn: sqlite3.Connection,
    meta: dict[str, Any],
    contents: Contents,
    changed: list[str],
    history: set[str] | None,
) -> bool:
    files = contents.files
    ex = conn.execute
    table = {name: i for i, name in enumerate(TABLES)}
    bms = (contents.file_bm25, contents.sym_bm25)
    for p in changed:  # out with the old rows
        row = ex("SELECT id, first_symbol, symbols FROM files WHERE path = ?", (p,)).fetchone()
        if row is None:
            continue
        fid, first, n = row
        ex("DELETE FROM files WHERE id = ?", (fid,))
        ex("DELETE FROM symbols WHERE id >= ? AND id < ?", (first, first + n))
        conn.executemany(
            "DELETE FROM lookup WHERE tbl = ? AND key = ? AND file = ?",
            ((table[name], key, fid) for name, key in path_keys(p)),
        )
        for bm, docs in ((0, [fid]), (1, range(first, first + n))):
            for doc in docs:
                _remove_doc(conn, meta, bm, doc)
    counts: dict[int, int] = {}
    for p in changed:  # in with the new
        info = files.get(p)
        if info is None:
            continue
        fid, first, n = meta["next0"], meta["next1"], info.symbol_count
        row = (fid, p, info.blob, *_history(contents, p), first, n)
        ex("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        conn.executemany(
            "INSERT INTO symbols VALUES (?, ?, ?, ?, ?, ?, ?)",
            _symbol_rows([(fid, p)], files, first),
        )
        conn.executemany("INSERT INTO lookup VALUES (?, ?, ?)", _lookup_rows([(fid, p)]))
        _add_doc(conn, 0, fid, bms[0].document(p))
        for i in range(n):
            _add_doc(conn, 1, first + i, bms[1].document(f"{p}\0{i}"))
        meta["next0"], meta["next1"] = fid + 1, first + n
        counts[fid] = n
    # History moved for files nobody changed: only the rows whose figures differ.
    if history is None:  # every file the window touched, before or now
        was = {
            p: (c, last) for p, c, last in ex("SELECT path, churn, last FROM files WHERE churn > 0")
        }
        touched = contents.churn.keys() | contents.last.keys()
    else:  # only these: the window's moves touched no other
        touched = history - set(changed)
        was = {}
        listed = sorted(touched)
        for lo in range(0, len(listed), 500):
            part = listed[lo : lo + 500]
            was.update(
                (p, (c, last))
                for p, c, last in ex(
                    "SELECT path, churn, last FROM files WHERE churn > 0 AND path IN "
                    f"({','.join('?' * len(part))})",
                    part,
                )
            )
    now = {p: _history(contents, p) for p in touched if p in files}
    moved = [p for p, cols in now.items() if was.pop(p, (0, None)) != cols]
    moved += was  # left the window altogether
    conn.executemany(
        "UPDATE files SET churn = ?, last = ? WHERE path = ?",
        ((*now.get(p, (0, None)), p) for p in sorted(moved)),
    )
    for bm, bm25 in enumerate(bms):
        # The totals are the index's: they were taken from its documents' lengths when the
        # file was written whole, and follow them since. (Worked out here from the removed
        # documents' lengths instead, they cost a read of the lengths' blob each, which
        # SQLite walks page by page to the offset: most of a one-file update on a large
        # repository.)
        meta[f"live{bm}"], meta[f"total_len{bm}"] = bm25.live, bm25.total_len
        stale = meta[f"next{bm}"] - meta[f"live{bm}"]  # removed, or added since the base
        added = meta[f"next{bm}"] - meta[f"base{bm}"]
        if stale + added > max(_FRAGMENTED * meta[f"base{bm}"], _FRAGMENTED_MIN):
            return False
    meta["commit"] = contents.commit
    meta["files"] = len(files)
    meta["window"] = "\n".join(contents.window)
    meta["generation"] += 1
    conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in meta.items()])
    return True


def _remove_doc(conn: sqlite3.Connection, meta: dict[str, Any], bm: int, doc: int) -> None:
    if doc < meta[f"base{bm}"]:
        conn.execute("INSERT INTO dead VALUES (?, ?)", (bm, doc))
    else:
        conn.execute("DELETE FROM added WHERE bm = ? AND doc = ?", (bm, doc))
        conn.execute("DELETE FROM extra WHERE bm = ? AND doc = ?", (bm, doc))


def _add_doc(conn: sqlite3.Connection, bm: int, doc: int, counts: dict[str, int]) -> None:
    conn.execute("INSERT INTO added VALUES (?, ?, ?)", (bm, doc, sum(counts.values())))
    conn.executemany(
        "INSERT INTO extra VALUES (?, ?, ?, ?)", ((bm, t, doc, tf) for t, tf in counts.items())
    )


class StoredIndex:
    """A query file opened for reading: what :func:`errands.index.locate.locate` asks of
    an index, read row by row as it asks."""

    def __init__(self, path: Path, *, any_thread: bool = False) -> None:
        """``any_thread``: the connection may be used from threads other than this one
        (the server's thread pool), by one thread at a time — the caller's lock's job."""
        try:
            # Read-only; an update may change the file meanwhile, so each locate reads
            # in one transaction (one version of the file) and checks the version first.
            self._conn = sqlite3.connect(
                f"file:{path}?mode=ro",
                uri=True,
                timeout=30,
                isolation_level=None,
                check_same_thread=not any_thread,
            )
        except sqlite3.Error as exc:
            raise InvalidInput(f"cannot read code index {path}: {exc}") from exc
        self._chunk_ranks: Ranks | None = None  # see chunk_ranks
        try:
            self._conn.execute("BEGIN")
            meta = self._meta()
            if meta.get("format") != FORMAT:
                raise InvalidInput(f"code index {path} has an old or unknown format; rebuild it")
            self._read(meta)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.close()
            raise InvalidInput(f"cannot read code index {path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise
        self._tables = _Tables(self)

    def _meta(self) -> dict[str, Any]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _read(self, meta: dict[str, Any]) -> None:
        self._generation = int(meta["generation"])
        self.commit = str(meta["commit"])
        self.files = int(meta["files"])
        self._base_files = int(meta["base0"])
        self._window = {sha: age for age, sha in enumerate(str(meta["window"]).split("\n"))}
        self.file_bm25 = StoredBM25(self, FILES, meta)
        self.sym_bm25 = StoredBM25(self, CHUNKS, meta)
        self._history: dict[str, tuple[int, int | None]] | None = None

    def close(self) -> None:
        self._conn.close()

    def chunk_ranks(self) -> Ranks:
        """The base chunks' integers in key order (see ``StoredBM25._rank_of``), made when
        ties first call for them and kept while the file is open: an update in place never
        renumbers or renames a base document (it marks it removed, and adds others past
        the base), and a file written whole is another file to this connection."""
        if self._chunk_ranks is None:
            # The live base files' first chunks, in id order (a live chunk's file is live:
            # the chunks of a file removed since are never asked for, whatever they get).
            firsts = np.array(
                [first for (first,) in self.rows(
                    "SELECT first_symbol FROM files WHERE id < ? ORDER BY id", self._base_files
                )],
                dtype=np.int64,
            )  # fmt: skip
            ids = np.arange(self.sym_bm25.base_size, dtype=np.int64)
            if not len(firsts):  # every base chunk removed: none is asked for
                return np.zeros(len(ids), dtype=np.int32)
            # (Clipped at 0: removed chunks before the first live file's.)
            files = np.maximum(np.searchsorted(firsts, ids, side="right") - 1, 0)
            self._chunk_ranks = chunk_order(files, np.maximum(ids - firsts[files], 0))
        return self._chunk_ranks

    def locate(self, text: str, *, limit: int = 10) -> list[Located]:
        """As :meth:`CodeIndex.locate <errands.index.core.CodeIndex.locate>` (the same
        answer for the index this file was written from)."""
        with self.snapshot():
            return locate(self, _encodable(text), limit=limit)

    def snapshot(self) -> _Snapshot:
        """A read transaction: what is read inside it is of one version of the file (an
        update waits for it to end), the one :attr:`commit` names."""
        return _Snapshot(self)

    def _begin(self) -> None:
        self._conn.execute("BEGIN")
        try:
            meta = self._meta()
            if int(meta["generation"]) != self._generation:  # updated since: read afresh
                self._read(meta)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _end(self) -> None:
        self._conn.execute("COMMIT")

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = self._conn.execute(sql, args).fetchall()
        return found

    def blob(self, bm: int, column: str) -> sqlite3.Blob:
        """One of the base postings' blobs, to read slices of."""
        return self._conn.blobopen("postings", column, bm, readonly=True)

    def derived(self) -> _Tables:
        return self._tables

    def symbols(self, path: str) -> tuple[Symbol, ...]:
        return tuple(
            _symbol(row)
            for row in self.rows(
                "SELECT s.name, s.kind, f.path, s.start_line, s.end_line, s.parent "
                "FROM files f JOIN symbols s ON s.file = f.id WHERE f.path = ? ORDER BY s.id",
                path,
            )
        )

    def symbols_named(self, path: str, name: str) -> list[Symbol]:
        return [
            _symbol(row)
            for row in self.rows(
                "SELECT s.name, s.kind, f.path, s.start_line, s.end_line, s.parent "
                "FROM files f JOIN symbols s ON s.file = f.id WHERE f.path = ? AND s.name = ? "
                "ORDER BY s.id",
                path,
                name,
            )
        ]

    def symbol_at(self, key: str) -> Symbol | None:
        path, _, idx = key.partition("\0")
        found = self.rows(
            "SELECT s.name, s.kind, f.path, s.start_line, s.end_line, s.parent "
            "FROM files f JOIN symbols s ON s.id = f.first_symbol + ? "
            "WHERE f.path = ? AND ? < f.symbols",
            int(idx),
            path,
            int(idx),
        )
        return _symbol(found[0]) if found else None

    def churn(self, path: str) -> int:
        return self._signals(path)[0]

    def age(self, path: str) -> int | None:
        return self._signals(path)[1]

    def _signals(self, path: str) -> tuple[int, int | None]:
        if self._history is None:
            # One read of the files the window touched: a query asks of many files.
            self._history = {
                p: (churn, self._window.get(last))
                for p, churn, last in self.rows(
                    "SELECT path, churn, last FROM files WHERE churn > 0"
                )
            }
        return self._history.get(path, (0, None))

    def dump(self) -> dict[str, object]:
        """Everything in the file by path and term, not by id: equal for two files of the
        same index, whichever updates led to either (for tests and the benchmark; it reads
        every row)."""
        with self.snapshot():
            files: dict[str, object] = {}
            path_of: dict[int, str] = {}
            key_of: dict[int, str] = {}
            for fid, p, blob, first, n in self.rows(
                "SELECT id, path, blob, first_symbol, symbols FROM files"
            ):
                path_of[fid] = p
                key_of.update((first + i, f"{p}\0{i}") for i in range(n))
                files[p] = (blob, self.churn(p), self.age(p), self.symbols(p))
            lookup = sorted(
                (tbl, key, path_of[fid])
                for tbl, key, fid in self.rows("SELECT tbl, key, file FROM lookup")
            )
            out: dict[str, object] = {
                "commit": self.commit,
                "files": dict(sorted(files.items())),
                "lookup": lookup,
            }
            for bm, keys, bm25 in ((FILES, path_of, self.file_bm25), (CHUNKS, key_of,
                                                                       self.sym_bm25)):  # fmt: skip
                out[f"bm25_{bm}"] = bm25.dump(keys)
            return out


def _encodable(text: str) -> str:
    """``text`` with its lone surrogates (a command line's undecodable bytes, JSON's
    ``\\ud800``) as U+FFFD: SQLite cannot take them as parameters, and no key in the file
    holds either (nor is either a word character), so the answer is the in-memory index's."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return re.sub("[\ud800-\udfff]", "\ufffd", text)
    return text


class _Snapshot:
    def __init__(self, index: StoredIndex) -> None:
        self._index = index

    def __enter__(self) -> None:
        self._index._begin()

    def __exit__(self, *exc: object) -> None:
        self._index._end()


def _symbol(row: tuple[Any, ...]) -> Symbol:
    return Symbol(*row[:6])


class _Lookup:
    """One of the ranker's lookup tables (see :class:`~errands.index.tables.Derived`):
    a key's files in path order."""

    def __init__(self, index: StoredIndex, table: int) -> None:
        self._index, self._table = index, table

    def get(self, key: str) -> list[str] | None:
        found = self._index.rows(
            "SELECT f.path FROM lookup l JOIN files f ON f.id = l.file "
            "WHERE l.tbl = ? AND l.key = ? ORDER BY f.path",
            self._table,
            key,
        )
        return [str(row[0]) for row in found] or None

    def count(self, key: str) -> int:
        found = self._index.rows(
            "SELECT COUNT(*) FROM lookup WHERE tbl = ? AND key = ?", self._table, key
        )
        return int(found[0][0])


class _Defs:
    """Name → the files defining it, in path order."""

    def __init__(self, index: StoredIndex) -> None:
        self._index = index

    def get(self, name: str) -> list[str] | None:
        found = self._index.rows(
            "SELECT DISTINCT f.path FROM symbols s JOIN files f ON f.id = s.file "
            "WHERE s.name = ? ORDER BY f.path",
            name,
        )
        return [str(row[0]) for row in found] or None

    def most(self, name: str, most: int) -> list[str] | None:
        """As :meth:`get`, but None when more than ``most`` files define ``name``: only as
        many of its files read as tell (all of a name's files, from thousands of rows, took
        ~2 ms where this takes ~0.05 ms)."""
        found = self._index.rows(
            "SELECT f.path FROM files f WHERE f.id IN "
            "(SELECT DISTINCT file FROM symbols WHERE name = ? LIMIT ?) ORDER BY f.path",
            name,
            most + 1,
        )
        return [str(row[0]) for row in found] if 0 < len(found) <= most else None


class _Tables:
    def __init__(self, index: StoredIndex) -> None:
        self.modules = _Lookup(index, TABLES.index("modules"))
        self.basenames = _Lookup(index, TABLES.index("basenames"))
        self.path_tokens = _Lookup(index, TABLES.index("path_tokens"))
        self.defs = _Defs(index)

    def defined_in(self, name: str, most: int) -> list[str] | None:
        """As :meth:`Derived.defined_in <errands.index.tables.Derived.defined_in>`."""
        return self.defs.most(name, most)

    def named_by(self, word: str) -> int:
        """As :meth:`Derived.named_by <errands.index.tables.Derived.named_by>` (counted in
        the lookup table's index, no file read)."""
        return self.path_tokens.count(word)


class StoredBM25:
    """One BM25 index of a query file, scoring as :class:`BM25` does (same numbers)."""

    def __init__(self, index: StoredIndex, bm: int, meta: Mapping[str, Any]) -> None:
        self._index, self._bm = index, bm
        self._docs_type = np.dtype(meta[f"docs_type{bm}"])
        self._tfs_type = np.dtype(meta[f"tfs_type{bm}"])
        self.live = int(meta[f"live{bm}"])
        self._total_len = int(meta[f"total_len{bm}"])
        base, size = int(meta[f"base{bm}"]), int(meta[f"next{bm}"])
        self.base_size = base  # documents written whole (see StoredIndex.chunk_ranks)
        with index.blob(bm, "lengths") as blob:
            lengths = np.zeros(size, dtype=np.int32)
            lengths[:base] = np.frombuffer(blob.read(), dtype=np.int32)
        # Documents are alive in the base unless removed since, and past it when added since.
        self._alive: npt.NDArray[np.bool_] | None = None
        self._updated = size > base or bool(
            index.rows("SELECT 1 FROM dead WHERE bm = ? LIMIT 1", bm)
        )
        if self._updated:
            alive = np.zeros(size, dtype=np.bool_)
            alive[:base] = True
            dead = [d for (d,) in index.rows("SELECT doc FROM dead WHERE bm = ?", bm)]
            alive[dead] = False
            for doc, length in index.rows("SELECT doc, length FROM added WHERE bm = ?", bm):
                alive[doc] = True
                lengths[doc] = length
            self._alive = alive
        self._lengths = lengths
        self._norm: Floats | None = None  # made by the first query (as BM25's)

    def scores(self, query: Mapping[str, float]) -> Floats:
        out = np.zeros(len(self._lengths), dtype=np.float64)
        if not self.live or not query:
            return out
        norm = self._norm
        if norm is None:
            lengths = self._lengths.astype(np.float64)
            norm = self._norm = length_norm(lengths, self._total_len, self.live)
        terms = list(query)
        found = {term: (lo, hi) for term, lo, hi in self._rows("term, lo, hi", "terms", terms)}
        added: dict[str, tuple[list[int], list[int]]] = {}
        if self._updated:
            for term, doc, tf in self._rows("term, doc, tf", "extra", terms):
                doc_list, tf_list = added.setdefault(term, ([], []))
                doc_list.append(doc)
                tf_list.append(tf)
        alive = self._alive
        index = self._index
        with index.blob(self._bm, "docs") as docs_blob, index.blob(self._bm, "tfs") as tfs_blob:
            for term, weight in query.items():  # in the query's order, as BM25 adds them up
                parts: list[tuple[npt.NDArray[Any], Floats]] = []
                df = 0
                if term in found:
                    lo, hi = found[term]
                    docs = _slice(docs_blob, self._docs_type, lo, hi)
                    tfs = _slice(tfs_blob, self._tfs_type, lo, hi).astype(np.float64)
                    parts.append((docs, tfs))
                    df += int(alive[docs].sum()) if alive is not None else hi - lo
                if term in added:
                    more_docs, more_tfs = added[term]
                    parts.append((np.array(more_docs), np.array(more_tfs, dtype=np.float64)))
                    df += len(more_docs)
                if not df:
                    continue
                scaled = weight * idf(self.live, df)
                for docs, tfs in parts:  # the base, then the added: as BM25's parts
                    add_term(out, norm, scaled, docs, tfs)
        if alive is not None:
            out[~alive] = 0.0  # a removed document keeps its base postings
        return out

    def _rows(self, columns: str, table: str, terms: list[str]) -> Iterator[tuple[Any, ...]]:
        for lo in range(0, len(terms), 500):  # SQLite's limit on parameters, with room
            part = terms[lo : lo + 500]
            yield from self._index.rows(
                f"SELECT {columns} FROM {table} WHERE bm = ? AND term IN "
                f"({','.join('?' * len(part))})",
                self._bm,
                *part,
            )

    def best(self, scores: Floats, limit: int) -> list[tuple[str, float]]:
        return best_of(scores, limit, self._keys, self._rank_of, self.base_size)

    def _rank_of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.integer[Any]]:
        """As :meth:`Keys.rank_of <errands.index.keys.Keys.rank_of>`, for base documents.
        Written whole, the file numbers its files in path order and each file's chunks
        after the last's: a base file's id is its order already, and a chunk's is its
        file's and ``i``'s (:func:`~errands.index.keys.chunk_order`, as the index's)."""
        if self._bm == FILES:
            return ids
        return self._index.chunk_ranks()[ids]

    def _keys(self, ids: list[int]) -> list[str | None]:
        keys: dict[int, str] = {}
        for lo in range(0, len(ids), 500):
            part = ids[lo : lo + 500]
            marks = ",".join("?" * len(part))
            if self._bm == FILES:
                for doc, path in self._index.rows(
                    f"SELECT id, path FROM files WHERE id IN ({marks})", *part
                ):
                    keys[doc] = path
            else:
                for doc, path, i in self._index.rows(
                    "SELECT s.id, f.path, s.id - f.first_symbol FROM symbols s "
                    f"JOIN files f ON f.id = s.file WHERE s.id IN ({marks})",
                    *part,
                ):
                    keys[doc] = f"{path}\0{i}"
        return [keys.get(i) for i in ids]

    def dump(self, key_of: Mapping[int, str]) -> dict[str, object]:
        """Postings (term → key → count), lengths by key and the totals, live documents
        only (see :meth:`StoredIndex.dump`)."""
        alive = self._alive
        postings: dict[str, dict[str, int]] = {}
        index = self._index
        with index.blob(self._bm, "docs") as docs_blob, index.blob(self._bm, "tfs") as tfs_blob:
            for term, lo, hi in index.rows("SELECT term, lo, hi FROM terms WHERE bm = ?", self._bm):
                docs = _slice(docs_blob, self._docs_type, lo, hi).tolist()
                tfs = _slice(tfs_blob, self._tfs_type, lo, hi).tolist()
                for doc, tf in zip(docs, tfs, strict=True):
                    if alive is None or alive[doc]:
                        postings.setdefault(term, {})[key_of[doc]] = tf
        for term, doc, tf in index.rows("SELECT term, doc, tf FROM extra WHERE bm = ?", self._bm):
            postings.setdefault(term, {})[key_of[doc]] = tf
        live = range(len(self._lengths)) if alive is None else np.flatnonzero(alive).tolist()
        return {
            "live": self.live,
            "total_len": self._total_len,
            "lengths": {key_of[d]: int(self._lengths[d]) for d in live},
            "postings": {t: dict(sorted(p.items())) for t, p in sorted(postings.items())},
        }


def _slice(blob: sqlite3.Blob, dtype: np.dtype[Any], lo: int, hi: int) -> npt.NDArray[Any]:
    blob.seek(lo * dtype.itemsize)
    return np.frombuffer(blob.read((hi - lo) * dtype.itemsize), dtype=dtype)
