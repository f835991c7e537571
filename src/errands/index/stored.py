"""The index as a query file: a SQLite database a fresh process opens and reads only what a
query needs (a few rows per name and term), instead of unpickling the whole index — which on
a 50,000-file repository means 700,000 symbols and seconds before the first answer.

Written whole from a :class:`~errands.index.core.CodeIndex` (:func:`write`) next to the
pickled index that updates start from, in a canonical order — files by path, a file's
symbols in their order, terms sorted, documents numbered in that order — so an index updated
commit by commit writes the same rows as a fresh build of the commit. :class:`StoredIndex`
answers what the ranker asks (:mod:`errands.index.locate`) with the same numbers as the
index it was written from.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from errands.errors import InvalidInput
from errands.index.bm25 import BM25, Floats, add_term, best_of, idf, length_norm
from errands.index.locate import locate
from errands.index.model import Located, Symbol

if TYPE_CHECKING:
    from errands.index.analyse import FileInfo

FORMAT = 2  # 2: postings in one blob per index
FILES, CHUNKS = 0, 1  # the two BM25 indexes: whole files, symbol chunks

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, blob TEXT NOT NULL,
    churn INTEGER NOT NULL, age INTEGER, first_symbol INTEGER NOT NULL
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
CREATE TABLE postings (bm INTEGER PRIMARY KEY, docs BLOB NOT NULL, tfs BLOB NOT NULL);
"""
# Each BM25 index's postings are two blobs (document ids, term frequencies: 32-bit, this
# machine's byte order), term t's at [lo:hi]: one row each, read a slice at a time — a
# row per term took most of the time writing the file.
_ITEM = 4
# Indexes made after the rows are in: one sort each, not a B-tree insert per row.
_INDEXES = """
CREATE INDEX symbols_name ON symbols (name, id);
CREATE INDEX lookup_key ON lookup (tbl, key, file);
"""
_TABLES = ("modules", "basenames", "path_tokens")


def write(
    path: Path,
    *,
    commit: str,
    files: Mapping[str, FileInfo],
    file_bm25: BM25,
    sym_bm25: BM25,
    tables: Mapping[str, Mapping[str, list[str]]],
    churn: Mapping[str, int],
    age: Mapping[str, int],
) -> None:
    """Write the query file atomically (a reader sees the old file or the new, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        # SQLite writes into the empty file mkstemp made: the owner's alone (0600), as the
        # pickled index is — it names a private repository's files and symbols.
        conn = sqlite3.connect(tmp)
        try:
            _fill(conn, commit, files, file_bm25, sym_bm25, tables, churn, age)
        finally:
            conn.close()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fill(
    conn: sqlite3.Connection,
    commit: str,
    files: Mapping[str, FileInfo],
    file_bm25: BM25,
    sym_bm25: BM25,
    tables: Mapping[str, Mapping[str, list[str]]],
    churn: Mapping[str, int],
    age: Mapping[str, int],
) -> None:
    # Nothing to recover if this process dies mid-write: the file is not in place yet.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(_SCHEMA)
    paths = sorted(files)
    file_id = {p: i for i, p in enumerate(paths)}
    firsts: list[int] = []
    symbol_rows: list[tuple[int, int, str, str, int, int, str | None]] = []
    for fid, p in enumerate(paths):
        firsts.append(len(symbol_rows))
        for sym in files[p].symbols:
            row = (len(symbol_rows), fid, sym.name, sym.kind, sym.start_line, sym.end_line)
            symbol_rows.append((*row, sym.parent))
    conn.executemany(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
        (
            (i, p, files[p].blob, churn.get(p, 0), age.get(p), firsts[i])
            for i, p in enumerate(paths)
        ),
    )
    conn.executemany("INSERT INTO symbols VALUES (?, ?, ?, ?, ?, ?, ?)", symbol_rows)
    # Sorted, as every table's rows are, so the file holds the same rows in the same order
    # whichever way the index came about.
    conn.executemany(
        "INSERT INTO lookup VALUES (?, ?, ?)",
        sorted(
            (t, key, file_id[p])
            for t, table in enumerate(_TABLES)
            for key, listed in tables[table].items()
            for p in listed
        ),
    )
    chunk_keys = [f"{p}\0{i}" for p in paths for i in range(len(files[p].symbols))]
    meta: dict[str, object] = {"format": FORMAT, "commit": commit, "files": len(paths)}
    for bm, (bm25, keys) in enumerate(((file_bm25, paths), (sym_bm25, chunk_keys))):
        exported = bm25.export(keys)
        ptr = exported.ptr.tolist()
        conn.executemany(
            "INSERT INTO terms VALUES (?, ?, ?, ?)",
            zip([bm] * len(exported.terms), exported.terms, ptr, ptr[1:], strict=False),
        )
        conn.execute(
            "INSERT INTO postings VALUES (?, ?, ?)",
            (bm, exported.docs.tobytes(), exported.tfs.tobytes()),
        )
        meta[f"lengths{bm}"] = exported.lengths.tobytes()
        meta[f"total_len{bm}"] = int(exported.lengths.sum())
    conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    conn.executescript(_INDEXES)
    conn.commit()


class StoredIndex:
    """A query file opened for reading: what :func:`errands.index.locate.locate` asks of
    an index, read row by row as it asks."""

    def __init__(self, path: Path) -> None:
        try:
            # Read-only, and immutable: the file is replaced whole, never changed in place,
            # so SQLite need take no locks.
            self._conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise InvalidInput(f"cannot read code index {path}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise InvalidInput(f"code index {path} has an old or unknown format; rebuild it")
        self.commit = str(meta["commit"])
        self.files = int(meta["files"])
        self.file_bm25 = StoredBM25(self, FILES, meta["lengths0"], meta["total_len0"])
        self.sym_bm25 = StoredBM25(self, CHUNKS, meta["lengths1"], meta["total_len1"])
        self._tables = _Tables(self)
        self._history: dict[str, tuple[int, int | None]] | None = None

    def close(self) -> None:
        self._conn.close()

    def locate(self, text: str, *, limit: int = 10) -> list[Located]:
        """As :meth:`CodeIndex.locate <errands.index.core.CodeIndex.locate>` (the same
        answer for the index this file was written from)."""
        return locate(self, text, limit=limit)

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = self._conn.execute(sql, args).fetchall()
        return found

    def blob(self, bm: int, column: str) -> sqlite3.Blob:
        """One of the postings' blobs, to read slices of."""
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

    def symbol_at(self, key: str) -> Symbol | None:
        path, _, idx = key.partition("\0")
        found = self.rows(
            "SELECT s.name, s.kind, f.path, s.start_line, s.end_line, s.parent, "
            "s.file = f.id FROM files f JOIN symbols s ON s.id = f.first_symbol + ? "
            "WHERE f.path = ?",
            int(idx),
            path,
        )
        return _symbol(found[0]) if found and found[0][6] else None

    def churn(self, path: str) -> int:
        return self._signals(path)[0]

    def age(self, path: str) -> int | None:
        return self._signals(path)[1]

    def _signals(self, path: str) -> tuple[int, int | None]:
        if self._history is None:
            # One read of the files the window touched: a query asks of many files.
            self._history = {
                p: (churn, age)
                for p, churn, age in self.rows(
                    "SELECT path, churn, age FROM files WHERE churn > 0 OR age IS NOT NULL"
                )
            }
        return self._history.get(path, (0, None))


