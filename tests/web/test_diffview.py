"""Turning parsed diffs into review rows: pairing, gaps, highlighting, large files."""

from __future__ import annotations

from errands.git import parse_diff
from errands.web.ui import diffview

MIDDLE = """diff --git a/app.py b/app.py
index 1111111..2222222 100644
--- a/app.py
+++ b/app.py
@@ -10,7 +10,8 @@ def run():
     a = 1
     b = 2
     c = 3
-    d = "old"
+    d = "new"
+    e = 5
     f = 6
     g = 7
     h = 8
"""


def test_rows_pair_removed_with_added_and_leave_gaps_to_expand() -> None:
    file = parse_diff(MIDDLE).files[0]
    rows = diffview.file_rows(file)
    assert rows[0].kind == "gap" and (rows[0].gap_start, rows[0].gap_end) == (1, 9)
    assert rows[-1].kind == "gap" and rows[-1].gap_end is None  # more may follow
    assert rows[-1].gap_start == 18 and rows[-1].offset == -1  # old = new - 1 below
    split = diffview.pair(rows)
    changed = [r for r in split if r.left is not r.right and r.gap is None]
    assert [(r.left and r.left.old_no, r.right and r.right.new_no) for r in changed] == [
        (13, 13),
        (None, 14),
    ]
    # Highlighted as Python: the string literal is coloured, the text escaped.
    removed = next(r for r in rows if r.kind == "removed")
    assert 'class="s2"' in removed.html or 'class="s"' in removed.html
    assert "&#34;old&#34;" in removed.html or "&quot;old&quot;" in removed.html


def test_a_hunk_ending_early_reached_the_end_of_the_file() -> None:
    text = MIDDLE.replace("@@ -10,7 +10,8 @@", "@@ -10,5 +10,6 @@").rsplit("     g = 7", 1)[0]
    rows = diffview.file_rows(parse_diff(text).files[0])
    assert rows[-1].kind != "gap"


def test_large_files_wait_for_the_reader_and_binary_files_are_named() -> None:
    big = "".join(f"+line {i}\n" for i in range(diffview.MAX_ROWS_PER_FILE + 1))
    text = (
        "diff --git a/big.txt b/big.txt\nnew file mode 100644\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1,{diffview.MAX_ROWS_PER_FILE + 1} @@\n{big}"
        "diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\n"
        "Binary files a/logo.png and b/logo.png differ\n" + MIDDLE
    )
    views = diffview.build(parse_diff(text), split=False)
    assert [v.file.path for v in views] == ["big.txt", "logo.png", "app.py"]
    assert views[0].deferred and not views[0].rows
    assert views[1].file.is_binary and not views[1].rows
    assert views[2].rows and not views[2].deferred
    # Asked for by name, the large file is rendered in full.
    only = diffview.build(parse_diff(text), split=True, only="big.txt")
    assert len(only[0].rows) == diffview.MAX_ROWS_PER_FILE + 1 and only[0].split
    assert not only[2].rows


def test_minified_lines_are_escaped_not_highlighted() -> None:
    line = "<script>" + "x" * diffview.MAX_HIGHLIGHT_LINE
    html = diffview.highlight_lines("a.js", [line])
    assert html[0].startswith("&lt;script&gt;")


SECOND = MIDDLE.replace("app.py", "lib.py").replace('"old"', '"older"')


def test_past_the_budget_rows_wait_uncoloured_and_the_deferred_lines_match_a_full_render() -> None:
    diffview.clear_cache()
    diff = parse_diff(MIDDLE + SECOND)
    # A budget of one hunk: the first file is coloured, the second printed escaped.
    views = diffview.build(diff, split=False, highlight=len(diff.files[0].hunks[0].lines) * 2)
    assert not views[0].pending and views[1].pending
    assert diffview.batches(views) == [[1]]
    plain = next(r for r in views[1].rows if r.kind == "removed")
    assert "<span" not in plain.html and "&#34;older&#34;" in plain.html
    # What the page asks for afterwards is exactly what a full render prints.
    full = diffview.file_rows(diff.files[1])
    lines = diffview.highlighted_lines(diff.files[1])
    for row in full:
        if row.kind == "gap":
            continue
        side, number = ("old", row.old_no) if row.kind == "removed" else ("new", row.new_no)
        assert lines[f"{side}:{number}"] == str(row.html)
        if row.kind == "context":
            assert lines[f"old:{row.old_no}"] == str(row.html)
    assert len(lines) == sum(2 if r.kind == "context" else 1 for r in full if r.kind != "gap")
    # Now cached, the same page is coloured at once and asks for nothing.
    again = diffview.build(diff, split=True, highlight=0)
    assert not any(v.pending for v in again) and diffview.batches(again) == []
    assert [r.html for r in again[1].rows] == [r.html for r in full]


def test_past_the_first_screens_files_wait_to_be_scrolled_to_in_reading_order() -> None:
    def added(path: str, lines: int) -> str:
        body = "".join(f"+x{i} = {i}\n" for i in range(lines))
        return (
            f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
            f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{lines} @@\n{body}"
        )

    page = diffview.MAX_ROWS_PER_PAGE
    text = added("a.py", page - 10) + added("b.py", 50) + added("c.py", 5)
    views = diffview.build(parse_diff(text), split=False)
    assert views[0].rows and not views[0].deferred and not views[0].more
    # b.py does not fit: its first 10 rows end the page, the rest of it and every file after
    # it (c.py would fit) wait to be scrolled to.
    assert [r.new_no for r in views[1].rows] == list(range(1, 11))
    assert (views[1].shown, views[1].more, views[1].deferred) == (10, 40, False)
    assert views[2].deferred and views[2].later and not views[2].rows
    # The rest of b.py, asked for from its row 10: the same rows a whole file has there.
    rest = diffview.build(parse_diff(text), split=True, only="b.py", start=10)[1]
    whole = diffview.file_rows(parse_diff(text).files[1])
    assert rest.rows == whole[10:] and [r.right for r in rest.split] == whole[10:]
    # Lexed up to the cut only, the rows above it are coloured as in the whole file.
    assert views[1].rows == whole[:10]
    # One file too large to render on its own waits for a click, and takes no budget.
    text = added("big.py", diffview.MAX_ROWS_PER_FILE + 1) + added("d.py", 5)
    views = diffview.build(parse_diff(text), split=False)
    assert views[0].deferred and not views[0].later
    assert views[1].rows and not views[1].deferred


def test_a_page_parses_only_the_files_it_prints() -> None:
    def added(path: str, lines: int) -> str:
        body = "".join(f'+x{i} = "{i}"\n' for i in range(lines))
        return (
            f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
            f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{lines} @@\n{body}"
        )

    page = diffview.MAX_ROWS_PER_PAGE
    text = added("a.py", page - 10) + added("b.py", 50) + added("c.py", 5)
    diff = parse_diff(text, detail=diffview.PAGE_DETAIL)
    assert [bool(f.hunks) for f in diff.files] == [True, True, False]
    views = diffview.build(diff, split=False)
    assert views[1].more == 40 and views[2].later and views[2].size == 5

    # What it prints is what it would from the whole parse.
    def printed(v: diffview.FileView) -> tuple[object, ...]:
        return (v.rows, v.shown, v.more, v.deferred, v.later, v.pending, v.size)

    whole = diffview.build(parse_diff(text), split=False)
    assert [printed(v) for v in views] == [printed(v) for v in whole]
