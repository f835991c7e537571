"""A saved index's journal: the file beside the saved index (its *base*) to which each save
after an update appends what that update changed, so that saving costs what changed rather
than the whole index (rewriting it took seconds on a 50,000-file repository).

Each record is framed by a magic, its length and a CRC-32 of its payload: a record torn by a
crash (or one being written while a reader reads) ends the journal there, and the reader
gets the index as the records before it left it — that of an earlier commit, which the next
update brings forward; never a record half applied. A record also names the base it
follows (the base's random token) and where in the journal it was appended, so one that
does not follow the state before it (a stale journal beside a newer base) is never applied.

Writers append under a lock held for the append or the replacement of the base only, never
while one analyses files or pickles a whole index. Light on purpose: `errands locate` and
the caches of loaded indexes stat these files without importing the index."""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAGIC = b"EIJ\x01"
_HEAD = struct.Struct("<4sQI")  # magic, payload length, CRC-32 of the payload

# A saved index's identity on disk: its base's (inode, mtime in ns, size) and its journal's
# (zeros when there is none). Any save changes it: a new base is a new inode, an append
# makes the journal longer.
Identity = tuple[int, ...]
NO_JOURNAL = (0, 0, 0)


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def stat_identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def saved_size(key: Identity) -> int:
    """The bytes of the index saved as ``key`` (an :func:`identity`): base and journal."""
    return key[2] + key[5]


def identity(path: Path) -> Identity | None:
    """The identity of the index saved at ``path`` now, or None when there is none. Taken
    before reading the index, it is never newer than what is then read (a reader caching an
    index under it reads the files again when they change, never the reverse)."""
    try:
        base = stat_identity(path.stat())
    except FileNotFoundError:
        return None
    try:
        return base + stat_identity(journal_path(path).stat())
    except FileNotFoundError:
        return base + NO_JOURNAL


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the saved index's writers' lock (a file of its own that is never replaced, so
    every writer locks the same one)."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def frame(payload: bytes) -> bytes:
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def records(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Each whole record of a journal's contents: (its offset, the offset after it, its
    payload); stops at the first torn or damaged one."""
    at = 0
    while at + _HEAD.size <= len(data):
        magic, length, crc = _HEAD.unpack_from(data, at)
        start = at + _HEAD.size
        end = start + length
        if magic != MAGIC or end > len(data):
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            return
        yield at, end, payload
        at = end


def read(path: Path) -> tuple[bytes, int]:
    """The journal of the index saved at ``path`` (empty when there is none) and its size."""
    try:
        with journal_path(path).open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return b"", 0
    return data, len(data)


def append(path: Path, payload: bytes, *, base: tuple[int, int, int], at: int) -> Identity | None:
    """Append a record to the journal of the index saved at ``path``, provided the saved
    index is still the one the record follows: its base ``base`` and its journal ``at``
    bytes long (no other writer saved since). The saved index's identity after the append,
    or None when it was not the one (the caller saves the index whole instead)."""
    with locked(path):
        try:
            now = stat_identity(path.stat())
        except FileNotFoundError:
            return None
        if now != base:
            return None
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(journal_path(path), flags, 0o600)
        try:
            if os.fstat(fd).st_size != at:
                return None
            record = memoryview(frame(payload))
            while record:  # (a write cut short by a full disk leaves a torn record: see above)
                record = record[os.write(fd, record) :]
            st = os.fstat(fd)
        finally:
            os.close(fd)
    return base + stat_identity(st)


def replace_base(tmp: Path, path: Path) -> None:
    """Put a whole index written to ``tmp`` in place at ``path``, its journal gone with the
    base it followed (under the writers' lock, so no append lands between the two)."""
    with locked(path):
        tmp.replace(path)
        journal_path(path).unlink(missing_ok=True)
