"""Tokenising code and prose alike, and turning word counts into term counts in bulk.

Identifiers are kept whole *and* split into their parts (``get_total_irradiance`` →
``get_total_irradiance``, ``get``, ``total``, ``irradiance``; ``PixelData`` → ``pixeldata``,
``pixel``, ``data``), so prose words meet code names. A cold build counts *words* per document
(cheap, in C) and expands them to terms once per distinct word through a :class:`Lexicon`.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from itertools import accumulate, chain, islice, repeat

import numpy as np
import numpy.typing as npt

# Possessive quantifiers: the same words, found without keeping backtracking state.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*+|[0-9]++[A-Za-z_][A-Za-z0-9_]*+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# The same, and each newline as a match of its own (to split many words' humps at once).
_CAMEL_LINES = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|\n")

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "we",
        "you",
        "not",
        "no",
        "can",
        "do",
        "does",
        "self",
        "none",
        "true",
        "false",
        "return",
        "def",
        "class",
        "import",
        "if",
        "else",
        "elif",
        "try",
        "except",
        "pass",
        "raise",
    ]
)

_split_cache: dict[str, tuple[str, ...]] = {}


def split_identifier(word: str) -> tuple[str, ...]:
    """The word lower-cased, then its snake/camel parts when it has more than one."""
    cached = _split_cache.get(word)
    if cached is None:
        cached = _split(word)
        if len(_split_cache) < 500_000:
            _split_cache[word] = cached
    return cached


def _split(word: str) -> tuple[str, ...]:
    # Pieces between underscores stay whole unless they mix cases (`HTTPServer`, `getX`);
    # a word in one case throughout needs no look at its pieces (the common case, kept fast).
    low = word.lower()
    if word.islower() or word.isupper():
        if "_" not in word:
            return (low,)
        sub = [p for p in low.split("_") if p]
    else:
        sub = []
        for piece in word.split("_"):
            if piece.islower() or piece.isupper() or piece.isdigit():
                sub.append(piece.lower())
            elif piece:
                sub.extend(m.lower() for m in _CAMEL.findall(piece))
    if len(sub) < 2:
        return (low,)
    return (low, *[p for p in sub if len(p) > 1 and p != low])


class _WordTokens(dict[str, tuple[str, ...]]):
    """Word → its index tokens (split, stopwords and one-letter words dropped), filled on
    first sight."""

    def __missing__(self, word: str) -> tuple[str, ...]:
        toks: tuple[str, ...] = ()
        if len(word) >= 2:
            toks = tuple(t for t in _split(word) if t not in STOPWORDS)
        if len(self) < 500_000:
            self[word] = toks
        return toks


_word_tokens = _WordTokens()


def word_tokens(words: list[str]) -> list[tuple[str, ...]]:
    """``_word_tokens[w]`` for each word, computed afresh (for callers that cache by
    themselves): words in one case throughout (most of them, snake_case included) are
    split inline rather than through a call each."""
    out: list[tuple[str, ...]] = []
    add = out.append
    for w in words:
        if len(w) < 2:
            add(())
        elif w.islower() or w.isupper():
            low = w.lower()
            parts = [p for p in low.split("_") if p] if "_" in w else []
            if len(parts) < 2:
                add(() if low in STOPWORDS else (low,))
            else:  # as `_split`: the word, then its pieces of two letters or more
                add(tuple([t for t in (low, *parts) if len(t) > 1 and t not in STOPWORDS]))
        else:
            add(tuple([t for t in _split(w) if t not in STOPWORDS]))
    return out


# The words kept for later builds and updates of this process (a build numbers its own
# words once each anyway): the ones met first, most of them common. Unbounded it held every
# distinct word of the last build, ~43 MB of a 50,000-file repository's build, for good; a
# word costs ~330 bytes here and ~1 µs to split again (a one-file update meets hundreds).
_BYTE_CACHE_MAX = 1 << 14


class _ByteWordTokens(dict[bytes, tuple[str, ...]]):
    """``_word_tokens`` for a build's words (ASCII bytes), where runs of digits have none."""

    def learn(self, words: list[bytes]) -> list[tuple[str, ...]]:
        """The tokens of words not in the cache yet, found in bulk (and cached while there
        is room)."""
        if not words:
            return []
        # One decode and one lower-casing for them all (ASCII words, no newlines in them).
        text = b"\n".join(words).decode("ascii")
        stop = STOPWORDS
        # A word in one case without underscores (most of them) is its own only term, or
        # none (short, a stopword, a number): decided inline; one with underscores (snake
        # case, the next most) is itself and its pieces (`_snake`). The rest — mixed case,
        # split at humps — by `word_tokens`.
        found: list[tuple[str, ...] | None] = [
            (
                (() if len(low) < 2 or low in stop or low.isdigit() else (low,))
                if "_" not in w
                else _snake(low, low.split("_"), stop)
            )
            if w == low or w.isupper()
            else None
            for w, low in zip(text.split("\n"), text.lower().split("\n"), strict=True)
        ]
        # Mixed case without underscores (camel case, the next most): the humps of all of
        # them found by one regex pass over them joined by newlines, which it gives back as
        # separators. The rest (mixed case with underscores, rare) by `word_tokens`.
        mixed = [w.decode("ascii") for w, t in zip(words, found, strict=True) if t is None]
        camel = [w for w in mixed if "_" not in w]
        humps = " ".join(_CAMEL_LINES.findall("\n".join(camel))).lower().split("\n")
        camels = iter(list(map(_camel, map(str.lower, camel), map(str.split, humps), repeat(stop))))
        rest = iter(word_tokens([w for w in mixed if "_" in w]))
        mixed_toks = iter([next(rest) if "_" in w else next(camels) for w in mixed])
        toks = [t if t is not None else next(mixed_toks) for t in found]
        if len(self) < _BYTE_CACHE_MAX:
            self.update(zip(words, toks, strict=True))
        return toks


