"""Reading and analysing many files at once: the cold build, and updates of many files.

When there are enough files, worker processes are forked and this process works alongside
them: each takes groups of files, largest first, from a counter in shared memory, reads them
through its own ``git cat-file --batch`` and analyses them. Every process numbers words and
terms itself, splits each word into terms once, and counts its documents' words, then terms,
in numpy (see :class:`_Encoder`); workers send compact batches (file entries, and (term id,
count) pairs in flat arrays with the terms not sent before). This process maps terms to
build-wide ids, orders files as listed and hands BM25 the arrays. A serial build runs the
same encoder in this process alone, so both give the same index.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import filterfalse
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from errands.errors import ErrandsError
from errands.index import gitio
from errands.index.analyse import WORD_BYTES, FileInfo, analyse, chunk_ranges, extra_text
from errands.index.bm25 import Docs
from errands.index.keys import ChunkKeys, Keys
from errands.index.lexical import Lexicon
from errands.index.symbols import grammar, language_of

Progress = Callable[[int, int], None]
Ints = npt.NDArray[np.int32]
Offsets = npt.NDArray[np.int64]

# Builds of at least this many files and this much work (see `_cost`) analyse them in
# worker processes (forked, so they start in milliseconds with everything already
# imported); smaller ones, and one-file updates, stay in this process. The work bound is
# about half a second of one process's work (~5 MB of Python source): a worker costs 0.1 to
# 0.2 s of CPU besides its share (the fork, the pages it copies, and numbering and splitting
# again the words every process meets), more than a smaller build gains from a second CPU —
# and on a busy machine it gains none.
PARALLEL_MIN_FILES = 32
PARALLEL_MIN_COST = 16_000_000
# An update's entries carry no size: each is counted as a source file of about 10 KB.
_UNSIZED_COST = 32_000
# A worker sends what it has after this many files or bytes of source, so the parent
# reports progress and merges while the workers go on.
_BATCH_FILES = 64
_BATCH_BYTES = 1 << 20
# Processes take files in groups of about this estimated cost (see `_cost`): a few
# milliseconds of work, so the processes still finish close together.
_CLAIM_COST = 60_000


class IndexBuildError(ErrandsError):
    """A worker process of a build failed or died."""


@dataclass(slots=True)
class _Batch:
    """Files a worker analysed: entries with their place in the listing, and their
    documents as (term id, count) pairs in the worker's own term ids (``terms`` names the
    ones it had not sent before)."""

    handled: int  # files read, including binary and oversized ones left out
    ordinals: list[int]
    infos: list[FileInfo]
    terms: list[str]
    doc_sizes: Ints  # pairs per document, each file's documents in a row
    term_ids: Ints
    tfs: Ints


class _Encoder:
    """Analyses files and packs them into :class:`_Batch` es, with its own numbering of
    words and terms (so it can run in any process).

    A batch's files and the extra words of its documents (paths, symbol names) are joined
    into one text, split into words once and numbered in one C-level pass; each document is
    then a range or two of that text's words (a chunk's lines lie within its file's, and its
    name's words after all the files), found by bisecting the words' offsets, and all of the
    batch's documents are counted at once in numpy (see :meth:`Lexicon.expand`). No object
    is made per line or per document's word: most words occur in two documents (the file's
    and a chunk's), which share them."""

    def __init__(self) -> None:
        self._lexicon = Lexicon()
        self._sent = 0  # terms named in batches already taken
        self._reset()

    def _reset(self) -> None:
        self.handled = 0
        self.bytes = 0
        self._ordinals: list[int] = []
        self._infos: list[FileInfo] = []
        # Each file's bytes, then its path's words, then each symbol's names: joined in
        # `take`. Chunks as byte ranges of their file's bytes.
        self._pieces: list[bytes] = []
        self._file_piece: list[int] = []  # where each file's bytes are in `_pieces`
        self._lines: list[int] = []  # each symbol's start and end line

    def add(self, ordinal: int, entry: gitio.TreeEntry, data: bytes | None) -> None:
        """Analyse one file; ``data`` None: the repository lacks the blob (counted as
        handled, for progress, and left out)."""
        self.handled += 1
        if data is None:
            return
        self.bytes += len(data)
        analysed = analyse(entry.path, entry.blob, data)
        if analysed is None:
            return
        info = analysed.info
        self._ordinals.append(ordinal)
        self._infos.append(info)
        self._file_piece.append(len(self._pieces))
        self._pieces.append(data)
        self._pieces += extra_text(info.path, analysed.symbols)
        self._lines += [n for sym in analysed.symbols for n in (sym.start_line, sym.end_line)]

    def full(self) -> bool:
        return self.handled >= _BATCH_FILES or self.bytes >= _BATCH_BYTES

    def take(self) -> _Batch:
        lexicon = self._lexicon
        pieces = self._pieces
        raw = b" ".join(pieces)
        text = raw.translate(WORD_BYTES)
        # Each word's offset in the text: where a word byte follows a space (or starts it).
        space = np.frombuffer(text, dtype=np.uint8) == _SPACE
        first = np.empty(len(space), dtype=np.bool_)
        first[:1] = ~space[:1]
        np.greater(space[:-1], space[1:], out=first[1:])
        starts = np.flatnonzero(first)
        words = lexicon.number(text.split())
        assert len(words) == len(starts)
        # Where each piece starts in the text (joined by one space each).
        sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        at = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(sizes + 1, out=at[1:])
        # Documents in order, each file's then its chunks', as two byte ranges each: its
        # lines, and its extra words (the piece after the file's bytes, or a symbol's).
        n_syms = np.fromiter(
            (info.symbol_count for info in self._infos), dtype=np.int64, count=len(self._infos)
        )
        file_piece = np.array(self._file_piece, dtype=np.int64)
        n_docs = len(file_piece) + int(n_syms.sum())
        file_doc = np.arange(len(file_piece), dtype=np.int64)
        file_doc[1:] += np.cumsum(n_syms)[:-1]
        is_chunk = np.ones(n_docs, dtype=np.bool_)
        is_chunk[file_doc] = False
        piece = np.repeat(file_piece, n_syms + 1)  # each document's file's bytes
        ranges = np.empty((n_docs, 4), dtype=np.int64)  # lines from, to; extras from, to
        ranges[:, 0] = at[piece]
        ranges[:, 1] = ranges[:, 0] + sizes[piece]
        ranges[is_chunk, 0], ranges[is_chunk, 1] = chunk_ranges(
            raw,
            at[file_piece],
            at[file_piece] + sizes[file_piece],
            n_syms,
            np.array(self._lines, dtype=np.int64).reshape(-1, 2),
        )
        # A file's extra words are the piece after its bytes, its chunk i's the (i + 2)-th.
        extra = piece + 1 + np.arange(n_docs, dtype=np.int64) - np.repeat(file_doc, n_syms + 1)
        ranges[:, 2] = at[extra]
        ranges[:, 3] = ranges[:, 2] + sizes[extra]
        # Byte ranges to ranges of words, then every document's words one after another.
        bounds = np.searchsorted(starts, ranges.ravel()).reshape(-1, 2)
        lens = bounds[:, 1] - bounds[:, 0]
        out_at = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_at[1:])
        gather = np.arange(out_at[-1], dtype=np.int64) + np.repeat(bounds[:, 0] - out_at[:-1], lens)
        ptr, term_ids, tfs = lexicon.expand(*lexicon.count(out_at[::2], words[gather]))
        terms = lexicon.names[self._sent :]
        self._sent = len(lexicon.names)
        batch = _Batch(
            self.handled, self._ordinals, self._infos, terms, np.diff(ptr).astype(np.int32),
            term_ids, tfs,
        )  # fmt: skip
        self._reset()
        return batch


