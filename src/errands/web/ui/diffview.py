"""A parsed diff turned into rows a template can print: highlighted, numbered, paired for
side-by-side, with the unchanged stretches between hunks as expandable gaps.

Highlighting runs server-side (Pygments) over each hunk's old and new text as a whole, so
strings and comments spanning lines colour correctly, then is cut back into lines. (A hunk is
lexed from its own first line, not from the file's: a string opened above a hunk and closed in
it is coloured as code.)

A page renders its first screens only (``MAX_ROWS_PER_PAGE`` rows; a file may be cut in the
middle) and the reader's browser asks for the rest of a file as it comes near. Lexing is most
of a page's server time, so a page lexes only the rows it prints (a hunk cut short is lexed up
to the cut: the lines above a cut colour as in the whole hunk, as a lexer reads forward), within
a budget; the rest are printed escaped but uncoloured, and the page asks for their colours
afterwards (``highlighted_lines``), upgrading them in place. What is already in the cache costs
nothing and is always printed coloured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from errands.git import Detail, Diff, FileDiff, Hunk

RowKind = Literal["context", "added", "removed", "gap"]

# Past these sizes a file's rows are not rendered with the page: the reader asks for them
# (one click), so one generated or vendored file never freezes the whole review.
MAX_ROWS_PER_FILE = 1500
# Rows a page renders with itself: about two screens. The rest of a file cut there, and the
# files after it, come as the reader scrolls near them (or jumps to them), so a long stack's
# page is quick to open: the browser lays out few rows, the server parses and lexes few lines.
MAX_ROWS_PER_PAGE = 100
# Lines longer than this are not highlighted (minified code makes Pygments slow).
MAX_HIGHLIGHT_LINE = 2000
# Lines a page lexes while it renders (those not cached yet); the rest are coloured afterwards,
# in batches of about as many lines a request.
HIGHLIGHT_BUDGET = 600

# What a page parses of its diff: the files it renders (the others are counted only).
PAGE_DETAIL = Detail(lines=MAX_ROWS_PER_PAGE, largest=MAX_ROWS_PER_FILE)

_FORMATTER = HtmlFormatter(nowrap=True)


@dataclass(frozen=True, slots=True)
class Row:
    kind: RowKind
    old_no: int | None
    new_no: int | None
    html: Markup
    # For a gap: the hidden new-side lines [start, end] (end None: to the end of the file),
    # and what to add to a new line number to get the old one.
    gap_start: int = 0
    gap_end: int | None = None
    offset: int = 0

    @property
    def hidden(self) -> str:
        if self.gap_end is None:
            return "the rest of the file"
        count = self.gap_end - self.gap_start + 1
        return f"{count} unchanged line{'s' if count != 1 else ''}"


@dataclass(frozen=True, slots=True)
class SplitRow:
    left: Row | None
    right: Row | None
    gap: Row | None = None


@dataclass(slots=True)
class FileView:
    index: int
    file: FileDiff
    rows: list[Row] = field(default_factory=list)
    split: list[SplitRow] = field(default_factory=list)
    deferred: bool = False
    # Deferred only because the page's first screens were full: loaded as the reader nears it.
    later: bool = False
    # Some rows are escaped but not highlighted yet: the page asks for them after loading.
    pending: bool = False
    # Cut at the page's last row: ``shown`` rows printed (in the unified layout's count, what
    # the page asks for the rest from), ``more`` hunk lines after them.
    shown: int = 0
    more: int = 0

    @property
    def anchor(self) -> str:
        return f"file-{self.index}"

    @property
    def size(self) -> int:
        return sum(len(h.lines) for h in self.file.hunks) + self.file.unparsed_lines


@lru_cache(maxsize=256)
def _lexer_for(path: str) -> Lexer:
    try:
        lexer: Lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=False)
        return lexer
    except ClassNotFound:
        plain: Lexer = TextLexer(stripnl=False, ensurenl=False)
        return plain


def highlight_lines(path: str, lines: list[str]) -> list[Markup]:
    """HTML for each line, highlighted as one text (Pygments closes its spans per line)."""
    if not lines:
        return []
    if any(len(line) > MAX_HIGHLIGHT_LINE for line in lines):
        return _plain(lines)
    return list(_highlighted(_suffix(path), "\n".join(lines), len(lines)))


def _plain(lines: list[str]) -> list[Markup]:
    return [Markup(escape(line)) for line in lines]


def _cheap(path: str, lines: list[str]) -> list[Markup] | None:
    """The lines' HTML if it costs no lexing (cached, empty, or not highlighted at all)."""
    if not lines or any(len(line) > MAX_HIGHLIGHT_LINE for line in lines):
        return highlight_lines(path, lines)
    cached = _CACHE.peek((_suffix(path), "\n".join(lines), len(lines)))
    return None if cached is None else list(cached)


