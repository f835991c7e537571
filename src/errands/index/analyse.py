"""What the index keeps about one file: its entry (symbols, imports, compressed text) and the
word counts of its documents — the whole file, then one chunk per symbol.

Pure functions of a path and its bytes, so they run in any process. Documents are counted
in *words*, not terms: splitting words into terms is done once per distinct word by the
:class:`~errands.index.lexical.Lexicon` of the build, not once per occurrence."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate, chain

from errands.index.lexical import _WORD
from errands.index.model import Symbol
from errands.index.paths import is_binary, too_big
from errands.index.symbols import language_of, parse

# Symbol chunks longer than this many lines are cut: the head of a long body says most.
CHUNK_MAX_LINES = 200


@dataclass(slots=True)
class FileInfo:
    path: str
    blob: str
    size: int
    language: str | None
    symbols: tuple[Symbol, ...]
    imports: tuple[str, ...]
    text: bytes  # zlib-compressed UTF-8 contents, for snippets

    def __reduce__(self) -> tuple[type[FileInfo], tuple[object, ...]]:
        # Pickled as its fields (faster than the dataclass default; see Symbol).
        fields = (self.path, self.blob, self.size, self.language, self.symbols, self.imports)
        return (FileInfo, (*fields, self.text))


@dataclass(slots=True)
class Analysed:
    """One file's entry and its documents' word counts (the file's, then one per symbol)."""

    info: FileInfo
    docs: list[Counter[str]]


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
        text=zlib.compress(data, 1),
    )
    counts, chunks = word_counts(data.decode("utf-8", "replace"), symbols)
    # The path is part of the document: `irradiance.py` is about irradiance.
    for word in _WORD.findall(path.replace("/", " ").replace(".", " ")):
        counts[word] += 2
    return Analysed(info, [counts, *chunks])


def word_counts(text: str, symbols: tuple[Symbol, ...]) -> tuple[Counter[str], list[Counter[str]]]:
    """The file's word counts and one per symbol chunk, from one pass of the word regex.

    Words never span lines, so the file's words are those of its line ranges in order: the
    text is scanned range by range (gaps and chunks), each chunk's words counted on their own
    and all of them together for the file. A chunk also counts its symbol's name twice and
    its parent's once."""
    findall = _WORD.findall
    if not symbols:
        return Counter(findall(text)), []
    lines = text.split("\n")
    n = len(lines)
    # Character offset of line k (0-based): the lengths before it plus their newlines.
    starts = [s + k for k, s in enumerate(accumulate(map(len, lines), initial=0))]
    stream: list[list[str]] = []
    chunks: list[Counter[str]] = []
    cur = 0  # lines before this one are in `stream`
    last = len(symbols) - 1
    for i, sym in enumerate(symbols):
        start = sym.start_line
        # A container's chunk stops at its first nested definition, so a class's chunk is
        # its header, docstring and attributes, not every method again.
        end = sym.end_line
        if i < last and start < (nxt := symbols[i + 1].start_line) <= end:
            end = nxt - 1
        a = min(start - 1, n)
        b = max(min(end, start + CHUNK_MAX_LINES, n), a)
        words = findall(text, starts[a], starts[b])
        if a >= cur:
            if a > cur:
                stream.append(findall(text, starts[cur], starts[a]))
            stream.append(words)
            cur = b
        elif b > cur:  # overlaps a chunk already scanned (definitions sharing a line)
            stream.append(findall(text, starts[cur], starts[b]))
            cur = b
        counts = Counter(words)
        _add_name(counts, sym.name, 2)
        if sym.parent:
            _add_name(counts, sym.parent, 1)
        chunks.append(counts)
    if cur < n:
        stream.append(findall(text, starts[cur]))
    return Counter(chain.from_iterable(stream)), chunks


def _add_name(counts: Counter[str], name: str, weight: int) -> None:
    if name.isascii() and name.isidentifier():  # one word (nearly always): no regex needed
        counts[name] += weight
    else:
        for word in _WORD.findall(name):
            counts[word] += weight
