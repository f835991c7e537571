"""Tokenising code and prose alike, and an incremental BM25 index.

Identifiers are kept whole *and* split into their parts (``get_total_irradiance`` →
``get_total_irradiance``, ``get``, ``total``, ``irradiance``; ``PixelData`` → ``pixeldata``,
``pixel``, ``data``), so prose words meet code names. The index is a plain inverted index
(term → {doc: tf}) so one document can be removed and re-added in microseconds, which is what
makes re-indexing one changed file cheap; ``bm25s`` would rebuild its whole matrix instead.
Scoring turns each query term's postings into numpy arrays once and caches them until a
document holding that term changes.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from itertools import chain

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

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
    if cached is not None:
        return cached
    low = word.lower()
    parts: list[str] = [low]
    pieces = [p for p in word.split("_") if p]
    sub: list[str] = []
    for piece in pieces:
        if piece.islower() or piece.isupper() or piece.isdigit():
            sub.append(piece.lower())
        else:
            sub.extend(m.lower() for m in _CAMEL.findall(piece))
    if len(sub) > 1:
        parts.extend(p for p in sub if len(p) > 1 and p != low)
    result = tuple(parts)
    if len(_split_cache) < 500_000:
        _split_cache[word] = result
    return result


class _WordTokens(dict[str, tuple[str, ...]]):
    """Word → its index tokens (split, stopwords and one-letter words dropped), filled on
    first sight, so counting is a C-level pass over the words of a text."""

    def __missing__(self, word: str) -> tuple[str, ...]:
        toks: tuple[str, ...] = ()
        if len(word) >= 2:
            toks = tuple(t for t in split_identifier(word) if t not in STOPWORDS)
        if len(self) < 500_000:
            self[word] = toks
        return toks


_word_tokens = _WordTokens()


def tokens(text: str) -> list[str]:
    return list(chain.from_iterable(map(_word_tokens.__getitem__, _WORD.findall(text))))


def term_counts(text: str) -> Counter[str]:
    # Every word occurrence maps to its cached tokens and is counted in C; the order of
    # first insertion is the same as splitting each distinct word once, in text order.
    return Counter(chain.from_iterable(map(_word_tokens.__getitem__, _WORD.findall(text))))


class BM25:
    """An inverted index over documents keyed by string, scored with BM25 (k1=1.2, b=0.75)."""

    k1 = 1.2
    b = 0.75

    def __init__(self) -> None:
        self.postings: dict[str, dict[int, int]] = {}
        self.doc_ids: dict[str, int] = {}
        self.doc_keys: list[str | None] = []
        self.doc_len: list[int] = []
        self.doc_terms: list[tuple[str, ...]] = []
        self.total_len = 0
        self.live = 0
        self._arrays: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def add(self, key: str, counts: Counter[str]) -> None:
        if key in self.doc_ids:
            self.remove(key)
        doc = len(self.doc_keys)
        self.doc_ids[key] = doc
        self.doc_keys.append(key)
        length = sum(counts.values())
        self.doc_len.append(length)
        # One string object per term, whichever process counted it: a parallel build's
        # unpickled terms would otherwise be stored, and saved, once per document.
        terms = tuple(map(sys.intern, counts))
        self.doc_terms.append(terms)
        self.total_len += length
        self.live += 1
        postings = self.postings
        arrays = self._arrays
        for term, tf in zip(terms, counts.values(), strict=True):
            try:
                postings[term][doc] = tf
            except KeyError:
                postings[term] = {doc: tf}
        if arrays:
            for term in counts:
                arrays.pop(term, None)

    def remove(self, key: str) -> None:
        doc = self.doc_ids.pop(key, None)
        if doc is None:
            return
        for term in self.doc_terms[doc]:
            plist = self.postings.get(term)
            if plist is not None:
                plist.pop(doc, None)
                if not plist:
                    del self.postings[term]
            self._arrays.pop(term, None)
        self.total_len -= self.doc_len[doc]
        self.live -= 1
        self.doc_keys[doc] = None
        self.doc_len[doc] = 0
        self.doc_terms[doc] = ()

    def df(self, term: str) -> int:
        plist = self.postings.get(term)
        return len(plist) if plist else 0

    def idf(self, term: str) -> float:
        n = self.df(term)
        return math.log(1.0 + (self.live - n + 0.5) / (n + 0.5))

    def _posting_arrays(
        self, term: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
        cached = self._arrays.get(term)
        if cached is not None:
            return cached
        plist = self.postings.get(term)
        if not plist:
            return None
        docs = np.fromiter(plist.keys(), dtype=np.int64, count=len(plist))
        tfs = np.fromiter(plist.values(), dtype=np.float64, count=len(plist))
        self._arrays[term] = (docs, tfs)
        return docs, tfs

    def scores(self, query: dict[str, float]) -> npt.NDArray[np.float64]:
        """BM25 score per document id (0 for removed ids) for weighted query terms."""
        out = np.zeros(len(self.doc_keys), dtype=np.float64)
        if not self.live:
            return out
        avgdl = max(self.total_len / self.live, 1.0)
        lens = np.asarray(self.doc_len, dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * lens / avgdl)
        for term, weight in query.items():
            arrays = self._posting_arrays(term)
            if arrays is None:
                continue
            docs, tfs = arrays
            idf = self.idf(term)
            out[docs] += weight * idf * tfs * (self.k1 + 1.0) / (tfs + norm[docs])
        return out

    def top(self, query: dict[str, float], limit: int) -> list[tuple[str, float]]:
        scores = self.scores(query)
        if not len(scores):
            return []
        k = min(limit, len(scores))
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx])]
        out: list[tuple[str, float]] = []
        for i in idx:
            key = self.doc_keys[int(i)]
            if key is not None and scores[i] > 0:
                out.append((key, float(scores[i])))
        return out
