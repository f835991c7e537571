"""BM25: a bulk-built index and one built a document at a time score alike, through removals."""

from __future__ import annotations

import numpy as np

from errands.index.bm25 import BM25, Docs, term_major
from errands.index.keys import Keys

DOCS: dict[str, dict[str, int]] = {
    "a.py": {"price": 3, "discount": 1},
    "empty-middle": {},
    "b.py": {"price": 1, "cart": 2},
    "c.py": {"cart": 1, "stock": 4, "price": 1},
    "empty-last": {},
}
QUERY = {"price": 1.0, "cart": 0.5, "stock": 2.0, "nowhere": 1.0}


def _bulk(docs: dict[str, dict[str, int]]) -> BM25:
    vocab: dict[str, int] = {}
    ptr, terms, tfs = [0], [], []
    for counts in docs.values():
        for term, tf in counts.items():
            terms.append(vocab.setdefault(term, len(vocab)))
            tfs.append(tf)
        ptr.append(len(terms))
    return BM25.bulk(
        list(docs),
        vocab,
        np.array(ptr, dtype=np.int64),
        np.array(terms, dtype=np.int32),
        np.array(tfs, dtype=np.int32),
    )


def _one_by_one(docs: dict[str, dict[str, int]]) -> BM25:
    index = BM25()
    for key, counts in docs.items():
        index.add(key, counts)
    return index


def _by_key(index: BM25, query: dict[str, float]) -> dict[str, float]:
    scores = index.scores(query)
    return {k: round(float(scores[i]), 9) for i, k in enumerate(index.doc_keys) if k is not None}


def test_bulk_equals_one_by_one_including_empty_documents() -> None:
    bulk, single = _bulk(DOCS), _one_by_one(DOCS)
    assert bulk.doc_len == single.doc_len == [4, 0, 3, 6, 0]
    assert _by_key(bulk, QUERY) == _by_key(single, QUERY)
    assert bulk.top(QUERY, 2) == single.top(QUERY, 2)
    assert bulk.postings("price") == {0: 3, 2: 1, 3: 1}
    assert bulk.idf("cart") == single.idf("cart")


def test_remove_and_re_add_over_a_bulk_base() -> None:
    bulk = _bulk(DOCS)
    bulk.remove("c.py")
    bulk.add("b.py", {"stock": 1, "shipping": 2})  # replaces the base document
    bulk.add("d.py", {"price": 2})
    expected = _one_by_one(
        {
            "a.py": DOCS["a.py"],
            "b.py": {"stock": 1, "shipping": 2},
            "d.py": {"price": 2},
            "empty-middle": {},
            "empty-last": {},
        }
    )
    query = {**QUERY, "shipping": 1.0}
    assert _by_key(bulk, query) == _by_key(expected, query)
    assert bulk.postings("price") == {0: 3, 6: 2}  # b.py is 5 now, d.py 6
    assert bulk.df_of("cart") == 0
    assert bulk.live == 5


def test_scores_follow_changes_made_after_a_query() -> None:
    """The length term a query makes is kept for the next: each change after it (an add,
    a removal, a fork's own add) must be scored as by an index built with it."""
    bulk = _bulk(DOCS)
    _by_key(bulk, QUERY)
    fork = bulk.fork()
    bulk.add("d.py", {"price": 40})  # a long document: every other one is shorter now
    assert _by_key(bulk, QUERY) == _by_key(_one_by_one({**DOCS, "d.py": {"price": 40}}), QUERY)
    bulk.remove("a.py")
    rest = {k: v for k, v in DOCS.items() if k != "a.py"}
    assert _by_key(bulk, QUERY) == _by_key(_one_by_one({**rest, "d.py": {"price": 40}}), QUERY)
    # The fork queried before either change and shares nothing of them.
    assert _by_key(fork, QUERY) == _by_key(_one_by_one(DOCS), QUERY)
    fork.add("e.py", {"cart": 30})
    assert _by_key(fork, QUERY) == _by_key(_one_by_one({**DOCS, "e.py": {"cart": 30}}), QUERY)


def test_compact_keeps_scores_and_drops_removed_documents() -> None:
    index = _bulk(DOCS)
    index.remove("a.py")
    index.add("c.py", {"price": 5, "stock": 1})
    index.add("e.py", {"discount": 2})
    compact = index.compact()
    assert compact.doc_keys == ["empty-middle", "b.py", "empty-last", "c.py", "e.py"]
    assert _by_key(compact, QUERY | {"discount": 1.0}) == _by_key(index, QUERY | {"discount": 1.0})
    assert compact.postings("price") == {1: 1, 3: 5}
    assert compact.live == index.live and compact.total_len == index.total_len


def test_forks_adding_new_terms_each_keep_their_own_terms_by_id() -> None:
    """Forks share the terms-by-id list (terms only ever get new ids): two forks of one
    index, and the index itself, each adding a term of its own under the same new id."""
    index = _bulk(DOCS)
    index.term_names()  # made, so forks share it
    left, right = index.fork(), index.fork()
    left.add("d.py", {"refund": 2, "price": 1})
    right.add("d.py", {"invoice": 1})
    index.add("e.py", {"ledger": 3})
    assert left.document("d.py") == {"refund": 2, "price": 1}
    assert right.document("d.py") == {"invoice": 1}
    assert index.document("e.py") == {"ledger": 3} and index.document("d.py") == {}
    for bm25 in (index, left, right):
        assert bm25.term_names()[: len(bm25.df)] == sorted(bm25.vocab, key=bm25.vocab.__getitem__)
    assert left.fork().document("d.py") == {"refund": 2, "price": 1}


def test_term_major_sorts_packed_keys_as_its_fallback_does() -> None:
    """The packed sort a bulk build uses and the order it falls back on when the keys do
    not fit give the same postings, in 16 bits and in 32 (ids past 65,536, large counts)."""
    rng = np.random.default_rng(23)
    for n_docs, n_terms, max_tf in ((5, 7, 3), (70_000, 300, 70_000), (40, 80_000, 2)):
        sizes = rng.integers(0, 6, n_docs)
        ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        # Distinct terms within each document, as the build gives them.
        terms = np.concatenate([rng.choice(n_terms, int(k), replace=False) for k in sizes]).astype(
            np.int32
        )
        tfs = rng.integers(1, max_tf + 1, len(terms)).astype(np.int32)
        packed = term_major(Docs(Keys(), ptr, terms, tfs), n_terms)
        fallback = term_major(Docs(Keys(), ptr, terms, tfs), n_terms, key_bits=0)
        for got, want in zip(packed, fallback, strict=True):
            assert got.dtype == want.dtype
            assert np.array_equal(got, want)
        # And what they are: each term's (document, tf) pairs, documents ascending.
        doc_of = np.repeat(np.arange(n_docs), sizes)
        expected = sorted(zip(terms.tolist(), doc_of.tolist(), tfs.tolist(), strict=True))
        assert packed[0].tolist() == [d for _t, d, _f in expected]
        assert packed[1].tolist() == [f for _t, _d, f in expected]
