"""The agent's file requests (``fs/read_text_file``, ``fs/write_text_file``), served on the
host and confined to the workspace.

The agent is hostile and runs concurrently with us, with write access to the workspace: a
path checked and then opened can have become a symlink in between. So a path is resolved
once (refused when it lands outside the workspace), and then opened component by component
from a descriptor of the workspace with ``O_NOFOLLOW``: a symlink appearing anywhere on the
way after the check fails the request instead of being followed. Only regular files are
read or written (a FIFO would block this process; a device is not the agent's business).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from errands.errors import ErrandsError

MAX_READ_BYTES = 10_000_000
MAX_WRITE_BYTES = 10_000_000

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileRefused(ErrandsError):
    """A file request the agent may not make, or that failed; told to the agent."""

    code = "file_refused"


class FileMissing(FileRefused):
    """The file does not exist (ACP's "resource not found", which agents treat as ENOENT)."""

    code = "file_missing"


class WorkspaceFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def relative(self, path: str) -> PurePosixPath:
        """``path`` (absolute, as ACP requires, or relative to the workspace) as a path
        inside the workspace with no symlink in it, or refused."""
        if not path or "\x00" in path:
            raise FileRefused("a path is required")
        candidate = Path(os.path.realpath(self.root / path))
        if candidate != self.root and self.root not in candidate.parents:
            raise FileRefused(f"{path} is outside the workspace {self.root}")
        return PurePosixPath(candidate.relative_to(self.root).as_posix())

    def read(self, path: str, *, line: int | None = None, limit: int | None = None) -> str:
        """The file's text; a file that does not exist reads as empty, as in Zed (the
        reference client, which opens a new buffer): agents built against it create a file
        by reading it first, and Gemini CLI cannot tell ACP's "not found" error from others."""
        relative = self.relative(path)
        if not relative.parts:
            raise FileRefused(f"{path} is a directory")
        try:
            with self._directory(relative.parent) as parent:
                fd = _open(path, relative.name, os.O_RDONLY | os.O_NONBLOCK, parent)
        except FileMissing:
            return ""
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FileRefused(f"{path} is not a regular file")
            if info.st_size > MAX_READ_BYTES:
                raise FileRefused(f"{path} is larger than {MAX_READ_BYTES} bytes")
            data = handle.read(MAX_READ_BYTES + 1)
        if b"\x00" in data[:8192]:
            raise FileRefused(f"{path} is a binary file")
        text = data.decode("utf-8", errors="replace")
        if line is None and limit is None:
            return text
        lines = text.splitlines(keepends=True)
        first = max((line or 1) - 1, 0)
        last = len(lines) if limit is None else first + max(limit, 0)
        return "".join(lines[first:last])

    def write(self, path: str, content: str) -> None:
        data = content.encode("utf-8", errors="surrogateescape")
        if len(data) > MAX_WRITE_BYTES:
            raise FileRefused(f"the content for {path} is larger than {MAX_WRITE_BYTES} bytes")
        relative = self.relative(path)
        if not relative.parts:
            raise FileRefused(f"{path} is a directory")
        # Anywhere in the path, as for the native loop's tools: the repository's git data,
        # or a nested repository (which the commit would refuse anyway).
        if any(part.lower() == ".git" for part in relative.parts):
            raise FileRefused(f"{path} is inside a .git directory: it cannot be written")
        with self._directory(relative.parent, create=True) as parent:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK
            fd = _open(path, relative.name, flags, parent)
        with os.fdopen(fd, "wb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise FileRefused(f"{path} is not a regular file")
            handle.write(data)

    @contextlib.contextmanager
    def _directory(self, relative: PurePosixPath, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory ``relative`` inside the workspace, reached without
        following a symlink on the way (``create``: making the directories missing)."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in relative.parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                child = _open(str(relative), part, _DIR_FLAGS, fd)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)


def _open(shown: str, name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise FileMissing(f"{shown} does not exist") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            # A symlink (or a file where a directory was) appeared after the check.
            raise FileRefused(f"{shown} changed into a link while it was opened") from exc
        if exc.errno == errno.EISDIR:
            raise FileRefused(f"{shown} is a directory") from exc
        raise FileRefused(f"{shown} cannot be opened: {exc.strerror}") from exc