_byte_word_tokens = _ByteWordTokens()


def _camel(low: str, humps: list[str], stop: frozenset[str]) -> tuple[str, ...]:
    """`word_tokens` of a word in mixed case without underscores, lower-cased (``low``)
    and its humps (lower-cased ``_CAMEL`` matches)."""
    if len(humps) < 2:
        return () if low in stop else (low,)
    parts = [p for p in humps if len(p) > 1 and p != low and p not in stop]
    return tuple(parts) if low in stop else (low, *parts)


def _snake(low: str, pieces: list[str], stop: frozenset[str]) -> tuple[str, ...]:
    """`word_tokens` of a word in one case with an underscore, lower-cased (``low``) and
    split at underscores (``pieces``)."""
    if len(pieces) - pieces.count("") < 2:  # one piece: the word alone (or nothing)
        return () if len(low) < 2 or low in stop else (low,)
    return tuple([t for t in (low, *pieces) if len(t) > 1 and t not in stop])


def tokens(text: str) -> list[str]:
    return list(chain.from_iterable(map(_word_tokens.__getitem__, _WORD.findall(text))))


def term_counts(text: str) -> Counter[str]:
    # Every word occurrence maps to its cached tokens and is counted in C; the order of
    # first insertion is the same as splitting each distinct word once, in text order.
    return Counter(chain.from_iterable(map(_word_tokens.__getitem__, _WORD.findall(text))))


Ints = npt.NDArray[np.int32]
Offsets = npt.NDArray[np.int64]

# Bits of a (document, term, count) key :meth:`Lexicon.expand` sorts: an int64's, sign aside.
_KEY_BITS = 63