def _read(blob: sqlite3.Blob, lo: int, hi: int) -> bytes:
    blob.seek(lo * _ITEM)
    return blob.read((hi - lo) * _ITEM)


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
            "WHERE l.tbl = ? AND l.key = ? ORDER BY l.file",
            self._table,
            key,
        )
        return [str(row[0]) for row in found] or None


class _Defs:
    """Name → its definitions, in path order and each file's order."""

    def __init__(self, index: StoredIndex) -> None:
        self._index = index

    def get(self, name: str) -> list[Symbol] | None:
        found = self._index.rows(
            "SELECT s.name, s.kind, f.path, s.start_line, s.end_line, s.parent "
            "FROM symbols s JOIN files f ON f.id = s.file WHERE s.name = ? ORDER BY s.id",
            name,
        )
        return [_symbol(row) for row in found] or None


class _Tables:
    def __init__(self, index: StoredIndex) -> None:
        self.modules = _Lookup(index, _TABLES.index("modules"))
        self.basenames = _Lookup(index, _TABLES.index("basenames"))
        self.path_tokens = _Lookup(index, _TABLES.index("path_tokens"))
        self.defs = _Defs(index)


class StoredBM25:
    """One BM25 index of a query file, scoring as :class:`BM25` does (same numbers)."""

    def __init__(self, index: StoredIndex, bm: int, lengths: object, total_len: object) -> None:
        assert isinstance(lengths, bytes) and isinstance(total_len, int)
        self._index, self._bm = index, bm
        self._lengths = np.frombuffer(lengths, dtype=np.int32)
        self._total_len = total_len
        self.live = len(self._lengths)

    def scores(self, query: Mapping[str, float]) -> Floats:
        out = np.zeros(self.live, dtype=np.float64)
        if not self.live or not query:
            return out
        norm = length_norm(self._lengths.astype(np.float64), self._total_len, self.live)
        found = {term: (lo, hi) for term, lo, hi in self._ranges(list(query))}
        with self._index.blob(self._bm, "docs") as docs, self._index.blob(self._bm, "tfs") as tfs:
            for term, weight in query.items():  # in the query's order, as BM25 adds them up
                if term not in found:
                    continue
                lo, hi = found[term]
                scaled = weight * idf(self.live, hi - lo)
                add_term(
                    out,
                    norm,
                    scaled,
                    np.frombuffer(_read(docs, lo, hi), dtype=np.int32),
                    np.frombuffer(_read(tfs, lo, hi), dtype=np.int32).astype(np.float64),
                )
        return out

    def _ranges(self, terms: list[str]) -> Iterator[tuple[Any, ...]]:
        for lo in range(0, len(terms), 500):  # SQLite's limit on parameters, with room
            part = terms[lo : lo + 500]
            yield from self._index.rows(
                "SELECT term, lo, hi FROM terms WHERE bm = ? AND term IN "
                f"({','.join('?' * len(part))})",
                self._bm,
                *part,
            )

    def best(self, scores: Floats, limit: int) -> list[tuple[str, float]]:
        return best_of(scores, limit, self._keys)

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
