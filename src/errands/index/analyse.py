"""What the index keeps about one file: its entry (symbols, imports, blob id) and where
its documents lie — the whole file, then one chunk per symbol.

Pure functions of a path and its bytes, so they run in any process. Nothing here counts
words: the build's encoder splits many files' text at once and counts every document of
them together in numpy (see ``build._Encoder``); a chunk is a byte range of its file, so
the file's document and its chunks share the same text."""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from errands.index.model import Symbol
from errands.index.packed import join_strings, split_strings
from errands.index.paths import is_binary, too_big
from errands.index.symbols import language_of, parse

Offsets = npt.NDArray[np.int64]

# Symbol chunks longer than this many lines are cut: the head of a long body says most.
CHUNK_MAX_LINES = 200


class FileInfo:
    """A file's entry: path, blob, size, language, imports and symbols.

    The symbols are kept column by column — their names, kinds and parents in one tuple
    (interned strings, shared with every other file's), their lines in the bytes of an
    int32 array — and made into :class:`~errands.index.model.Symbol` objects when asked
    for: a large repository's 700,000 symbols as objects (and a tuple of them per file)
    were ~60 MB of its index in memory, three times this."""

    # No copy of the contents: `blob` names them in the repository, which every reader of
    # an index has (keeping them would cost a quarter of the index and of a cold build).
    __slots__ = ("_lines", "_strings", "blob", "imports", "language", "path", "size")

    def __init__(
        self,
        path: str,
        blob: str,
        size: int,
        language: str | None,
        symbols: Sequence[Symbol],
        imports: tuple[str, ...],
    ) -> None:
        self.path, self.blob, self.size, self.language, self.imports = (
            path, blob, size, language, imports
        )  # fmt: skip
        self._strings: tuple[str | None, ...] = _NONE
        self._lines = b""
        if symbols:
            self._strings = tuple(chain.from_iterable((s.name, s.kind, s.parent) for s in symbols))
            lines = array("i", chain.from_iterable((s.start_line, s.end_line) for s in symbols))
            self._lines = lines.tobytes()

    @classmethod
    def of_columns(
        cls,
        path: str,
        blob: str,
        size: int,
        language: str | None,
        imports: tuple[str, ...],
        strings: tuple[str | None, ...],
        lines: bytes,
    ) -> FileInfo:
        """An entry from its symbols' columns (see :meth:`columns`), no symbol made."""
        info = cls(path, blob, size, language, (), imports)
        if strings:
            info._strings, info._lines = strings, lines
        return info

    def columns(self) -> tuple[tuple[str | None, ...], bytes]:
        """The symbols' names, kinds and parents (three per symbol, in a row) and their
        start and end lines (int32, two per symbol)."""
        return self._strings, self._lines

    @property
    def symbol_count(self) -> int:
        return len(self._strings) // 3

    @property
    def symbol_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self._strings[0::3]  # type: ignore[assignment]
        return names

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        strings, n = self._strings, self.symbol_count
        if not n:
            return ()
        lines = array("i")
        lines.frombytes(self._lines)
        return tuple(
            map(Symbol, strings[0::3], strings[1::3], repeat(self.path, n), lines[0::2],
                lines[1::2], strings[2::3])
        )  # fmt: skip

    def symbol(self, i: int) -> Symbol | None:
        """Symbol ``i`` alone (None past the last)."""
        return self._symbol(i) if 0 <= i < self.symbol_count else None

    def _symbol(self, i: int) -> Symbol:
        start, end = struct.unpack_from("=ii", self._lines, 8 * i)
        name, kind, parent = self._strings[3 * i : 3 * i + 3]
        assert name is not None and kind is not None
        return Symbol(name, kind, self.path, start, end, parent)

    def symbols_named(self, name: str) -> list[Symbol]:
        """The symbols called ``name``, in order (only they are made into objects)."""
        return [self._symbol(i) for i, found in enumerate(self._strings[0::3]) if found == name]

    def _key(self) -> tuple[object, ...]:
        """Its fields and columns, in :func:`_file_info`'s order."""
        return (self.path, self.blob, self.size, self.language, self.imports, self._strings,
                self._lines)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileInfo):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"FileInfo(path={self.path!r}, blob={self.blob!r}, size={self.size}, "
            f"language={self.language!r}, symbols={self.symbols!r}, imports={self.imports!r})"
        )

    def __reduce__(self) -> tuple[Callable[..., FileInfo], tuple[object, ...]]:
        # Pickled as its fields and columns (a worker's batch): no symbol object made.
        return (_file_info, self._key())