class _Words(dict[bytes, int]):
    """Word → id, numbering a word on first sight and noting it for :meth:`Lexicon.number`
    to split, so numbering words is one C-level ``map`` over them (``words.__getitem__``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[bytes] = []

    def __missing__(self, word: bytes) -> int:
        wid = len(self)
        self[word] = wid
        self.pending.append(word)
        return wid


class Lexicon:
    """Words (ASCII bytes, as a build's files are split) and terms numbered as first seen,
    and each word's terms, for documents counted in words: :meth:`expand` turns many of
    them into term counts at once, in numpy, and each distinct word is split into terms only
    once, in bulk. Runs of digits are words without terms: :data:`_WORD` never finds them,
    but splitting bytes at non-word characters does.

    :meth:`number` numbers many words at once and splits the new ones into terms, before
    :meth:`expand` needs them."""

    def __init__(self) -> None:
        self.words = _Words()
        self.terms: dict[str, int] = {}
        self.names: list[str] = []  # terms by id
        self._tok_ptr = array("q", [0])  # word w's terms: _tok_ids[_tok_ptr[w]:_tok_ptr[w+1]]
        self._tok_ids = array("i")

    def number(self, words: list[bytes]) -> Ints:
        """Each word's id (numbering, and splitting into terms, those not seen before): one
        C-level pass over the words, and Python work once per distinct new word only."""
        ids = np.fromiter(map(self.words.__getitem__, words), dtype=np.int32, count=len(words))
        if self.words.pending:
            self._learn(self.words.pending)
            self.words.pending = []
        return ids

    def _learn(self, new: list[bytes]) -> None:
        # Comprehensions and C-level maps rather than a call per word: a build meets tens
        # of thousands of distinct words, most of them once.
        cache = _byte_word_tokens
        # Most words were met before, in an earlier batch or build of this process.
        known: list[tuple[str, ...] | None] = list(map(cache.get, new))
        learned = iter(cache.learn([w for w, t in zip(new, known, strict=True) if t is None]))
        toks = [t if t is not None else next(learned) for t in known]
        flat = list(chain.from_iterable(toks))
        terms = self.terms
        fresh = [t for t in dict.fromkeys(flat) if t not in terms]
        terms.update(zip(fresh, range(len(self.names), len(self.names) + len(fresh)), strict=True))
        self.names.extend(fresh)
        self._tok_ids.extend(map(terms.__getitem__, flat))
        ends = accumulate(map(len, toks), initial=self._tok_ptr[-1])
        self._tok_ptr.extend(islice(ends, 1, None))  # `initial` is there already

    def count(self, doc_ptr: Offsets, words: Ints) -> tuple[Offsets, Ints, Ints]:
        """Documents given as their words' occurrences (word ids, each document's in a row)
        as (word id, count) pairs, sorted by word within each document, ready for
        :meth:`expand`: counting words before they become terms sorts far fewer items (most
        words occur many times in a document, and many have several terms)."""
        n_docs = len(doc_ptr) - 1
        width = max(len(self.words), 1)
        key = np.repeat(np.arange(n_docs, dtype=np.int64) * width, np.diff(doc_ptr))
        key += words
        key.sort()
        first = np.empty(len(key), dtype=np.bool_)
        first[:1] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        at = np.flatnonzero(first)
        uniq = key[at]
        counts = np.diff(at, append=len(key)).astype(np.int32)
        ptr = np.searchsorted(uniq, np.arange(n_docs + 1, dtype=np.int64) * width)
        return ptr.astype(np.int64), (uniq % width).astype(np.int32), counts

    def expand(self, doc_ptr: Offsets, words: Ints, counts: Ints) -> tuple[Offsets, Ints, Ints]:
        """Documents of (word id, count) pairs as documents of (term id, count) pairs,
        sorted by term within each document, each term once (``get_x`` and ``get`` both
        count towards `get`, and a word listed twice in a document counts twice)."""
        tok_ptr = np.frombuffer(self._tok_ptr, dtype=np.int64)
        tok_ids = np.frombuffer(self._tok_ids, dtype=np.int32)
        n_docs = len(doc_ptr) - 1
        starts = tok_ptr[words]
        ntok = tok_ptr[words + 1] - starts
        ends = np.zeros(len(ntok) + 1, dtype=np.int64)  # each pair's first term occurrence
        np.cumsum(ntok, out=ends[1:])
        total = int(ends[-1])
        # Where each term occurrence sits in tok_ids: its word's start plus 0, 1, … ntok-1.
        terms = tok_ids[np.arange(total, dtype=np.int64) + np.repeat(starts - ends[:-1], ntok)]
        width = max(len(self.terms), 1)
        per_doc = np.diff(ends[doc_ptr])  # term occurrences per document
        key = np.repeat(np.arange(n_docs, dtype=np.int64) * width, per_doc) + terms
        tfs = np.repeat(counts, ntok)
        # Sorted, then each run of one (document, term) summed: no inverse index to build.
        # The counts ride in the keys' low bits, so one sort in place orders both (a third
        # cheaper than an argsort and two gathers); by argsort if they would not fit.
        bits = int(tfs.max()).bit_length() if total else 0
        if (n_docs * width).bit_length() + bits <= _KEY_BITS:
            key <<= bits
            key |= tfs
            key.sort()
            tfs = key & ((1 << bits) - 1)
            key >>= bits
        else:
            order = np.argsort(key)
            key, tfs = key[order], tfs[order]
        first = np.ones(total, dtype=np.bool_)
        np.not_equal(key[1:], key[:-1], out=first[1:])
        at = np.flatnonzero(first)
        uniq = key[at]
        tfs = np.add.reduceat(tfs, at) if total else tfs
        ptr = np.searchsorted(uniq // width, np.arange(n_docs + 1, dtype=np.int64))
        return ptr.astype(np.int64), (uniq % width).astype(np.int32), tfs.astype(np.int32)


def terms_of_words(words: Counter[str]) -> Counter[str]:
    """Term counts of a document given as word counts (what :meth:`Lexicon.expand` computes
    for many documents at once)."""
    out: Counter[str] = Counter()
    for word, n in words.items():
        if word.isdigit():  # a number: no terms (see `Lexicon`)
            continue
        for tok in _word_tokens[word]:
            out[tok] += n
    return out
