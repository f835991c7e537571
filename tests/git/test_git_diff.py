from __future__ import annotations

import json
from pathlib import Path

from errands.git import Detail, Diff, FileDiff, Mirror, diffcache, parse_diff
from errands.git.diff import DEFAULT_MAX_LINES_PER_FILE
from errands.git.mirror import DEFAULT_MAX_DIFF_BYTES
from tests.git.git_helpers import commit_files, sh


def _file(diff: Diff, path: str) -> FileDiff:
    return next(f for f in diff.files if f.path == path)


def _diff_after(
    tmp_path: Path,
    repo: Path,
    files: dict[str, str | bytes | None],
    *,
    max_lines_per_file: int = DEFAULT_MAX_LINES_PER_FILE,
    max_bytes: int = DEFAULT_MAX_DIFF_BYTES,
) -> Diff:
    before = sh(repo, "rev-parse", "HEAD").strip()
    after = commit_files(repo, files, "change")
    mirror = Mirror.create(tmp_path / "mirror.git", str(repo))
    return mirror.diff(before, after, max_lines_per_file=max_lines_per_file, max_bytes=max_bytes)


def test_added_deleted_modified_and_renamed(tmp_path: Path, user_repo: Path) -> None:
    body = "".join(f"line {i}\n" for i in range(20))
    commit_files(user_repo, {"old_name.txt": body, "gone.txt": "bye\n"}, "setup")
    sh(user_repo, "mv", "old_name.txt", "new name.txt")
    diff = _diff_after(
        tmp_path,
        user_repo,
        {
            "new name.txt": body.replace("line 3\n", "line three\n"),
            "gone.txt": None,
            "added.txt": "one\ntwo\n",
            "README.md": "hello\nworld\n",
        },
    )
    assert {f.path: f.status for f in diff.files} == {
        "README.md": "modified",
        "added.txt": "added",
        "gone.txt": "deleted",
        "new name.txt": "renamed",
    }
    renamed = _file(diff, "new name.txt")
    assert renamed.old_path == "old_name.txt"
    assert (renamed.additions, renamed.deletions) == (1, 1)
    assert _file(diff, "added.txt").old_path is None
    assert (_file(diff, "gone.txt").additions, _file(diff, "gone.txt").deletions) == (0, 1)
    assert (diff.additions, diff.deletions) == (4, 2)

    readme = _file(diff, "README.md")
    [hunk] = readme.hunks
    assert hunk.header.startswith("@@ -1 +1,2 @@")
    assert [(line.kind, line.old_no, line.new_no, line.text) for line in hunk.lines] == [
        ("context", 1, 1, "hello"),
        ("added", None, 2, "world"),
    ]


def test_binary_files_have_no_hunks(tmp_path: Path, user_repo: Path) -> None:
    commit_files(user_repo, {"img.bin": b"\x89PNG\x00\x01\x02"}, "binary")
    diff = _diff_after(tmp_path, user_repo, {"img.bin": b"\x89PNG\x00\x03", "new.bin": b"\0\0"})
    for path, status in (("img.bin", "modified"), ("new.bin", "added")):
        binary = _file(diff, path)
        assert binary.is_binary
        assert binary.status == status
        assert binary.hunks == []


def test_non_utf8_content_is_replaced_not_fatal(tmp_path: Path, user_repo: Path) -> None:
    diff = _diff_after(tmp_path, user_repo, {"latin1.txt": "café\n".encode("latin-1")})
    [line] = _file(diff, "latin1.txt").hunks[0].lines
    assert line.text == "caf\ufffd"


def test_long_files_are_truncated(tmp_path: Path, user_repo: Path) -> None:
    big = "".join(f"{i}\n" for i in range(100))
    diff = _diff_after(
        tmp_path, user_repo, {"big.txt": big, "small.txt": "x\n"}, max_lines_per_file=10
    )
    big_file = _file(diff, "big.txt")
    assert big_file.truncated
    assert big_file.additions == 100  # counted over the whole file
    [hunk] = big_file.hunks
    assert len(hunk.lines) == 10
    assert (hunk.new_start, hunk.new_lines) == (1, 100)  # git's header, not the cut one
    assert not _file(diff, "small.txt").truncated


def test_diff_output_is_capped_in_bytes(tmp_path: Path, user_repo: Path) -> None:
    files: dict[str, str | bytes | None] = {f"f{i:02}.txt": "x\n" * 50 for i in range(30)}
    diff = _diff_after(tmp_path, user_repo, files, max_bytes=2000)
    assert diff.truncated
    assert 0 < len(diff.files) < 30
    assert all(len(f.hunks[0].lines) == 50 for f in diff.files)  # no half-read file


def test_diff_from_the_empty_tree(tmp_path: Path, user_repo: Path) -> None:
    mirror = Mirror.create(tmp_path / "mirror.git", str(user_repo))
    root = sh(user_repo, "rev-list", "--max-parents=0", "HEAD").strip()
    diff = mirror.diff(None, root)
    assert {f.path for f in diff.files} == {"README.md", "src/app.py"}
    assert all(f.status == "added" for f in diff.files)


def test_to_dict_is_json_serialisable(tmp_path: Path, user_repo: Path) -> None:
    diff = _diff_after(tmp_path, user_repo, {"README.md": "changed\n"})
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["files"][0]["hunks"][0]["lines"][0]["kind"] == "removed"
    assert diff.files[0].to_dict()["path"] == "README.md"