_SPACE = ord(" ")


@dataclass(slots=True)
class _File:
    info: FileInfo
    doc_sizes: Ints  # pairs per document: the file's, then one per symbol
    term_ids: Ints  # build-wide term ids
    tfs: Ints


@dataclass(slots=True)
class Analysis:
    """Files analysed, in listing order, and their documents ready for BM25."""

    infos: list[FileInfo] = field(default_factory=list)
    vocab: dict[str, int] = field(default_factory=dict)  # term → id
    files: Docs | None = None  # one document per file, keyed by path
    chunks: Docs | None = None  # one per symbol, keyed ``path\0i``


class _Merger:
    """Collects batches from any number of encoders into one :class:`Analysis`."""

    def __init__(self, sources: int) -> None:
        self.vocab: dict[str, int] = {}  # term → build-wide id, numbered on first sight
        self._local = [array("i") for _ in range(sources)]  # encoder's term id → build-wide
        self._files: dict[int, _File] = {}

    def add(self, source: int, batch: _Batch) -> None:
        local, vocab = self._local[source], self.vocab
        # A batch names each of its terms once: those new to the build are numbered in bulk
        # (in a serial build, all of them: a `__missing__` call each cost more).
        new = list(filterfalse(vocab.__contains__, batch.terms))
        vocab.update(zip(new, range(len(vocab), len(vocab) + len(new)), strict=True))
        local.extend(map(vocab.__getitem__, batch.terms))
        if not batch.ordinals:
            return
        term_ids = np.frombuffer(local, dtype=np.int32)[batch.term_ids]
        sizes = batch.doc_sizes
        doc = pair = 0
        for ordinal, info in zip(batch.ordinals, batch.infos, strict=True):
            n_docs = 1 + info.symbol_count
            n_pairs = int(sizes[doc : doc + n_docs].sum())
            self._files[ordinal] = _File(
                info,
                sizes[doc : doc + n_docs],
                term_ids[pair : pair + n_pairs],
                batch.tfs[pair : pair + n_pairs],
            )
            doc += n_docs
            pair += n_pairs

    def result(self) -> Analysis:
        # Taken out of the merger file by file, so that once the arrays below are made
        # nothing holds the workers' batches (the whole build's postings) any more.
        files = [self._files.pop(k) for k in sorted(self._files)]
        out = Analysis(infos=[f.info for f in files], vocab=self.vocab)
        if not files:
            return out
        # Each file's own document, then its chunks, straight into arrays of their own: no
        # copy of every posting together first (on a large repository, hundreds of MB).
        firsts = [int(f.doc_sizes[0]) for f in files]
        out.files = _docs(
            Keys(f.info.path for f in files),
            np.array([f.doc_sizes[0] for f in files], dtype=np.int32),
            np.concatenate([f.term_ids[:n] for f, n in zip(files, firsts, strict=True)]),
            np.concatenate([f.tfs[:n] for f, n in zip(files, firsts, strict=True)]),
        )
        out.chunks = _docs(
            # Made from the files' paths when asked for, never kept (see keys.ChunkKeys).
            ChunkKeys([f.info.path for f in files], [f.info.symbol_count for f in files]),
            np.concatenate([f.doc_sizes[1:] for f in files]),
            np.concatenate([f.term_ids[n:] for f, n in zip(files, firsts, strict=True)]),
            np.concatenate([f.tfs[n:] for f, n in zip(files, firsts, strict=True)]),
        )
        return out


