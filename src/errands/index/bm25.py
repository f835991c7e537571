"""An incremental BM25 index: a bulk-built base in compressed sparse arrays, plus an overlay.

A cold build hands every document over at once (:meth:`BM25.bulk`): the postings become three
numpy arrays (term → a slice of doc ids and term frequencies), built by sorting rather than a
dict insert per (document, term) pair, and they pickle as raw buffers. Documents added later
(:meth:`BM25.add`, one changed file at a time) go to a small dict overlay; removing a document
only marks it dead and lowers the document frequencies of its terms, so re-indexing one file
stays a matter of microseconds. Scores are the same whichever way a document came in.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from errands.index import packed
from errands.index.keys import Keys
from errands.index.overlay import Overlay

Ints = npt.NDArray[np.int32]
Floats = npt.NDArray[np.float64]
# Base arrays hold ids and counts in 16 bits when they fit (most repositories' symbol
# chunks, every count), which makes the saved index much smaller.
Small = npt.NDArray[np.uint16] | Ints


def _narrow(values: npt.NDArray[np.integer], bound: int) -> Small:
    """``values`` (all below ``bound``) as 16-bit integers when they fit."""
    # Uncopied when it already is the type kept.
    if bound <= 1 << 16:
        return values.astype(np.uint16, copy=False)
    return values.astype(np.int32, copy=False)


def _low_bits(values: npt.NDArray[np.int64], bits: int, bound: int) -> Small:
    """The low ``bits`` of each of ``values`` (non-negative), all below ``bound``, as
    :func:`_narrow` types them."""
    # (The casts wrap: they keep the low 16 or 32 bits.)
    low: Small = values.astype(np.uint16) if bound <= 1 << 16 else values.astype(np.int32)
    low &= (1 << bits) - 1
    return low


# Bits of the int64 key :func:`term_major` sorts by, sign aside.
_KEY_BITS = 63


@dataclass(slots=True)
class Docs:
    """Documents as (term id, count) pairs: document i is ``[ptr[i]:ptr[i + 1]]``."""

    keys: Keys
    ptr: npt.NDArray[np.int64]
    terms: Ints
    tfs: Ints

    def counts(self, i: int, names: Sequence[str]) -> dict[str, int]:
        """Document ``i`` as term → count, ``names`` being the terms by id."""
        lo, hi = int(self.ptr[i]), int(self.ptr[i + 1])
        terms = [names[t] for t in self.terms[lo:hi].tolist()]
        return dict(zip(terms, self.tfs[lo:hi].tolist(), strict=True))

    def take_tfs(self) -> Ints:
        """The counts, which this object lets go of: whoever takes them frees them once
        used (tens of MB at 50,000 files)."""
        tfs, self.tfs = self.tfs, np.zeros(0, dtype=np.int32)
        return tfs


def term_major(docs: Docs, n_terms: int, key_bits: int = _KEY_BITS) -> tuple[Small, Small]:
    """Document-major (term id, tf) pairs as term-major postings: the documents and tfs
    ordered by term, each term's documents ascending (both narrowed, see :func:`_narrow`).
    Takes ``docs``' counts (:meth:`Docs.take_tfs`).

    (Term, document, tf) are packed in one int64 each and sorted in place: one array of the
    postings' length, where an argsort and the gathers through it made four (~150 MB at
    50,000 files); the counts are let go of once packed. Only when they do not fit in
    ``key_bits`` by the order of the pairs."""
    doc_ptr, terms, tfs = docs.ptr, docs.terms, docs.take_tfs()
    n_docs = len(doc_ptr) - 1
    max_tf = int(tfs.max(initial=0))
    doc_bits, tf_bits = max(n_docs - 1, 0).bit_length(), max_tf.bit_length()
    if max(n_terms - 1, 0).bit_length() + doc_bits + tf_bits <= key_bits:
        key = terms.astype(np.int64)
        key <<= doc_bits
        key |= np.repeat(np.arange(n_docs, dtype=np.int32), np.diff(doc_ptr))
        key <<= tf_bits
        key |= tfs
        del tfs
        key.sort()
        # Each field taken by a cast that keeps the low bits, then masked in place: no
        # int64 temporary of the postings' length.
        out_tfs = _low_bits(key, tf_bits, max_tf + 1)
        key >>= tf_bits
        return _low_bits(key, doc_bits, n_docs), out_tfs
    # (Each term above its pair's position, sorted: several times faster than numpy's
    # stable argsort, a merge sort.)
    order = terms.astype(np.int64) << 32
    order |= np.arange(len(terms), dtype=np.int64)
    order.sort()
    order &= 0xFFFFFFFF
    positions = np.repeat(np.arange(n_docs, dtype=np.int32), np.diff(doc_ptr))
    out_docs = _narrow(positions[order], n_docs)
    del positions
    return out_docs, _narrow(tfs[order], max_tf + 1)


K1 = 1.2
B = 0.75


def idf(live: int, df: int) -> float:
    return math.log(1.0 + (live - df + 0.5) / (df + 0.5))


def length_norm(lengths: Floats, total_len: int, live: int) -> Floats:
    """Each document's ``k1 * (1 - b + b * length / average length)``."""
    avgdl = max(total_len / live, 1.0)
    norm: Floats = K1 * (1.0 - B + B * lengths / avgdl)
    return norm


