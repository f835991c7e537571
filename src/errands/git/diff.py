"""Parsed diffs, bounded in size, ready to be sent to a browser as JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk as UnidiffHunk
from unidiff.patch import PatchSet

from errands.errors import GitError

FileStatus = Literal["added", "deleted", "modified", "renamed"]
LineKind = Literal["context", "added", "removed"]

DEFAULT_MAX_LINES_PER_FILE = 3000
# Past this many lines in total, further files are listed with their counts but no hunks:
# the page showing them would be unusable anyway.
DEFAULT_MAX_TOTAL_LINES = 50_000

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_LINE_KINDS: dict[str, LineKind] = {" ": "context", "+": "added", "-": "removed"}
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    old_no: int | None
    new_no: int | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Hunk:
    header: str
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    lines: list[Line]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FileDiff:
    path: str
    old_path: str | None
    status: FileStatus
    is_binary: bool
    additions: int
    deletions: int
    hunks: list[Hunk]
    # Some hunks or lines were left out because the file exceeded the line budget.
    truncated: bool
    # Hunk lines not parsed on this request (``Detail``): the counts above cover them, and a
    # page asks for the file's hunks when the reader gets to it. 0: ``hunks`` is all there is.
    unparsed_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Diff:
    files: list[FileDiff]
    additions: int
    deletions: int
    # git's output exceeded the byte cap: files past the cut are missing entirely.
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Detail:
    """Which files' hunks to parse; the others keep their paths and counts only (a page's
    first screen needs the hunks of its first files, and parsing is most of a long diff's
    cost).

    Parsed: files named by path or by index, and the files in diff order while fewer than
    ``lines`` hunk lines have been parsed, leaving out those over ``largest`` lines (a page
    loads them on request only).
    """

    lines: int = 0
    largest: int | None = None
    paths: frozenset[str] = frozenset()
    indexes: frozenset[int] = frozenset()


def parse_diff(
    text: str,
    *,
    max_lines_per_file: int = DEFAULT_MAX_LINES_PER_FILE,
    max_total_lines: int = DEFAULT_MAX_TOTAL_LINES,
    truncated: bool = False,
    detail: Detail | None = None,
) -> Diff:
    """Parse ``git diff`` output (every file's hunks, or those ``detail`` picks).

    ``truncated`` says the text itself was cut short; the file cut in the middle is dropped.
    """
    chunks = list(_file_chunks(text))
    if truncated and chunks:
        chunks.pop()
    files: list[FileDiff] = []
    budget = max_total_lines
    wanted = detail.lines if detail is not None else 0
    for index, chunk in enumerate(chunks):
        limit = min(max_lines_per_file, budget)
        if detail is None:
            file_diff = _parse_file(_lines(chunk), limit)
        else:
            summary = _summarise(chunk, limit)
            lines = summary.unparsed_lines
            named = index in detail.indexes or summary.path in detail.paths
            small = detail.largest is None or lines <= detail.largest
            if named or (wanted > 0 and small):
                file_diff = _parse_file(_lines(chunk), limit)
                wanted -= 0 if named else lines
            else:
                file_diff = summary
        budget -= sum(len(h.lines) for h in file_diff.hunks) + file_diff.unparsed_lines
        files.append(file_diff)
    return Diff(
        files=files,
        additions=sum(f.additions for f in files),
        deletions=sum(f.deletions for f in files),
        truncated=truncated,
    )


def _file_chunks(text: str) -> Iterator[str]:
    """Split git's output into one text per file.

    Hunk lines always start with a space, ``+``, ``-`` or ``\\``, so a line starting with
    ``diff --git`` can only be the start of the next file. (Cut as text, not as lines: a file
    that is only counted is never split into lines.)
    """
    start = 0
    while start < len(text):
        found = text.find("\ndiff --git ", start)
        end = len(text) if found < 0 else found + 1
        yield text[start:end]
        start = end


def _lines(chunk: str) -> list[str]:
    # Split on "\n" only: str.splitlines() would also break on \r, \f, \x1c… inside content.
    pieces = chunk.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    return [piece + "\n" for piece in pieces]


@dataclass(slots=True)
class _Bounded:
    """A file's diff text cut to a line budget, with counts over the whole file."""

    lines: list[str]
    additions: int = 0
    deletions: int = 0
    truncated: bool = False


def _bound(chunk: list[str], budget: int) -> tuple[_Bounded, list[tuple[str, int, int]]]:
    """Keep at most ``budget`` hunk lines, so unidiff never sees a huge file.

    A hunk cut in the middle gets a header matching what was kept, because unidiff checks
    the counts. Git's original header and counts of every kept hunk are returned too.
    """
    out = _Bounded(lines=[])
    originals: list[tuple[str, int, int]] = []
    kept = kept_old = kept_new = 0
    old_left = new_left = 0
    header_at = 0
    for line in chunk:
        in_hunk = old_left > 0 or new_left > 0
        match = None if in_hunk else _HUNK_HEADER.match(line.rstrip("\n"))
        if match is not None:
            old_left, new_left = int(match[2] or "1"), int(match[4] or "1")
            out.truncated = out.truncated or kept >= budget
            if out.truncated:
                continue
            header_at = len(out.lines)
            kept_old = kept_new = 0
            originals.append((line.rstrip("\n"), old_left, new_left))
            out.lines.append(line)
            continue
        kind = line[:1]
        if in_hunk:
            if kind == "+":
                out.additions += 1
                new_left -= 1
            elif kind == "-":
                out.deletions += 1
                old_left -= 1
            elif kind != "\\":
                old_left -= 1
                new_left -= 1
        if out.truncated:
            continue
        if in_hunk and kind != "\\":
            if kept >= budget:
                out.truncated = True
                _rewrite_header(out.lines, header_at, kept_old, kept_new)
                continue
            kept += 1
            kept_old += kind != "+"
            kept_new += kind != "-"
        out.lines.append(line)
    return out, originals


def _rewrite_header(lines: list[str], at: int, old_count: int, new_count: int) -> None:
    match = _HUNK_HEADER.match(lines[at].rstrip("\n"))
    assert match is not None
    lines[at] = f"@@ -{match[1]},{old_count} +{match[3]},{new_count} @@ {match[5]}\n"


def _parse_file(chunk: list[str], budget: int) -> FileDiff:
    bounded, originals = _bound(chunk, budget)
    try:
        patch = PatchSet(bounded.lines)
    except UnidiffParseError as exc:
        raise GitError(f"could not parse git diff output: {exc}") from exc
    if len(patch) != 1:
        raise GitError(f"could not parse git diff output near {chunk[0].strip()!r}")
    patched = patch[0]
    header = _header_facts(chunk)
    hunks = [
        _convert_hunk(h, original)
        for h, original in zip(patched, originals, strict=True)
        if _has_lines(h)
    ]
    old_path = header.rename_from or _strip_prefix(patched.source_file)
    new_path = header.rename_to or _strip_prefix(patched.target_file)
    status: FileStatus
    if header.new_file:
        status, path, old = "added", new_path, None
    elif header.deleted_file:
        status, path, old = "deleted", old_path, None
    elif old_path != new_path:
        status, path, old = "renamed", new_path, old_path
    else:
        status, path, old = "modified", new_path, None
    return FileDiff(
        path=path or "",
        old_path=old,
        status=status,
        is_binary=bool(patched.is_binary_file),
        additions=bounded.additions,
        deletions=bounded.deletions,
        hunks=hunks,
        truncated=bounded.truncated,
    )


def _summarise(chunk: str, budget: int) -> FileDiff:
    """The file's paths, status and counts without its hunks (their lines only counted)."""
    at = chunk.find("\n@@")
    head = _parse_file(_lines(chunk if at < 0 else chunk[: at + 1]), 0)
    body = "" if at < 0 else chunk[at:]
    # Inside hunks every line starts with " ", "+" or "-" (or is "@@…" or "\\ No newline").
    additions, deletions = body.count("\n+"), body.count("\n-")
    lines = additions + deletions + body.count("\n ")
    return FileDiff(
        path=head.path,
        old_path=head.old_path,
        status=head.status,
        is_binary=head.is_binary,
        additions=additions,
        deletions=deletions,
        hunks=[],
        truncated=lines > budget,
        unparsed_lines=min(lines, budget),
    )


def _has_lines(hunk: UnidiffHunk) -> bool:
    return any(line.line_type in _LINE_KINDS for line in hunk)


def _convert_hunk(hunk: UnidiffHunk, original: tuple[str, int, int]) -> Hunk:
    lines = [
        Line(
            kind=_LINE_KINDS[line.line_type],
            old_no=line.source_line_no if line.line_type != "+" else None,
            new_no=line.target_line_no if line.line_type != "-" else None,
            text=line.value.removesuffix("\n"),
        )
        for line in hunk
        if line.line_type in _LINE_KINDS
    ]
    header, old_lines, new_lines = original
    return Hunk(
        header=header,
        old_start=hunk.source_start,
        old_lines=old_lines,
        new_start=hunk.target_start,
        new_lines=new_lines,
        lines=lines,
    )


@dataclass(slots=True)
class _HeaderFacts:
    new_file: bool = False
    deleted_file: bool = False
    rename_from: str | None = None
    rename_to: str | None = None


def _header_facts(chunk: list[str]) -> _HeaderFacts:
    # unidiff guesses renames from the `diff --git` line, which is ambiguous for paths with
    # spaces; git's own extended header lines are exact.
    facts = _HeaderFacts()
    for raw in chunk:
        line = raw.rstrip("\n")
        if line.startswith(("@@", "--- ", "+++ ", "Binary files ")):
            break
        if line.startswith("new file mode "):
            facts.new_file = True
        elif line.startswith("deleted file mode "):
            facts.deleted_file = True
        elif line.startswith("rename from "):
            facts.rename_from = _unquote(line.removeprefix("rename from "))
        elif line.startswith("rename to "):
            facts.rename_to = _unquote(line.removeprefix("rename to "))
    return facts


def _strip_prefix(name: str | None) -> str | None:
    if not name or name == "/dev/null":
        return None
    name = _unquote(name)
    return name[2:] if name[:2] in ("a/", "b/") else name


def _unquote(name: str) -> str:
    """Undo git's C-style quoting of unusual path names."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    body = name[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 == len(body):
            out += char.encode()
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            i += 2
        elif re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out += char.encode()
            i += 1
    return out.decode(errors="replace")
