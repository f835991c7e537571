"""A parsed diff turned into rows a template can print: highlighted, numbered, paired for
side-by-side, with the unchanged stretches between hunks as expandable gaps.

Highlighting runs server-side (Pygments) over each hunk's old and new text as a whole, so
strings and comments spanning lines colour correctly, then is cut back into lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from errands.git import Diff, FileDiff, Hunk

RowKind = Literal["context", "added", "removed", "gap"]

# Past these sizes a file's rows are not rendered with the page: the reader asks for them
# (one click), so one generated or vendored file never freezes the whole review.
MAX_ROWS_PER_FILE = 1500
MAX_ROWS_PER_PAGE = 6000
# Lines longer than this are not highlighted (minified code makes Pygments slow).
MAX_HIGHLIGHT_LINE = 2000

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

    @property
    def anchor(self) -> str:
        return f"file-{self.index}"

    @property
    def size(self) -> int:
        return sum(len(h.lines) for h in self.file.hunks)


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
        return [Markup(escape(line)) for line in lines]
    return list(_highlighted(_suffix(path), "\n".join(lines), len(lines)))


def _suffix(path: str) -> str:
    # The lexer depends on the file name only through its suffix (or whole name: Makefile).
    name = path.rsplit("/", 1)[-1]
    return name if "." not in name else "x." + name.rsplit(".", 1)[-1]


# Lexing is most of a review page's server time, and the text of a commit never changes: a
# page seen again (the next subtask, a reload, after a comment) reuses it. Bounded by entries;
# an entry is one side of one hunk.
@lru_cache(maxsize=2048)
def _highlighted(name: str, text: str, count: int) -> tuple[Markup, ...]:
    out = highlight(text, _lexer_for(name), _FORMATTER).split("\n")
    if len(out) < count:  # a lexer that swallowed a trailing empty line
        out += [""] * (count - len(out))
    return tuple(Markup(line) for line in out[:count])


def _hunk_rows(path: str, hunk: Hunk) -> list[Row]:
    old_side = [line.text for line in hunk.lines if line.kind != "added"]
    new_side = [line.text for line in hunk.lines if line.kind != "removed"]
    old_html = iter(highlight_lines(path, old_side))
    new_html = iter(highlight_lines(path, new_side))
    rows: list[Row] = []
    for line in hunk.lines:
        if line.kind == "removed":
            html = next(old_html)
        elif line.kind == "added":
            html = next(new_html)
        else:
            next(old_html)
            html = next(new_html)
        rows.append(Row(line.kind, line.old_no, line.new_no, html))
    return rows


def _gap(start: int, end: int | None, offset: int) -> Row | None:
    if end is not None and end < start:
        return None
    return Row("gap", None, None, Markup(""), gap_start=start, gap_end=end, offset=offset)


def file_rows(file: FileDiff) -> list[Row]:
    rows: list[Row] = []
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
        rows.extend(_hunk_rows(file.path, hunk))
        next_new = hunk.new_start + hunk.new_lines
        offset = (hunk.old_start + hunk.old_lines) - next_new
    # git shows 3 lines of context: a last hunk ending in fewer stopped at the end of file.
    if gaps and file.hunks and not file.truncated and _trailing_context(file.hunks[-1]) >= 3:
        tail = _gap(next_new, None, offset)
        if tail is not None:
            rows.append(tail)
    return rows


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


def build(diff: Diff, *, split: bool, only: str | None = None) -> list[FileView]:
    """Views of every file; the rows of the large ones (or of all past the page budget) are
    left for the reader to load. ``only`` renders that one path in full, whatever its size."""
    views: list[FileView] = []
    budget = MAX_ROWS_PER_PAGE
    for index, file in enumerate(diff.files):
        view = FileView(index=index, file=file)
        views.append(view)
        if only is not None and file.path != only:
            continue
        if file.is_binary or not file.hunks:
            continue
        if only is None and (view.size > MAX_ROWS_PER_FILE or view.size > budget):
            view.deferred = True
            continue
        budget -= view.size
        view.rows = file_rows(file)
        if split:
            view.split = pair(view.rows)
    return views