def _docs(keys: Keys, sizes: Ints, terms: Ints, tfs: Ints) -> Docs:
    ptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    return Docs(keys, ptr, terms, tfs)


def analyse_entries(
    git_dir: Path, entries: Sequence[gitio.TreeEntry], progress: Progress | None = None
) -> Analysis:
    """Read and analyse ``entries`` (in several processes when there are many); binary,
    oversized and missing blobs are left out.

    This process works through the files too, taking them one at a time from a shared
    counter like the forked workers, largest first, so all finish together however
    unevenly the files cost; between files it merges what the workers sent."""
    workers = processes_for(entries)
    if workers > 1:
        # Grammars are loaded and queries compiled once here, before the fork, not per worker.
        for language in {language_of(e.path) for e in entries} - {None}:
            assert language is not None
            grammar(language)
    merger = _Merger(workers)
    total = len(entries)
    done = 0

    def merge(source: int, batch: _Batch) -> None:
        nonlocal done
        merger.add(source, batch)
        done += batch.handled
        if progress is not None and batch.handled:
            progress(done, total)

    claims = _Claims(_groups(entries), shared=workers > 1)
    with _gc_paused(), _Workers(workers - 1) as children:
        # Forked before this process starts its own `git cat-file`, so none inherits its pipes.
        children.start(git_dir, entries, claims)
        encoder = _Encoder()
        with gitio.BlobReader(git_dir) as reader:
            for ordinal, data in _claimed(reader, claims, entries):
                encoder.add(ordinal, entries[ordinal], data)
                if encoder.full():
                    merge(0, encoder.take())
                for source, batch in children.ready():
                    merge(source, batch)
        merge(0, encoder.take())
        for source, batch in children.rest():
            merge(source, batch)
        return merger.result()  # while the workers exit


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collections during a build: it makes many objects that all live on, and
    each collection would walk them all again (and whatever else the process holds)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def processes_for(entries: Sequence[gitio.TreeEntry]) -> int:
    """How many processes (this one included) read and analyse these entries."""
    if len(entries) < PARALLEL_MIN_FILES:
        return 1
    work = sum(_cost(e) if e.size else _UNSIZED_COST for e in entries)
    return _workers() if work >= PARALLEL_MIN_COST else 1


def _cost(entry: gitio.TreeEntry) -> int:
    # Parsing makes a source file dearer than other text of its size.
    return 2000 + entry.size * (3 if language_of(entry.path) else 1)


def _groups(entries: Sequence[gitio.TreeEntry]) -> list[list[int]]:
    """Entries largest first, in groups of about one claim's worth each: a large file
    alone, small ones together (one request to git and one claim for several)."""
    order = sorted(range(len(entries)), key=lambda i: _cost(entries[i]), reverse=True)
    groups: list[list[int]] = []
    cost = _CLAIM_COST
    for i in order:
        if cost >= _CLAIM_COST:
            groups.append([])
            cost = 0
        groups[-1].append(i)
        cost += _cost(entries[i])
    return groups


