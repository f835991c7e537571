"""Many strings as one, to save: a pickle remembers every string it writes (an entry in
its memo each, to write a repeated one as a reference) until it is done, and a large
repository's index has hundreds of thousands — tens of MB of memo on top of the strings
while the index is saved. One string and the lengths of its parts cost none of that."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable


def join(strings: Iterable[str]) -> tuple[str, bytes]:
    """The strings joined, and each one's length."""
    parts = list(strings)
    return "".join(parts), array("i", map(len, parts)).tobytes()


def split(joined: str, length_bytes: bytes) -> list[str]:
    """:func:`join` read back."""
    lengths = array("i")
    lengths.frombytes(length_bytes)
    out: list[str] = []
    add, at = out.append, 0
    for n in lengths:
        add(joined[at : at + n])
        at += n
    return out


def join_strings(strings: Iterable[str | None]) -> tuple[str, bytes, bytes]:
    """Strings (or None) that repeat: the distinct ones joined (see :func:`join`), and each
    item's place among them (-1 for None). A repository's names repeat (`__init__`, a
    class's name as each of its methods' parent): each is written once, as a pickle's memo
    would have it."""
    ids: dict[str, int] = {}
    places = array("i")
    for text in strings:
        places.append(-1 if text is None else ids.setdefault(text, len(ids)))
    return (*join(ids), places.tobytes())


def split_strings(joined: str, length_bytes: bytes, place_bytes: bytes) -> list[str | None]:
    """:func:`join_strings` read back, each distinct string once, interned (so a symbol
    read back shares its names with those parsed in this process)."""
    places = array("i")
    places.frombytes(place_bytes)
    distinct: list[str | None] = list(map(sys.intern, split(joined, length_bytes)))
    distinct.append(None)  # place -1
    return [distinct[i] for i in places]
