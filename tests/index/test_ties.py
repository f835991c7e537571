"""BM25 breaks ties in key order (``path\\0i`` for a symbol chunk: "10" before "2"), and a
one-word text can tie most of a repository's chunks: the answer is still exactly key order,
on the index and from the query file, fresh or updated, while only the keys that can make
the answer are read.

Work is asserted by count, never by time: the machines these run on are shared."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from errands.index import CodeIndex
from errands.index.bm25 import BM25, best_of
from errands.index.keys import ChunkKeys, Keys
from errands.index.stored import StoredIndex
from tests.index.conftest import Commit

FILES = 30
CHUNKS = 25  # a file's chunks 0..24: as text, 10..19 come between 1 and 2


def _letters(i: int) -> str:
    return "".join(chr(ord("a") + i // 26**k % 26) for k in range(3))


def _module(k: int, chunks: int = CHUNKS) -> str:
    # Every function the same length with one "fetch" in it: "fetch" ties every chunk.
    return "".join(
        f"def fetch_{_letters(k * 100 + j)}():\n    return None\n\n" for j in range(chunks)
    )


def _tree() -> dict[str, str | bytes | None]:
    # Paths out of order as written, and a directory beside a file of its name.
    files: dict[str, str | bytes | None] = {
        f"pkg/m{(k * 7) % FILES}.py": _module(k) for k in range(FILES)
    }
    files["pkg/m1/x.py"] = _module(99, 3)
    return files


def _reference(index: CodeIndex, terms: dict[str, float], limit: int) -> list[tuple[str, float]]:
    """Every chunk scoring above 0, by score then key: the order the ranker must give."""
    bm25 = index._sym_bm25
    scores = bm25.scores(terms)
    keyed = [(bm25.doc_keys[i], float(s)) for i, s in enumerate(scores.tolist()) if s > 0]
    return sorted(((k, s) for k, s in keyed if k is not None), key=lambda p: (-p[1], p[0]))[:limit]


def _check(index: CodeIndex, stored: StoredIndex) -> None:
    for terms in ({"fetch": 1.0}, {"fetch": 1.0, "none": 0.5}):
        for limit in (1, 7, 12, 200, 2000):
            expected = _reference(index, terms, limit)
            assert index._sym_bm25.top(terms, limit) == expected
            with stored.snapshot():  # (read afresh once the file has been updated)
                stored_bm25 = stored.sym_bm25
                assert stored_bm25.best(stored_bm25.scores(terms), limit) == expected
    assert stored.locate("fetch") == index.locate("fetch")


def test_rank_of_orders_base_keys_as_the_keys_are_ordered() -> None:
    paths = ["b.py", "a", "a.py", "a/b.py", "ü.py", "a\udcff.py", "z.md", "a.pz"]
    counts = [12, 3, 0, 25, 1, 2, 101, 11]
    listed = [f"{p}\x00{i}" for p, n in zip(paths, counts, strict=True) for i in range(n)]
    expected = sorted(range(len(listed)), key=listed.__getitem__)
    ids = np.arange(len(listed), dtype=np.int64)
    chunks = ChunkKeys(paths, counts)
    for keys in (Keys(listed), chunks, pickle.loads(pickle.dumps(chunks))):
        assert keys.base_size == len(listed)
        assert np.argsort(keys.rank_of(ids), kind="stable").tolist() == expected
        some = ids[::3]  # any ids asked alike
        assert some[np.argsort(keys.rank_of(some))].tolist() == sorted(
            some.tolist(), key=listed.__getitem__
        )
    fork = chunks.fork()
    fork.remove(5)
    fork.append("a\x005")
    assert np.argsort(fork.rank_of(ids)).tolist() == expected  # the base's order stays


def test_only_the_keys_that_can_make_the_answer_are_read() -> None:
    paths = [f"p{k:03d}.py" for k in range(200)][::-1]
    keys = ChunkKeys(paths, [CHUNKS] * len(paths))
    scores = np.ones(len(keys), dtype=np.float64)
    scores[::97] = 2.0  # a few above the tie
    asked: list[int] = []

    def key_of(ids: list[int]) -> list[str | None]:
        asked.extend(ids)
        return [keys[i] for i in ids]

    listed = [keys[i] for i in range(len(keys))]
    reference = sorted(
        ((k, float(s)) for k, s in zip(listed, scores.tolist(), strict=True)),
        key=lambda p: (-p[1], p[0]),
    )
    for limit in (1, 10, 200):
        asked.clear()
        assert best_of(scores, limit, key_of, keys.rank_of, keys.base_size) == reference[:limit]
        assert len(asked) == limit  # of 5,000 tied
        assert best_of(scores, limit, key_of) == reference[:limit]  # read them all: the same
    # Documents added past the base have their keys read, and still sort among the base's.
    bm25 = BM25.bulk(keys, {"t": 0}, np.arange(len(keys) + 1), np.zeros(len(keys), np.int32),
                     np.ones(len(keys), np.int32))  # fmt: skip
    bm25.add("p000.py\x001", {"t": 1})
    bm25.add("a.py\x000", {"t": 1})
    top = bm25.top({"t": 1.0}, 5)
    assert [k for k, _ in top] == ["a.py\x000", "p000.py\x000", "p000.py\x001",
                                   "p000.py\x0010", "p000.py\x0011"]  # fmt: skip


def test_heavy_ties_rank_in_key_order_fresh_and_updated(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    first = commit(_tree(), "initial")
    index = CodeIndex.build(repo / ".git", first)
    index.save_query_file(tmp_path / "index.q")
    stored = StoredIndex(tmp_path / "index.q")
    try:
        _check(index, stored)
        # A file changed (its chunks removed from the base, added past it), one added that
        # sorts first, one removed: the query file is updated in place.
        second = commit(
            {"pkg/m3.py": _module(3, 14), "a_first.py": _module(77, 12), "pkg/m5.py": None},
            "change",
        )
        updated = index.fork()
        updated.update(repo / ".git", second)
        assert updated.save_query_file(tmp_path / "index.q")
        _check(updated, stored)
        fresh = CodeIndex.build(repo / ".git", second)
        compacted = updated._sym_bm25.compact()  # its keys sorted as strings, not ChunkKeys
        for limit in (1, 12, 200):
            expected = _reference(updated, {"fetch": 1.0}, limit)
            assert fresh._sym_bm25.top({"fetch": 1.0}, limit) == expected
            assert compacted.top({"fetch": 1.0}, limit) == expected
    finally:
        stored.close()


def test_the_query_file_reads_only_the_keys_that_can_make_the_answer(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    index = CodeIndex.build(repo / ".git", commit(_tree(), "initial"))
    index.save_query_file(tmp_path / "index.q")
    stored = StoredIndex(tmp_path / "index.q")
    statements: list[str] = []
    try:
        scores = stored.sym_bm25.scores({"fetch": 1.0})
        assert int((scores > 0).sum()) > 700
        stored._conn.set_trace_callback(statements.append)
        best = stored.sym_bm25.best(scores, 12)
        assert best == _reference(index, {"fetch": 1.0}, 12)
    finally:
        stored._conn.set_trace_callback(None)
        stored.close()
    # The keys read: the ids in the statements that read them (the values inlined).
    keyed = [s for s in statements if "JOIN files f ON f.id = s.file WHERE s.id IN" in s]
    asked = [i for s in keyed for i in re.findall(r"IN \(([^)]*)\)", s)[0].split(",")]
    assert len(asked) == 12  # of over 700 tied
