"""A BM25 index's document keys, by id and back, packed: a large repository has 700,000
symbol chunks, each keyed ``path\\0i``, and as Python strings (with a dict from each to its
id) they were a fifth of the index in memory and a large part of every save.

The keys a bulk build starts from are one bytes object (their UTF-8, which a pickle writes
as it is, where a string is copied first) and the offsets where each ends; a dict from key
to id is replaced by the keys' hashes, sorted (a key is found by its hash, then compared).
Keys added later, one changed file at a time, are a list and a dict, as before; a removed
key is noted, its id never reused.

BM25 breaks ties in key order, and a one-word text can tie hundreds of thousands of chunks:
:meth:`Keys.rank_of` orders the base's documents as their keys without making the keys
(the base never changes, so its order is worked out once), and only the few that can make a
ranking have their keys made.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

import numpy as np
import numpy.typing as npt

# Integers in key order (see Keys.rank_of).
Ranks = npt.NDArray[np.signedinteger[Any]]  # int32 or int64

# Any string round-trips, a path git gave with undecodable bytes (surrogate escapes) too.
_ERRORS = "surrogatepass"


class Keys:
    """Document keys by id (None for a removed document), and ids by key."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        # One pass, each key let go of once written: the keys are never all strings at once.
        packed = io.BytesIO()
        ends = array("q")
        end = 0
        for key in keys:
            end += packed.write(key.encode("utf-8", _ERRORS))
            ends.append(end)
        self._packed = packed.getvalue()
        self._ends = np.frombuffer(ends, dtype=np.int64) if ends else np.zeros(0, np.int64)
        self._n_base = len(ends)
        self._removed: set[int] = set()  # base ids
        self._more: list[str | None] = []  # keys added after the base, by id - base size
        self._more_ids: dict[str, int] = {}
        self._index()

    def _index(self) -> None:
        """The base keys' hashes, sorted, and which key each is (Python's string hashes
        differ between processes, so these are made afresh when a saved index is read)."""
        hashes = np.fromiter(map(hash, self._base_keys()), dtype=np.int64, count=self._n_base)
        self._order = np.argsort(hashes, kind="stable").astype(np.int32)
        self._hashes = hashes[self._order]
        self._ranks: Ranks | None = None  # see rank_of, made when first asked

    @property
    def base_size(self) -> int:
        """How many keys the base has: ids below it are :meth:`rank_of`'s."""
        return self._n_base

    def rank_of(self, ids: npt.NDArray[np.int64]) -> Ranks:
        """Integers ordering base ids (each below :attr:`base_size`) as their keys are
        ordered: two ids' integers compare as their keys do (removed keys included; the
        base's keys never change, so neither does this)."""
        if self._ranks is None:
            # Made once per base, when ties first call for it (forks share it, as they
            # share the hashes): a gather per query after that, where working each one
            # out took ~30 ms for the 500,000 chunks a one-word text can tie.
            self._ranks = self._ranking()
        return self._ranks[ids]

    def _ranking(self) -> Ranks:
        # A sort of every key: ~0.5 s for 700,000 (a compacted index's chunks; a build's
        # are ChunkKeys, which need not make them).
        keys = list(self._base_keys())
        ranks = np.empty(len(keys), dtype=np.int32)  # (as the postings' ids: int32 at most)
        ranks[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
        return ranks

    def _base_keys(self) -> Iterator[str]:
        packed, start = self._packed, 0
        for end in self._ends.tolist():
            yield packed[start:end].decode("utf-8", _ERRORS)
            start = end

    def _base(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._packed[start : int(self._ends[i])].decode("utf-8", _ERRORS)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["_order"], state["_hashes"], state["_more_ids"], state["_ranks"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        base = self._n_base
        self._more_ids = {key: base + i for i, key in enumerate(self._more) if key is not None}
        self._index()

    def fork(self) -> Keys:
        """A copy to change apart from this one: the packed base and its hashes (never
        changed in place) shared, what removals and additions change copied."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._removed = set(self._removed)
        other._more = list(self._more)
        other._more_ids = dict(self._more_ids)
        return other

    def __len__(self) -> int:
        return self._n_base + len(self._more)

    def __getitem__(self, i: int) -> str | None:
        base = self._n_base
        if i >= base:
            return self._more[i - base]
        return None if i in self._removed else self._base(i)

    def __iter__(self) -> Iterator[str | None]:
        removed = self._removed
        for i, key in enumerate(self._base_keys()):
            yield None if i in removed else key
        yield from self._more

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Keys | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def id_of(self, key: str) -> int | None:
        """The id of a document's key, or None when there is no such document (now)."""
        found = self._more_ids.get(key)
        if found is not None:
            return found
        hashes: npt.NDArray[np.int64] = self._hashes
        h = hash(key)
        at = int(np.searchsorted(hashes, h))
        while at < len(hashes) and hashes[at] == h:
            i = int(self._order[at])
            if i not in self._removed and self._base(i) == key:
                return i
            at += 1
        return None

    def append(self, key: str) -> int:
        """Add a document's key (not present now); its id."""
        i = len(self)
        self._more.append(key)
        self._more_ids[key] = i
        return i

    def remove(self, i: int) -> None:
        base = self._n_base
        if i >= base:
            key = self._more[i - base]
            if key is not None:
                del self._more_ids[key]
            self._more[i - base] = None
        else:
            self._removed.add(i)


class ChunkKeys(Keys):
    """The keys ``path\0i`` of files' symbol chunks (``i`` from 0 to the file's count, the
    files in order): made from the paths and the counts when asked for, not kept. The paths
    are the files' own strings (and in a saved index, the files' paths again, which a pickle
    writes once), where the keys packed were ~27 MB at 50,000 files."""

    def __init__(self, paths: list[str], counts: Iterable[int]) -> None:
        first = array("q", [0])
        first.extend(accumulate(counts))
        self._paths = paths
        self._first = np.frombuffer(first, dtype=np.int64)
        self._n_base = int(first[-1])
        self._removed = set()
        self._more = []
        self._more_ids = {}
        self._index()

    def _base_keys(self) -> Iterator[str]:
        for path, n in zip(self._paths, np.diff(self._first).tolist(), strict=True):
            for i in range(n):
                yield f"{path}\0{i}"

    def _base(self, i: int) -> str:
        f = int(np.searchsorted(self._first, i, side="right")) - 1
        return f"{self._paths[f]}\0{i - int(self._first[f])}"

    def _ranking(self) -> Ranks:
        # From each key's file and chunk number (see chunk_order): only the paths sorted
        # (~40 ms at 50,000 files, 700,000 chunks), no key made.
        paths = self._paths
        by_path = np.empty(len(paths), dtype=np.int64)
        by_path[sorted(range(len(paths)), key=paths.__getitem__)] = np.arange(len(paths))
        counts = np.diff(self._first)
        files = np.repeat(np.arange(len(paths)), counts)
        return chunk_order(by_path[files], np.arange(self._n_base) - self._first[files])


def chunk_order(path_ranks: npt.NDArray[np.int64], chunks: npt.NDArray[np.int64]) -> Ranks:
    """Integers ordering chunk keys ``path\\0i`` as the keys are ordered, given each key's
    path's rank among the paths and its ``i``: two compare as their keys do.

    The path decides first (``\\0`` is below any character a path has, so a path that is
    another's prefix comes first as a key too), then ``str(i)`` as text — "10" before "2",
    which a plain ``i`` would get wrong. Each of its digits plus one, in base 11, padded
    with zeros to the widest ``i``'s length, compares as the text does (a shorter prefix
    first, as 0 is below every digit's 1..10). Shared by the index and the query file, so
    the two order ties alike."""
    width = len(str(int(chunks.max(initial=0))))
    digits = np.ones_like(chunks)  # each i's length in digits
    for place in range(1, width):
        digits += chunks >= 10**place
    code = np.zeros_like(chunks)
    for at in range(width):
        left = digits - 1 - at  # digits to the right of position ``at``
        digit = chunks // 10 ** np.maximum(left, 0) % 10 + 1
        code = code * 11 + np.where(left >= 0, digit, 0)
    # (11**width is at most ~2e7 for files of up to 10 million chunks: no overflow below
    # ~4e11 paths.) Kept in 32 bits when they fit: at 50,000 files, 700,000 of them.
    out: npt.NDArray[np.int64] = path_ranks * 11**width + code
    if int(out.max(initial=0)) < 1 << 31 and int(out.min(initial=0)) >= 0:
        return out.astype(np.int32)
    return out