_NONE: tuple[str | None, ...] = ()


def _file_info(
    path: str,
    blob: str,
    size: int,
    language: str | None,
    imports: tuple[str, ...],
    strings: tuple[str | None, ...],
    lines: bytes,
) -> FileInfo:
    """A :class:`FileInfo` read back (see its ``__reduce__``), its symbols' strings
    interned: shared with those of every other file of this process."""
    intern = sys.intern
    shared = tuple(None if s is None else intern(s) for s in strings)
    return FileInfo.of_columns(path, blob, size, language, imports, shared, lines)


def pack_files(infos: Collection[FileInfo]) -> tuple[object, ...]:
    """Files' entries column by column, to save: the symbols' names, kinds and parents as
    one string and the lengths of its parts, not lists of strings, which a pickle would
    each remember (an entry in its memo per distinct string) until it is done — tens of MB
    on a large repository, on top of the lists."""
    return (
        [info.path for info in infos], [info.blob for info in infos],
        array("q", [info.size for info in infos]).tobytes(),
        [info.language for info in infos], [info.imports for info in infos],
        array("q", [info.symbol_count for info in infos]).tobytes(),
        join_strings(chain.from_iterable(info.columns()[0] for info in infos)),
        b"".join(info.columns()[1] for info in infos),
    )  # fmt: skip


def unpack_files(packed: tuple[Any, ...]) -> dict[str, FileInfo]:
    """:func:`pack_files` read back, by path (the strings interned: equal names are shared
    objects, as they are when parsed)."""
    paths, blobs, size_bytes, languages, imports, count_bytes, strings, lines = packed
    sizes, counts = array("q"), array("q")
    sizes.frombytes(size_bytes)
    counts.frombytes(count_bytes)
    columns = split_strings(*strings)
    out: dict[str, FileInfo] = {}
    at = 0
    for path, blob, size, language, imps, n in zip(
        paths, blobs, sizes, languages, imports, counts, strict=True
    ):
        end = at + n
        out[path] = FileInfo.of_columns(
            path, blob, size, language, imps, tuple(columns[3 * at : 3 * end]),
            lines[8 * at : 8 * end],
        )  # fmt: skip
        at = end
    return out


@dataclass(slots=True)
class Analysed:
    """One file's entry and its bytes. Its documents are the file's (every word of it, and
    its path's twice) and one chunk per symbol (the words of its lines — see
    :func:`chunk_spans` — its name's twice and its parent's once); the build's encoder
    counts them for many files at once (see ``build._Encoder``), so nothing here makes an
    object per word or per line."""

    info: FileInfo
    data: bytes
    symbols: tuple[Symbol, ...]  # info's, as parsed (the encoder reads them once)


def analyse(path: str, blob: str, data: bytes) -> Analysed | None:
    """Everything the index keeps about one file, or None for binary and oversized files."""
    if is_binary(data) or too_big(path, len(data)):
        return None
    language = language_of(path)
    symbols: tuple[Symbol, ...] = ()
    imports: tuple[str, ...] = ()
    if language is not None:
        parsed = parse(path, language, data)
        symbols, imports = parsed.symbols, parsed.imports
    info = FileInfo(
        path=path,
        blob=blob,
        size=len(data),
        language=language,
        symbols=symbols,
        imports=imports,
    )
    return Analysed(info, data, symbols)


# Bytes that cannot be part of a word become spaces, so `split()` (in C) finds the words of
# `lexical._WORD` three times faster than the regex does, plus runs of digits, which the
# lexicon gives no terms (see `lexical.Lexicon`). Bytes past ASCII separate words as the
# regex's ASCII classes do, so words are ASCII.
WORD_BYTES = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else ord(" ") for c in range(256)
)


