"""A dict that forks in time proportional to its changes, not its size.

The index job updates a fork of the index its process holds, and that index's readers
(another thread's `locate`) keep the one forked from: on a 50,000-file repository, copying
the vocabularies and the lookup tables for each fork took ~20 ms of a one-file re-index.
An :class:`Overlay` is a *base* dict, never changed once an overlay holds it (so any number
of forks share it), and the keys set or deleted since, in a small dict and set of its own
that a fork copies. When those grow past a share of the base, the next change folds them
into a new base (the old one left as it was for whoever shares it): lookups stay two dict
probes however many updates an index has been through.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from typing import Any, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

# Changes folded into a new base once they pass this share of it (or FLATTEN_MIN): copying
# the base costs about as much as this many changes', so folding costs each change a few
# dict entries' copies at most.
FLATTEN_SHARE = 8
FLATTEN_MIN = 1024
_MISSING: Any = object()


class Overlay(MutableMapping[K, V]):
    """A mapping: a shared ``base`` dict (never changed through this object) and its own
    changes on top. :meth:`fork` gives an independent copy without copying the base."""

    __slots__ = ("_base", "_gone", "_len", "_top")

    def __init__(self, base: dict[K, V] | None = None) -> None:
        """Over ``base``, which the caller gives away: never change it afterwards."""
        self._base: dict[K, V] = {} if base is None else base
        self._top: dict[K, V] = {}  # keys set since (in the base or not)
        self._gone: set[K] = set()  # base keys deleted since (never in _top)
        self._len = len(self._base)

    def fork(self) -> Overlay[K, V]:
        """A copy to change apart from this one (and this one apart from it)."""
        other: Overlay[K, V] = Overlay.__new__(Overlay)
        other._base = self._base
        other._top = dict(self._top)
        other._gone = set(self._gone)
        other._len = self._len
        return other

    def flat(self) -> dict[K, V]:
        """The contents as a plain dict: the base itself when nothing changed (then never
        change it), otherwise a new one."""
        top, gone = self._top, self._gone
        if not top and not gone:
            return self._base
        out = {k: v for k, v in self._base.items() if k not in top and k not in gone}
        out.update(top)
        return out

    def _changed(self) -> None:
        if len(self._top) + len(self._gone) > max(FLATTEN_MIN, len(self._base) // FLATTEN_SHARE):
            self._base, self._top, self._gone = self.flat(), {}, set()

    # ---- the mapping ----------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        top = self._top
        if key in top:
            return top[key]
        if key in self._gone:
            raise KeyError(key)
        return self._base[key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: object = None, /) -> object:
        found = self._top.get(key, _MISSING)
        if found is not _MISSING:
            return found
        if self._gone and key in self._gone:
            return default
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._top or (key in self._base and key not in self._gone)

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._len += 1
        self._gone.discard(key)
        self._top[key] = value
        self._changed()

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        self._len -= 1
        self._top.pop(key, None)
        if key in self._base:
            self._gone.add(key)
        self._changed()

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        return iter(self.flat())

    # Views of a flat copy (in C), not key-by-key lookups: these walk the whole table.
    def keys(self) -> KeysView[K]:
        return self.flat().keys()

    def values(self) -> ValuesView[V]:
        return self.flat().values()

    def items(self) -> ItemsView[K, V]:
        return self.flat().items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Overlay):
            other = other.flat()
        return self.flat() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Overlay({self.flat()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (and deep-copied) as its contents.
        return (Overlay, (dict(self.flat()),))
