"""``git diff``'s output remembered by the commits it compares.

A commit id names immutable history (its tree, and its parents for ``id^``), so the diff
between two ids never changes: the review page of a subtask seen again (a reload, another
reviewer, the fragments it asks for) reads it from here instead of running git. Only full
object ids are remembered, never a branch name or an abbreviated id, which can come to mean
another commit. Bounded by the bytes held, least recently used first out.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

# A full SHA-1 or SHA-256 id, or its first parent.
_IMMUTABLE = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\^?")
MAX_BYTES = 64 * 1024 * 1024

Key = tuple[str, str, str, int]  # repository, old, new, byte cap


def key_of(repo: str, old: str, new: str, max_bytes: int) -> Key | None:
    """The cache key of this diff, or None when a revision could name other commits later."""
    if _IMMUTABLE.fullmatch(old) and _IMMUTABLE.fullmatch(new):
        return (repo, old, new, max_bytes)
    return None


class _Outputs:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[Key, tuple[str, bool]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Key) -> tuple[str, bool] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: Key, text: str, truncated: bool) -> None:
        if len(text) > self.max_bytes // 4:
            return  # one huge diff would push out everything else
        with self.lock:
            old = self.entries.pop(key, None)
            self.size -= len(old[0]) if old else 0
            self.entries[key] = (text, truncated)
            self.size += len(text)
            while self.size > self.max_bytes:
                _, (dropped, _) = self.entries.popitem(last=False)
                self.size -= len(dropped)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.size = 0


_OUTPUTS = _Outputs(MAX_BYTES)
get = _OUTPUTS.get
put = _OUTPUTS.put


def clear() -> None:
    """Forget every diff (the review benchmark's first views start from nothing)."""
    _OUTPUTS.clear()