def add_term(out: Floats, norm: Floats, weight: float, docs: Small, tfs: Floats) -> None:
    """Add one query term's part (``weight`` already times its idf) for its postings."""
    out[docs] += weight * tfs * (K1 + 1.0) / (tfs + norm[docs])


RankOf = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.integer[Any]]]


def best_of(
    scores: Floats,
    limit: int,
    key_of: Callable[[list[int]], list[str | None]],
    rank_of: RankOf | None = None,
    base_size: int = 0,
) -> list[tuple[str, float]]:
    """The ``limit`` documents scoring most (above 0) as (key, score), ties in key order:
    which documents come out depends on their scores and keys only, never on their ids
    (an updated index numbers documents differently from a fresh one).

    ``rank_of`` gives ids below ``base_size`` (a build's documents, whose keys never change)
    integers in their keys' order (:meth:`Keys.rank_of <errands.index.keys.Keys.rank_of>`):
    of those, only the ``limit`` first by score then that order can make the answer, so only
    theirs and the later documents' keys are read — a one-word text ties hundreds of
    thousands of chunks at the cut, and reading each one's key took seconds. The answer is
    still the sort of the keys read, so it is the same with or without ``rank_of`` (every
    document scoring above 0 is live and has a key)."""
    pos = np.flatnonzero(scores > 0)
    if limit <= 0 or not len(pos):
        return []
    if len(pos) > limit:
        # Everything scoring at least the limit-th best, so ties at the cut are all in.
        cut = np.partition(scores[pos], len(pos) - limit)[len(pos) - limit]
        pos = pos[scores[pos] >= cut]
    if rank_of is not None and len(pos) > limit:
        base = pos[pos < base_size]
        if len(base) > limit:
            # By score, then key: a base document past the first ``limit`` has that many
            # before it whatever the other documents' keys, so it cannot make the answer.
            first = np.lexsort((rank_of(base), -scores[base]))[:limit]
            pos = np.concatenate((base[first], pos[pos >= base_size]))
    ids = pos.tolist()
    pairs = [(k, float(scores[i])) for k, i in zip(key_of(ids), ids, strict=True)]
    ranked = sorted(((k, v) for k, v in pairs if k is not None), key=lambda p: (-p[1], p[0]))
    return ranked[:limit]


@dataclass(frozen=True, slots=True)
class Exported:
    """An index's postings with documents numbered in a given order (see
    :meth:`BM25.export`): term ``terms[t]``'s documents are ``docs[ptr[t]:ptr[t + 1]]``
    (ascending), with ``tfs``; the terms in no particular order."""

    terms: list[str]
    ptr: npt.NDArray[np.int64]
    docs: Small
    tfs: Small
    lengths: Ints