class _Claims:
    """Which group of entries to read next, for every process of a build: a counter in
    shared memory, under a lock, when there are several."""

    def __init__(self, groups: list[list[int]], *, shared: bool) -> None:
        self._groups = groups
        self._next = 0
        self._shared: Synchronized[int] | None = None
        if shared:
            self._shared = multiprocessing.get_context("fork").Value("q", 0)

    def next(self) -> list[int]:
        """The next group's entries; empty when all are taken."""
        if self._shared is None:
            n = self._next
            self._next += 1
        else:
            with self._shared.get_lock():
                n = self._shared.value
                self._shared.value = n + 1
        return self._groups[n] if n < len(self._groups) else []


def _claimed(
    reader: gitio.BlobReader, claims: _Claims, entries: Sequence[gitio.TreeEntry]
) -> Iterator[tuple[int, bytes | None]]:
    """Claimed entries and their contents (None for a blob the repository lacks). The next
    group is claimed and requested before this one is analysed, so git reads it meanwhile."""
    current = claims.next()
    reader.request([entries[i].blob for i in current])
    while current:
        following = claims.next()
        reader.request([entries[i].blob for i in following])
        for ordinal in current:
            yield ordinal, reader.read()
        current = following


class _Workers:
    """Forked worker processes of a build, each sending :class:`_Batch` es through a pipe."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._conns: dict[Connection, int] = {}  # pipe → source number (1, 2, …)
        self._procs: list[BaseProcess] = []

    def start(self, git_dir: Path, entries: Sequence[gitio.TreeEntry], claims: _Claims) -> None:
        context = multiprocessing.get_context("fork")
        for source in range(1, self._count + 1):
            recv, send = context.Pipe(duplex=False)
            # Forked: the worker inherits `entries` and the claims, nothing is pickled to it.
            proc = context.Process(target=_work, args=(git_dir, entries, claims, send))
            proc.daemon = True
            proc.start()
            send.close()
            self._conns[recv] = source
            self._procs.append(proc)

    def ready(self) -> Iterator[tuple[int, _Batch]]:
        """Batches that have arrived, without waiting."""
        if self._conns:
            yield from self._receive(wait(list(self._conns), timeout=0))

    def rest(self) -> Iterator[tuple[int, _Batch]]:
        """Every batch still to come, waiting for the workers to finish."""
        while self._conns:
            yield from self._receive(wait(list(self._conns)))

    def _receive(self, ready: list[Any]) -> Iterator[tuple[int, _Batch]]:
        for conn in ready:
            assert isinstance(conn, Connection)
            try:
                msg = conn.recv()
            except EOFError:
                raise IndexBuildError("an index worker process died") from None
            if msg is None:  # that worker is done
                del self._conns[conn]
                conn.close()
            elif isinstance(msg, BaseException):
                raise msg
            else:
                yield self._conns[conn], msg

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            conn.close()
        if exc[0] is not None:
            for proc in self._procs:
                proc.terminate()
                proc.join()
        # Otherwise every worker has sent all it had and is exiting; waiting for that would
        # hold up the build, so they are reaped later (see `reap_workers`).


def reap_workers() -> None:
    """Collect workers of finished builds that have exited (multiprocessing would do it at
    the next fork or at exit anyway)."""
    multiprocessing.active_children()


def _workers() -> int:
    """Processes for a large build: one per CPU this process may use (at most 4), and only
    this one where processes cannot be forked — or should not be: forking a process that runs
    other threads (the server, a job worker) can copy a lock another thread holds and hang the
    child, so there the build stays in-process. `errands index` and the benchmarks fork."""
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 4)


def _work(
    git_dir: Path, entries: Sequence[gitio.TreeEntry], claims: _Claims, conn: Connection
) -> None:
    """A worker: claim entries until none are left, read and analyse them, send batches,
    then None; an error is sent as the exception."""
    # Collections would walk (and so copy, page by page) every object inherited from the
    # parent; a worker's own garbage is short-lived, so they are off here.
    gc.disable()
    try:
        encoder = _Encoder()
        with gitio.BlobReader(git_dir) as reader:
            for ordinal, data in _claimed(reader, claims, entries):
                encoder.add(ordinal, entries[ordinal], data)
                if encoder.full():
                    conn.send(encoder.take())
        conn.send(encoder.take())
        conn.send(None)
    except BaseException as exc:  # the parent re-raises it
        try:
            conn.send(exc)
        except Exception:  # not picklable: say what it was
            conn.send(IndexBuildError(f"index worker failed: {exc!r}"))
    finally:
        conn.close()