def chunk_spans(data: bytes, symbols: tuple[Symbol, ...]) -> list[int]:
    """Where each symbol's chunk lies in ``data``, as byte offsets (start, end) one symbol
    after another. A chunk is the symbol's lines, but a container's stops at its first
    nested definition (a class's chunk is its header, docstring and attributes, not every
    method again) and none is longer than ``CHUNK_MAX_LINES``. Chunks start and end at
    line starts, so no word straddles a chunk's edge.

    One file at a time, for tests and inspection: the build finds the same for many files
    at once (:func:`chunk_ranges`)."""
    if not symbols:
        return []
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
    # Byte offset of each 0-based line, and of the end as line n (lines past it end there).
    starts: list[int] = [0, *(newlines + 1).tolist()]
    n = len(starts)
    starts.append(len(data))
    spans: list[int] = []
    last = len(symbols) - 1
    for i, sym in enumerate(symbols):
        start = sym.start_line
        end = sym.end_line
        if i < last and start < (nxt := symbols[i + 1].start_line) <= end:
            end = nxt - 1
        a = min(start - 1, n)
        b = max(min(end, start + CHUNK_MAX_LINES, n), a)
        spans += (starts[a], starts[b])
    return spans


_NEWLINE = ord("\n")


def chunk_ranges(
    text: bytes, file_starts: Offsets, file_ends: Offsets, n_syms: Offsets, lines: Offsets
) -> tuple[Offsets, Offsets]:
    """:func:`chunk_spans` of many files in one ``text`` at once, in numpy: file ``f`` is
    ``text[file_starts[f]:file_ends[f]]`` with ``n_syms[f]`` symbols, whose (start line,
    end line) pairs are ``lines``, one file's after another's. Each chunk's start and end
    offsets in ``text``."""
    start, end = lines[:, 0], lines[:, 1]
    # A symbol's chunk stops before the next symbol of its file when that starts inside it.
    last = np.cumsum(n_syms)[n_syms > 0] - 1
    nxt = np.empty_like(start)
    nxt[:-1] = start[1:]
    cut = (start < nxt) & (nxt <= end)
    cut[last] = False
    end = np.where(cut, nxt - 1, end)
    # Lines of each symbol's file: its newlines are newlines[first : first + count].
    newlines = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == _NEWLINE)
    first = np.searchsorted(newlines, file_starts)
    count = np.searchsorted(newlines, file_ends) - first
    of_file = np.repeat(np.arange(len(n_syms)), n_syms)
    lo, hi, first, count = file_starts[of_file], file_ends[of_file], first[of_file], count[of_file]
    n = count + 1  # lines, the last possibly empty; line n is the file's end
    a = np.minimum(start - 1, n)
    b = np.maximum(np.minimum(np.minimum(end, start + CHUNK_MAX_LINES), n), a)
    newlines = np.append(newlines, 0)  # (so that every index below is in range)

    def offset(line: Offsets) -> Offsets:
        # Line 0 starts at the file's start, line i after its file's i-th newline, line n
        # (and any past it) at the file's end.
        inner = newlines[np.where((line >= 1) & (line <= count), first + line - 1, -1)] + 1
        out: Offsets = np.where(line == 0, lo, np.where(line <= count, inner, hi))
        return out

    return offset(a), offset(b)


def extra_text(path: str, symbols: tuple[Symbol, ...]) -> list[bytes]:
    """The words documents hold besides their lines, as text to split like a file's: the
    path's, written twice, for the file's document; for each chunk its symbol's name twice
    and its parent's once."""
    encoded = path.encode("utf-8", "surrogateescape")
    return [
        encoded + b" " + encoded,
        *[f"{s.name} {s.name} {s.parent or ''}".encode() for s in symbols],
    ]


def doc_words(analysed: Analysed) -> list[Counter[str]]:
    """Each document's word counts, one at a time (what the build's encoder counts in bulk;
    for tests and inspection)."""
    data, info = analysed.data, analysed.info
    spans = chunk_spans(data, info.symbols)
    extras = extra_text(info.path, info.symbols)
    texts = [data + b" " + extras[0]]
    texts += [
        data[spans[2 * i] : spans[2 * i + 1]] + b" " + extra for i, extra in enumerate(extras[1:])
    ]
    return [Counter(w.decode() for w in text.translate(WORD_BYTES).split()) for text in texts]