def test_parse_cuts_a_hunk_midway_and_keeps_no_newline_markers() -> None:
    text = (
        "diff --git a/a.txt b/a.txt\n"
        "index 1111111..2222222 100644\n"
        "--- a/a.txt\n"
        "+++ b/a.txt\n"
        "@@ -1,3 +1,3 @@ def f():\n"
        " keep\n"
        "-old\n"
        "+new\n"
        " tail\n"
        "@@ -10 +10 @@\n"
        "-x\n"
        "\\ No newline at end of file\n"
        "+y\n"
        "\\ No newline at end of file\n"
        'diff --git "a/tab\\there" "b/tab\\there"\n'
        "new file mode 100644\n"
        "index 0000000..3333333\n"
        "--- /dev/null\n"
        '+++ "b/tab\\there"\n'
        "@@ -0,0 +1 @@\n"
        "+\r\n"
    )
    full = parse_diff(text)
    assert [f.path for f in full.files] == ["a.txt", "tab\there"]
    assert full.files[0].hunks[1].lines[1].text == "y"
    assert full.files[1].hunks[0].lines[0].text == "\r"
    assert full.files[0].hunks[0].header == "@@ -1,3 +1,3 @@ def f():"

    cut = parse_diff(text, max_lines_per_file=3)
    first = cut.files[0]
    assert first.truncated
    assert [len(h.lines) for h in first.hunks] == [3]
    assert (first.additions, first.deletions) == (2, 2)
    assert not cut.files[1].truncated


def test_parse_empty() -> None:
    assert parse_diff("") == Diff(files=[], additions=0, deletions=0)


def test_detail_parses_the_files_picked_and_counts_the_others(
    tmp_path: Path, user_repo: Path
) -> None:
    body = "".join(f"line {i}\n" for i in range(20))
    commit_files(user_repo, {"old_name.txt": body, "img.bin": b"\x89PNG\x00"}, "setup")
    sh(user_repo, "mv", "old_name.txt", "new name.txt")
    files: dict[str, str | bytes | None] = {
        "new name.txt": body.replace("line 3\n", "line three\n"),
        "img.bin": b"\x89PNG\x00\x01",
        "a.txt": "one\ntwo\n",
        "z.txt": "".join(f"{i}\n" for i in range(40)),
    }
    before = sh(user_repo, "rev-parse", "HEAD").strip()
    after = commit_files(user_repo, files, "change")
    mirror = Mirror.create(tmp_path / "mirror.git", str(user_repo))
    full = mirror.diff(before, after, max_lines_per_file=30)
    # Nothing picked: every file's paths, status and counts, no hunks.
    summary = mirror.diff(before, after, max_lines_per_file=30, detail=Detail())
    strip = {"hunks": [], "unparsed_lines": 0}
    for whole, counted in zip(full.files, summary.files, strict=True):
        assert counted.hunks == [] and counted.unparsed_lines == sum(
            len(h.lines) for h in whole.hunks
        )
        assert counted.to_dict() | strip == whole.to_dict() | strip
    assert (summary.additions, summary.deletions) == (full.additions, full.deletions)
    # The first 3 lines' worth (a.txt), skipping the files over 25 lines, plus one by path.
    picked = mirror.diff(
        before,
        after,
        max_lines_per_file=30,
        detail=Detail(lines=3, largest=25, paths=frozenset({"new name.txt"})),
    )
    parsed = {f.path for f in picked.files if f.hunks}
    assert parsed == {"a.txt", "new name.txt"}
    for whole, got in zip(full.files, picked.files, strict=True):
        if got.path in parsed:
            assert got == whole
    by_index = parse_diff(
        sh(user_repo, "diff", before, after), detail=Detail(indexes=frozenset({3}))
    )
    assert [bool(f.hunks) for f in by_index.files] == [False, False, False, True]


def test_diffs_of_commit_ids_are_remembered_and_of_branch_names_never(
    tmp_path: Path, user_repo: Path
) -> None:
    diffcache.clear()
    before = sh(user_repo, "rev-parse", "HEAD").strip()
    first = commit_files(user_repo, {"a.txt": "one\n"}, "one")
    mirror = Mirror.create(tmp_path / "mirror.git", str(user_repo))
    by_ids = mirror.diff(before, first)
    key = diffcache.key_of(str(mirror.path), before, first, DEFAULT_MAX_DIFF_BYTES)
    assert key is not None and diffcache.get(key) is not None
    assert mirror.diff(f"{first}^", first) == by_ids  # a parent of an id is fixed too
    # A name can come to mean another commit: never remembered.
    for old, new in (("HEAD~1", first), (before, "HEAD"), (before[:12], first)):
        assert diffcache.key_of(str(mirror.path), old, new, DEFAULT_MAX_DIFF_BYTES) is None
    sh(mirror.path, "update-ref", "refs/heads/moving", first)
    assert [f.path for f in mirror.diff(before, "moving").files] == ["a.txt"]
    second = commit_files(user_repo, {"b.txt": "two\n"}, "two")
    sh(mirror.path, "fetch", "-q", "origin", f"{second}:refs/heads/moving", "--force")
    assert [f.path for f in mirror.diff(before, "moving").files] == ["a.txt", "b.txt"]
    # Remembered output still honours each call's own limits and detail.
    assert mirror.diff(before, second, detail=Detail()).files[0].hunks == []
    assert mirror.diff(before, second).files[0].hunks
