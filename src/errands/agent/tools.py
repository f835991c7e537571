"""The tools the agent works with, confined to one workspace.

Failures the model can fix (a missing file, an ambiguous edit) come back as the tool's result
text starting with ``Error:`` rather than as exceptions, so one slip does not end the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from errands.errors import GitError, nested_message
from errands.sandbox import Sandbox

MAX_READ_LINES = 2_000
MAX_LIST_ENTRIES = 2_000
MAX_GREP_MATCHES = 200
MAX_WRITE_BYTES = 2_000_000

ToolFunction = Callable[..., str]
# The project's code index: (query, limit) -> [(path, line, snippet)].
CodeSearch = Callable[[str, int], list[tuple[str, int, str]]]
# Told a running command's latest output (command, tail) every few seconds.
CommandOutput = Callable[[str, str], None]


class ToolError(Exception):
    """A problem the model should hear about and can correct."""


class WorkspaceGit(Protocol):
    """The workspace's git as the host runs it: hardened against anything the agent planted
    (errands.git.Workspace)."""

    def read(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 60) -> str: ...

    def nested_repositories(self) -> list[str]: ...


class WorkspaceTools:
    def __init__(
        self,
        root: Path,
        sandbox: Sandbox | None,
        *,
        repository: WorkspaceGit,
        command_timeout: float,
        cancel: threading.Event | None = None,
        code_search: CodeSearch | None = None,
        command_output: CommandOutput | None = None,
    ) -> None:
        self.root = root.resolve()
        self.repository = repository
        self.code_search = code_search
        self.command_output = command_output
        self.sandbox = sandbox
        self.command_timeout = command_timeout
        self.cancel = cancel
        # Whether a tool may have changed the work tree (a write was attempted, or a command
        # ran): a tree nothing wrote to is parked without scrubbing (WorkspacePool.release).
        self.touched = False

    # -- tool sets ------------------------------------------------------------------------

    def read_only(self) -> list[ToolFunction]:
        tools: list[ToolFunction] = [self.list_files, self.read_file, self.grep]
        if self.code_search is not None:
            tools.append(self.search_code)
        return tools

    def read_write(self) -> list[ToolFunction]:
        if self.sandbox is None:
            raise RuntimeError("editing tools need a sandbox for run_command")
        return [*self.read_only(), self.write_file, self.edit_file, self.run_command]

    # -- helpers --------------------------------------------------------------------------

    def _resolve(self, path: str, *, for_write: bool = False) -> Path:
        if not path or "\x00" in path:
            raise ToolError("a path is required")
        candidate = (self.root / path).resolve()
        # resolve() follows symlinks, so a link pointing outside the workspace is caught too.
        if candidate != self.root and self.root not in candidate.parents:
            raise ToolError(f"{path!r} is outside the workspace")
        relative = candidate.relative_to(self.root)
        if for_write:
            self.touched = True
        # Anywhere, not only at the top: a .git file or directory further down makes a nested
        # repository, which Errands refuses (see run_command).
        if for_write and any(part.lower() == ".git" for part in relative.parts):
            raise ToolError(
                f"{path!r} is inside a .git directory: the repository's git data cannot be "
                "written, and nested repositories are not allowed"
            )
        return candidate

    def _git(self, *args: str) -> str:
        try:
            # git grep exits 1 when nothing matched.
            return self.repository.read(*args, ok=(0, 1))
        except GitError as exc:
            raise ToolError(str(exc)) from exc

    @staticmethod
    def _guard(action: Callable[[], str]) -> str:
        try:
            return action()
        except ToolError as exc:
            return f"Error: {exc}"

    # -- tools ----------------------------------------------------------------------------

    def list_files(self, directory: str = ".") -> str:
        """List the files under a directory of the repository (tracked and new, not ignored).

        Args:
            directory: a path relative to the repository root; "." for everything.
        """

        def act() -> str:
            target = self._resolve(directory)
            prefix = "" if target == self.root else f"{target.relative_to(self.root).as_posix()}/"
            listing = self._git("ls-files", "--cached", "--others", "--exclude-standard")
            files = sorted({f for f in listing.splitlines() if f.startswith(prefix)})
            if not files:
                return f"No files under {directory!r}."
            shown = files[:MAX_LIST_ENTRIES]
            more = len(files) - len(shown)
            return "\n".join(shown) + (f"\n… and {more} more" if more else "")

        return self._guard(act)

    def read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> str:
        """Read a text file, numbered, optionally a range of lines (1-based, inclusive).

        Args:
            path: relative to the repository root.
            start_line: first line to show.
            end_line: last line to show; default: up to 2000 lines from start_line.
        """

        def act() -> str:
            target = self._resolve(path)
            if not target.is_file():
                raise ToolError(f"{path} does not exist or is not a file")
            data = target.read_bytes()
            if b"\x00" in data[:8192]:
                return f"{path} is a binary file ({len(data)} bytes); it cannot be shown as text."
            lines = data.decode("utf-8", errors="replace").splitlines()
            first = max(start_line, 1)
            last = min(
                end_line or first + MAX_READ_LINES - 1, len(lines), first + MAX_READ_LINES - 1
            )
            if first > len(lines):
                return f"{path} has only {len(lines)} lines."
            body = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(first, last + 1))
            note = (
                f"\n[lines {first}-{last} of {len(lines)}]"
                if (first > 1 or last < len(lines))
                else ""
            )
            return body + note

        return self._guard(act)

    def grep(self, pattern: str, directory: str = ".", glob: str | None = None) -> str:
        """Search file contents with an extended regular expression; prints path:line:text.

        Args:
            pattern: an extended regular expression (as for grep -E).
            directory: limit the search to this directory.
            glob: limit the search to file names matching this glob, e.g. "*.py".
        """

        def act() -> str:
            target = self._resolve(directory)
            spec = target.relative_to(self.root).as_posix()
            if glob:
                prefix = "" if spec == "." else f"{spec}/"
                pathspec = f":(glob){prefix}**/{glob}"
            else:
                pathspec = spec
            out = self._git("grep", "--untracked", "-n", "-I", "-E", "-e", pattern, "--", pathspec)
            matches = out.splitlines()
            if not matches:
                return "No matches."
            shown = [m[:400] for m in matches[:MAX_GREP_MATCHES]]
            more = len(matches) - len(shown)
            return "\n".join(shown) + (f"\n… and {more} more matches" if more else "")

        return self._guard(act)

    def search_code(self, query: str, limit: int = 20) -> str:
        """Search the project's code index (ranked by relevance: words, identifiers, symbol
        names) and print path:line: snippet. Faster and better ranked than grep for "where is
        X handled" questions; use grep for exact patterns.

        Args:
            query: words or identifiers, e.g. "retry backoff http client".
            limit: how many hits to show (at most 50).
        """
        if self.code_search is None:
            return "Error: this project has no code index yet"
        hits = self.code_search(query, max(1, min(limit, 50)))
        if not hits:
            return "No matches."
        return "\n".join(f"{path}:{line}: {snippet[:300]}" for path, line, snippet in hits)

    def write_file(self, path: str, content: str) -> str:
        """Create or overwrite a file with the given content.

        Args:
            path: relative to the repository root; parent directories are created.
            content: the complete new content of the file.
        """

        def act() -> str:
            if len(content.encode()) > MAX_WRITE_BYTES:
                raise ToolError(f"content is larger than {MAX_WRITE_BYTES} bytes")
            target = self._resolve(path, for_write=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            return f"Wrote {path} ({len(content.splitlines())} lines)."

        return self._guard(act)

    def edit_file(self, path: str, old_text: str, new_text: str) -> str:
        """Replace one exact occurrence of old_text with new_text in a file.

        Args:
            path: relative to the repository root.
            old_text: text that occurs exactly once in the file (include surrounding lines to
                make it unique).
            new_text: the replacement.
        """

        def act() -> str:
            target = self._resolve(path, for_write=True)
            if not target.is_file():
                raise ToolError(f"{path} does not exist; use write_file to create it")
            if not old_text:
                raise ToolError("old_text is empty")
            text = target.read_text(encoding="utf-8", errors="surrogateescape")
            count = text.count(old_text)
            if count == 0:
                raise ToolError(
                    f"old_text was not found in {path}; read the file and copy the exact text"
                )
            if count > 1:
                raise ToolError(
                    f"old_text occurs {count} times in {path}; include more surrounding lines so "
                    "it matches exactly once"
                )
            target.write_text(
                text.replace(old_text, new_text, 1), encoding="utf-8", errors="surrogateescape"
            )
            return f"Edited {path}."

        return self._guard(act)

    def run_command(self, command: str, timeout_seconds: float | None = None) -> str:
        """Run a shell command in the repository root and return its exit code and output.

        Args:
            command: a bash command line, e.g. "pytest -x tests/test_api.py".
            timeout_seconds: wall-clock limit; default and maximum: the project's limit.
        """
        timeout = min(timeout_seconds or self.command_timeout, self.command_timeout)
        if self.sandbox is None:  # read_write() refuses to hand out this tool without one
            return "Error: commands cannot run in this phase"
        self.touched = True
        report = self.command_output
        result = self.sandbox.run(
            command,
            timeout=timeout,
            cancel=self.cancel,
            on_output=(lambda tail: report(command, tail)) if report else None,
        )
        done = f"[{result.describe()} in {result.duration:.1f}s]\n{result.output}"
        try:
            nested = self.repository.nested_repositories()
        except GitError as exc:
            return f"Error: git cannot read the workspace after this command: {exc}\n{done}"
        if nested:
            # Told at once, so the agent can remove them before its work is committed
            # (the commit refuses them).
            return f"Error: this command left {nested_message(nested)}\n{done}"
        return done