class BM25:
    """Documents keyed by string, scored with BM25 (k1=1.2, b=0.75)."""

    k1 = K1
    b = B

    def __init__(self) -> None:
        self.vocab: Overlay[str, int] = Overlay()  # term → id (a fork shares the base)
        self.df: list[int] = []  # live documents holding each term
        self.doc_keys = Keys()  # by id (None: removed), and ids by key
        self.doc_len: list[int] = []
        self.total_len = 0
        self.live = 0
        # Base postings: term t's documents are _docs[_ptr[t]:_ptr[t + 1]] (ascending), and a
        # base document d's terms _doc_terms[_doc_ptr[d]:_doc_ptr[d + 1]] (for removal).
        self._ptr: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._docs: Small = np.zeros(0, dtype=np.int32)
        self._tfs: Small = np.zeros(0, dtype=np.int32)
        self._doc_ptr: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._doc_terms: Small = np.zeros(0, dtype=np.int32)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        # Overlay: documents added after the bulk build.
        self._extra: dict[int, dict[int, int]] = {}  # term id → {doc: tf}
        self._extra_terms: dict[int, tuple[int, ...]] = {}  # doc → term ids
        self._arrays: dict[int, tuple[Ints, Floats]] = {}  # overlay postings as arrays
        # Terms by id, when asked for (not saved); append-only, so shared by forks: see
        # :meth:`term_names`.
        self._names: list[str] | None = None
        # Each document's length term (:func:`length_norm`), made by the first query after a
        # change: from the lengths list it took ~30 ms a query at 50,000 files.
        self._norm: Floats | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        # The vocabulary as its terms by id (ids are 0, 1, … as terms came), joined: as a
        # dict its strings made ~20 MB of the pickle's memo at 50,000 files.
        state["vocab"] = packed.join(self.term_names()[: len(self.df)])
        state["_arrays"] = {}
        state["_names"] = None
        state["_norm"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._norm = None
        names = packed.split(*state["vocab"])
        self.vocab = Overlay(dict(zip(names, range(len(names)), strict=True)))
        self._names = names

    def share_vocab(self, other: BM25) -> None:
        """Take ``other``'s vocabulary (its base, shared) when the two number the same
        terms alike, as a cold build's two indexes do: one copy in memory, not two."""
        if self.term_names() == other.term_names():
            self.vocab = Overlay(other.vocab.flat())
            # A list of its own (of the same strings): the two add different terms after
            # updates, and one finding the list longer than its terms copies it each time.
            self._names = list(other.term_names())

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def bulk(
        cls,
        keys: Sequence[str] | Keys,
        vocab: Mapping[str, int],
        doc_ptr: npt.NDArray[np.int64],
        terms: Ints,
        tfs: Ints,
    ) -> BM25:
        """An index of ``keys`` in order, document ``i`` holding the (term id, tf) pairs
        ``terms[doc_ptr[i]:doc_ptr[i + 1]]``, ``tfs[...]``, each term at most once per
        document; term ids index ``vocab``."""
        return cls.of_docs(
            Docs(keys if isinstance(keys, Keys) else Keys(keys), doc_ptr, terms, tfs), vocab
        )

    @classmethod
    def of_docs(cls, docs: Docs, vocab: Mapping[str, int]) -> BM25:
        """An index of ``docs`` (see :meth:`bulk`), taking their counts: once they are
        packed into the postings' sort keys only this index's arrays hold them."""
        index = cls()
        n_terms = len(vocab)
        doc_ptr, terms, tfs = docs.ptr, docs.terms, docs.tfs
        n_docs = len(doc_ptr) - 1
        # (An overlay's base is never changed, so it is shared rather than copied.)
        index.vocab = Overlay(vocab.flat() if isinstance(vocab, Overlay) else dict(vocab))
        index.doc_keys = docs.keys
        # Temporaries go as soon as used, and arrays are kept uncopied where they can be:
        # on a large repository each is tens of MB.
        starts = doc_ptr[:-1]
        held = doc_ptr[1:] > starts  # (reduceat would give an empty document a count)
        lengths = np.zeros(n_docs, dtype=np.int64)
        if len(tfs):
            lengths[held] = np.add.reduceat(tfs, starts[held], dtype=np.int64)
        del held, tfs
        index.doc_len = lengths.tolist()
        index.total_len = int(lengths.sum())
        del lengths
        index.live = n_docs
        index._doc_ptr = doc_ptr.astype(np.int64, copy=False)
        index._doc_terms = _narrow(terms, n_terms)
        index._alive = np.ones(n_docs, dtype=np.bool_)
        counts = np.bincount(terms, minlength=n_terms)
        index._ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        index.df = counts.tolist()
        del counts
        index._docs, index._tfs = term_major(docs, n_terms)
        return index

    @property
    def fragmented(self) -> bool:
        """Whether removed documents and the overlay have grown to a quarter of the index:
        time to :meth:`compact` (scores and size suffer, not correctness)."""
        return len(self.doc_keys) - self.live + len(self._extra_terms) > max(self.live // 4, 64)

    def compact(self) -> BM25:
        """The live documents, in the same order, as one bulk-built index (new doc ids)."""
        # Base postings back to (doc, term, tf) rows, removed documents dropped…
        terms = np.repeat(np.arange(len(self._ptr) - 1, dtype=np.int32), np.diff(self._ptr))
        keep = self._alive[self._docs]
        docs, terms, tfs = self._docs[keep], terms[keep], self._tfs[keep]
        # … and the overlay's, then all of them ordered by document and term.
        rows = [(d, t, tf) for t, plist in self._extra.items() for d, tf in plist.items()]
        if rows:
            extra = np.array(rows, dtype=np.int64).reshape(-1, 3)
            docs = np.concatenate([docs, extra[:, 0].astype(np.int32)])
            terms = np.concatenate([terms, extra[:, 1].astype(np.int32)])
            tfs = np.concatenate([tfs, extra[:, 2].astype(np.int32)])
        order = np.lexsort((terms, docs))
        keys = [key for key in self.doc_keys if key is not None]
        renumber = np.cumsum(self._alive) - 1  # old id → new id, for live documents
        new_docs = renumber[docs[order]]
        ptr = np.searchsorted(new_docs, np.arange(len(keys) + 1, dtype=np.int64))
        return BM25.bulk(
            keys, self.vocab, ptr.astype(np.int64), terms[order], tfs[order].astype(np.int32)
        )

    def fork(self) -> BM25:
        """A copy to change (:meth:`add`, :meth:`remove`) apart from this one, which stays
        as it is for whoever reads it: the base postings, never changed in place, shared;
        the vocabulary an :class:`Overlay` (its base shared) and the terms by id shared
        (both only ever grow, see :meth:`term_names`); the statistics, the liveness flags
        and the overlay copied. Once removed documents
        and the overlay have grown to a quarter of the index, a compacted copy instead (a
        process forking its index update after update would otherwise keep every update's
        leftovers: rarely, as it takes thousands of one-file updates)."""
        if self.fragmented:
            return self.compact()
        other = BM25.__new__(BM25)
        other.__dict__.update(self.__dict__)
        other.vocab = self.vocab.fork()
        other.df = list(self.df)
        other.doc_keys = self.doc_keys.fork()
        other.doc_len = list(self.doc_len)
        other._alive = self._alive.copy()
        other._extra = {tid: dict(plist) for tid, plist in self._extra.items()}
        other._extra_terms = dict(self._extra_terms)
        other._arrays = dict(self._arrays)
        return other

    def export(self, keys: Sequence[str]) -> Exported:
        """The live documents renumbered in the order of ``keys`` (every live key once),
        terms no live document holds left out (for the query file).

        A bulk-built index whose documents are already in that order (a cold build's) gives
        its own arrays, uncopied: on a large repository a renumbering's temporaries are
        hundreds of megabytes."""
        same = not self._extra and self.live == len(self.doc_keys) == len(keys)
        if same and all(map(operator.eq, self.doc_keys, keys)):
            held = np.flatnonzero(np.diff(self._ptr))
            names = self.term_names()
            return Exported(
                list(map(names.__getitem__, array("q", held.tobytes()))),
                np.concatenate((self._ptr[held], self._ptr[-1:])),
                self._docs,
                self._tfs,
                np.asarray(self.doc_len, dtype=np.int32),
            )
        base = self.compact() if self._extra or self.live < len(self.doc_keys) else self
        position = {key: i for i, key in enumerate(keys)}
        if len(position) != base.live or len(keys) != base.live:
            raise ValueError("export needs every live document's key exactly once")
        new_id = np.fromiter(
            (position[k] for k in base.doc_keys if k is not None), np.int64, base.live
        )
        vocab = base.vocab.flat()
        names = sorted(t for t, tid in vocab.items() if base.df[tid])
        rank = np.full(len(base._ptr) - 1, -1, dtype=np.int64)
        rank[np.fromiter((vocab[t] for t in names), np.int64, len(names))] = np.arange(len(names))
        terms = rank[np.repeat(np.arange(len(base._ptr) - 1), np.diff(base._ptr))]
        docs = new_id[base._docs.astype(np.int64)]
        order = np.lexsort((docs, terms))
        ptr = np.searchsorted(terms[order], np.arange(len(names) + 1))
        lengths = np.zeros(base.live, dtype=np.int32)
        lengths[new_id] = base.doc_len
        return Exported(
            names,
            ptr.astype(np.int64),
            docs[order].astype(np.int32),
            base._tfs[order].astype(np.int32),
            lengths,
        )

    def document(self, key: str) -> dict[str, int]:
        """A live document's terms and their counts (empty for an unknown key)."""
        doc = self.doc_keys.id_of(key)
        if doc is None:
            return {}
        names = self.term_names()
        return {names[t]: self._tf(t, doc) for t in self._terms_of(doc)}

    def term_names(self) -> list[str]:
        """Terms by id: made on first use, then kept (and extended by :meth:`add`), so
        saving an update's few documents does not walk the whole vocabulary each time.

        The list may run past this index's terms: ids never change, so forks share it (a
        copy each took milliseconds on a large repository), and the first to add a term
        appends it; another, finding the list longer than its own terms, copies its part
        before adding (:meth:`add`). Only ids below ``len(self.df)`` are this index's."""
        if self._names is None or len(self._names) < len(self.df):
            # Terms are numbered as they come, so the vocabulary's order is nearly always
            # theirs (checked in C); otherwise they are placed one by one.
            n = len(self.df)
            vocab = self.vocab.flat()
            names = list(vocab)
            ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(names))
            if len(names) != n or not np.array_equal(ids, np.arange(n)):
                names = [""] * n
                for term, tid in vocab.items():
                    names[tid] = term
            self._names = names
        return self._names

    def add(self, key: str, counts: Mapping[str, int]) -> None:
        self.remove(key)
        doc = self.doc_keys.append(key)
        length = sum(counts.values())
        self._norm = None
        self.doc_len.append(length)
        self.total_len += length
        self.live += 1
        self._alive = np.append(self._alive, True)
        vocab, df, extra, arrays = self.vocab, self.df, self._extra, self._arrays
        ids: list[int] = []
        for term, tf in counts.items():
            tid = vocab.get(term)
            if tid is None:
                tid = vocab[term] = len(df)
                df.append(0)
                names = self._names
                if names is not None:
                    if len(names) != tid:  # (another fork of this index added terms)
                        names = self._names = names[:tid]
                    names.append(term)
            ids.append(tid)
            df[tid] += 1
            extra.setdefault(tid, {})[doc] = tf
            arrays.pop(tid, None)
        self._extra_terms[doc] = tuple(ids)

    def remove(self, key: str) -> None:
        doc = self.doc_keys.id_of(key)
        if doc is None:
            return
        term_ids = self._terms_of(doc)
        if doc in self._extra_terms:
            del self._extra_terms[doc]
            for tid in term_ids:
                plist = self._extra.get(tid)
                if plist is not None:
                    plist.pop(doc, None)
                    if not plist:
                        del self._extra[tid]
                self._arrays.pop(tid, None)
        for tid in term_ids:
            self.df[tid] -= 1
        self._norm = None
        self.total_len -= self.doc_len[doc]
        self.live -= 1
        self.doc_keys.remove(doc)
        self.doc_len[doc] = 0
        self._alive[doc] = False

    # ---- reading --------------------------------------------------------------------------

    def df_of(self, term: str) -> int:
        tid = self.vocab.get(term)
        return 0 if tid is None else self.df[tid]

    def idf(self, term: str) -> float:
        return idf(self.live, self.df_of(term))

    def postings(self, term: str) -> dict[int, int]:
        """Live documents holding ``term`` and its frequency in each (for tests and tools)."""
        tid = self.vocab.get(term)
        if tid is None:
            return {}
        out: dict[int, int] = {}
        for docs, tfs in self._parts(tid):
            for doc, tf in zip(docs.tolist(), tfs.tolist(), strict=True):
                if self._alive[doc]:
                    out[doc] = int(tf)
        return out

    def _parts(self, tid: int) -> list[tuple[Small, Floats]]:
        parts: list[tuple[Small, Floats]] = []
        if tid < len(self._ptr) - 1:
            lo, hi = self._ptr[tid], self._ptr[tid + 1]
            if hi > lo:
                parts.append((self._docs[lo:hi], self._tfs[lo:hi].astype(np.float64)))
        plist = self._extra.get(tid)
        if plist:
            cached = self._arrays.get(tid)
            if cached is None:
                docs = np.fromiter(plist.keys(), dtype=np.int32, count=len(plist))
                tfs = np.fromiter(plist.values(), dtype=np.float64, count=len(plist))
                cached = self._arrays[tid] = (docs, tfs)
            parts.append(cached)
        return parts

    def scores(self, query: Mapping[str, float]) -> Floats:
        """BM25 score per document id (0 for removed ids) for weighted query terms."""
        out = np.zeros(len(self.doc_keys), dtype=np.float64)
        if not self.live:
            return out
        norm = self._norm
        if norm is None:  # (never changed in place: forks share it until either changes)
            lengths = np.asarray(self.doc_len, dtype=np.float64)
            norm = self._norm = length_norm(lengths, self.total_len, self.live)
        for term, weight in query.items():
            tid = self.vocab.get(term)
            if tid is None or not self.df[tid]:
                continue
            scaled = weight * idf(self.live, self.df[tid])
            for docs, tfs in self._parts(tid):
                add_term(out, norm, scaled, docs, tfs)
        if self.live < len(out):
            out[~self._alive] = 0.0  # a removed document keeps its base postings
        return out

    def top(self, query: Mapping[str, float], limit: int) -> list[tuple[str, float]]:
        return self.best(self.scores(query), limit)

    def best(self, scores: Floats, limit: int) -> list[tuple[str, float]]:
        """See :func:`best_of`."""
        keys = self.doc_keys
        return best_of(
            scores, limit, lambda ids: [keys[i] for i in ids], keys.rank_of, keys.base_size
        )

    def documents(self) -> dict[str, dict[str, int]]:
        """Every live document as term → count (to compare indexes; not for queries)."""
        names = {tid: term for term, tid in self.vocab.items()}
        out: dict[str, dict[str, int]] = {}
        for doc, key in enumerate(self.doc_keys):
            if key is not None:
                out[key] = {names[t]: self._tf(t, doc) for t in self._terms_of(doc)}
        return out

    def _terms_of(self, doc: int) -> Sequence[int]:
        """A document's term ids, wherever it is (the base or the overlay)."""
        if doc < len(self._doc_ptr) - 1:
            lo, hi = self._doc_ptr[doc], self._doc_ptr[doc + 1]
            ids: list[int] = self._doc_terms[lo:hi].tolist()
            return ids
        return self._extra_terms.get(doc, ())

    def _tf(self, tid: int, doc: int) -> int:
        if doc in self._extra.get(tid, {}):
            return self._extra[tid][doc]
        lo, hi = int(self._ptr[tid]), int(self._ptr[tid + 1])
        at = lo + int(np.searchsorted(self._docs[lo:hi], doc))
        return int(self._tfs[at])

    def statistics(self) -> dict[str, object]:
        """What scores depend on besides the postings: live documents, their lengths, and
        each term's document frequency (terms no live document holds left out)."""
        return {
            "live": self.live,
            "total_len": self.total_len,
            "doc_len": {k: n for k, n in zip(self.doc_keys, self.doc_len, strict=True) if k},
            "df": {term: self.df[tid] for term, tid in self.vocab.items() if self.df[tid]},
        }