def _suffix(path: str) -> str:
    # The lexer depends on the file name only through its suffix (or whole name: Makefile).
    name = path.rsplit("/", 1)[-1]
    return name if "." not in name else "x." + name.rsplit(".", 1)[-1]


_Key = tuple[str, str, int]


class _Cache:
    """Least recently used, bounded by entries, safe across the server's threads; ``peek``
    answers without lexing (a page decides what it can afford from it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[_Key, tuple[Markup, ...]] = OrderedDict()
        self.lock = threading.Lock()

    def peek(self, key: _Key) -> tuple[Markup, ...] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: _Key, value: tuple[Markup, ...]) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


# The text of a commit never changes: a page seen again (the next subtask, a reload, after a
# comment) reuses its colours. An entry is one side of one hunk.
_CACHE = _Cache(2048)


def _highlighted(name: str, text: str, count: int) -> tuple[Markup, ...]:
    key = (name, text, count)
    found = _CACHE.peek(key)
    if found is not None:
        return found
    out = highlight(text, _lexer_for(name), _FORMATTER).split("\n")
    if len(out) < count:  # a lexer that swallowed a trailing empty line
        out += [""] * (count - len(out))
    value = tuple(Markup(line) for line in out[:count])
    _CACHE.put(key, value)
    return value


def clear_cache() -> None:
    """Forget every highlighted text (the benchmark's first views start from nothing)."""
    _CACHE.clear()


class _Budget:
    """Lines still to be lexed for this page; once one hunk does not fit, later ones wait too
    (the page is coloured from the top)."""

    def __init__(self, lines: int | None) -> None:
        self.left = lines

    def sides(
        self, path: str, old: list[str], new: list[str]
    ) -> tuple[list[Markup], list[Markup], bool]:
        if self.left is None:
            return highlight_lines(path, old), highlight_lines(path, new), False
        old_html, new_html = _cheap(path, old), _cheap(path, new)
        cost = (len(old) if old_html is None else 0) + (len(new) if new_html is None else 0)
        if cost == 0 or cost <= self.left:
            self.left -= cost
            return (
                old_html if old_html is not None else highlight_lines(path, old),
                new_html if new_html is not None else highlight_lines(path, new),
                False,
            )
        self.left = 0
        return old_html or _plain(old), new_html or _plain(new), True


def _hunk_rows(
    path: str, hunk: Hunk, budget: _Budget, limit: int | None = None
) -> tuple[list[Row], bool]:
    """The hunk's rows (its first ``limit`` only: the lines after them are not lexed)."""
    lines = hunk.lines if limit is None else hunk.lines[:limit]
    old_side = [line.text for line in lines if line.kind != "added"]
    new_side = [line.text for line in lines if line.kind != "removed"]
    old_list, new_list, plain = budget.sides(path, old_side, new_side)
    old_html, new_html = iter(old_list), iter(new_list)
    rows: list[Row] = []
    for line in lines:
        if line.kind == "removed":
            html = next(old_html)
        elif line.kind == "added":
            html = next(new_html)
        else:
            next(old_html)
            html = next(new_html)
        rows.append(Row(line.kind, line.old_no, line.new_no, html))
    return rows, plain


def _gap(start: int, end: int | None, offset: int) -> Row | None:
    if end is not None and end < start:
        return None
    return Row("gap", None, None, Markup(""), gap_start=start, gap_end=end, offset=offset)


def file_rows(file: FileDiff) -> list[Row]:
    """Every row, highlighted."""
    return _file_rows(file, _Budget(None))[0]


def _file_rows(file: FileDiff, budget: _Budget, limit: int | None = None) -> tuple[list[Row], bool]:
    """The file's rows (its first ``limit`` only, gaps counted), and whether any is left
    uncoloured."""
    rows: list[Row] = []
    pending = False
    # A whole added or deleted file has no unchanged lines to show.
    gaps = file.status not in ("added", "deleted")
    next_new = 1
    offset = 0
    for hunk in file.hunks:
        offset = hunk.old_start - hunk.new_start
        if gaps:
            gap = _gap(next_new, hunk.new_start - 1, offset)
            if gap is not None:
                rows.append(gap)
        room = None if limit is None else limit - len(rows)
        if room is not None and room <= 0:
            return rows[:limit], pending
        hunk_rows, plain = _hunk_rows(file.path, hunk, budget, room)
        rows.extend(hunk_rows)
        pending = pending or plain
        if room is not None and room <= len(hunk_rows) and hunk.lines[room:]:
            return rows, pending
        next_new = hunk.new_start + hunk.new_lines
        offset = (hunk.old_start + hunk.old_lines) - next_new
    # git shows 3 lines of context: a last hunk ending in fewer stopped at the end of file.
    if gaps and file.hunks and not file.truncated and _trailing_context(file.hunks[-1]) >= 3:
        tail = _gap(next_new, None, offset)
        if tail is not None:
            rows.append(tail)
    return rows, pending


def _trailing_context(hunk: Hunk) -> int:
    count = 0
    for line in reversed(hunk.lines):
        if line.kind != "context":
            break
        count += 1
    return count


def pair(rows: list[Row]) -> list[SplitRow]:
    """Side by side: a run of removed lines faces the run of added lines after it."""
    out: list[SplitRow] = []
    i = 0
    while i < len(rows):
        row = rows[i]
        if row.kind == "gap":
            out.append(SplitRow(None, None, gap=row))
            i += 1
        elif row.kind == "context":
            out.append(SplitRow(row, row))
            i += 1
        else:
            removed: list[Row] = []
            added: list[Row] = []
            while i < len(rows) and rows[i].kind == "removed":
                removed.append(rows[i])
                i += 1
            while i < len(rows) and rows[i].kind == "added":
                added.append(rows[i])
                i += 1
            for k in range(max(len(removed), len(added))):
                out.append(
                    SplitRow(
                        removed[k] if k < len(removed) else None,
                        added[k] if k < len(added) else None,
                    )
                )
    return out


def build(
    diff: Diff,
    *,
    split: bool,
    only: str | None = None,
    start: int = 0,
    highlight: int | None = None,
) -> list[FileView]:
    """Views of every file; the page's first ``MAX_ROWS_PER_PAGE`` rows are rendered (the
    file they end in is cut there), and the rest (and the large files) are left for the reader
    to load. ``only`` renders that one path in full, whatever its size, from its unified row
    ``start`` on. ``highlight``: how many lines may be lexed (None: all); past it rows are left
    ``pending``.
    """
    views: list[FileView] = []
    budget = MAX_ROWS_PER_PAGE
    lexing = _Budget(highlight)
    for index, file in enumerate(diff.files):
        view = FileView(index=index, file=file)
        views.append(view)
        if only is not None and file.path != only:
            continue
        if file.is_binary or not view.size:
            continue
        if only is not None:
            view.rows, view.pending = _file_rows(file, lexing)
            view.rows = view.rows[start:]
        elif view.size > MAX_ROWS_PER_FILE:
            view.deferred = True  # a click loads it; it takes none of the page's rows
            continue
        elif budget <= 0 or file.unparsed_lines:
            # The files after the first screens wait: the page fills in reading order.
            view.deferred = view.later = True
            budget = 0
            continue
        else:
            view.rows, view.pending = _file_rows(file, lexing, budget)
            view.shown = len(view.rows)
            view.more = view.size - sum(1 for r in view.rows if r.kind != "gap")
            budget -= view.shown if view.more else view.size
        if split:
            view.split = pair(view.rows)
    return views


def batches(views: list[FileView], lines: int = HIGHLIGHT_BUDGET) -> list[list[int]]:
    """The pending files' indexes, in page order, grouped about ``lines`` lines a request."""
    out: list[list[int]] = []
    size = 0
    for view in views:
        if not view.pending:
            continue
        if not out or size + view.size > lines:
            out.append([])
            size = 0
        out[-1].append(view.index)
        size += view.size
    return out


def highlighted_lines(file: FileDiff) -> dict[str, str]:
    """A file's hunk lines highlighted, by ``side:number`` as the page's line buttons name
    them (a context line under both of its numbers): what upgrades a pending file in place."""
    out: dict[str, str] = {}
    for row in file_rows(file):
        if row.kind == "gap":
            continue
        if row.kind != "added":
            out[f"old:{row.old_no}"] = str(row.html)
        if row.kind != "removed":
            out[f"new:{row.new_no}"] = str(row.html)
    return out
