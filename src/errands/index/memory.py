"""Handing memory freed by a large build or save back to the system.

A cold build of a large repository frees hundreds of MB of temporaries (workers' batches,
sort buffers, the documents' arrays before the postings are made). CPython returns freed
arenas, but glibc keeps most of what it freed in its heap for reuse: the process stays that
large while it holds the index, and every later phase's peak starts from there.
``malloc_trim`` gives back the free pages in the middle of the heap too.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache


@cache
def _trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]  # type: ignore[attr-defined]
    trim.restype = ctypes.c_int  # type: ignore[attr-defined]
    return trim


def release() -> None:
    """Return the heap's free pages to the system (where the C library can; a few ms)."""
    trim = _trim()
    if trim is not None:
        trim(0)
