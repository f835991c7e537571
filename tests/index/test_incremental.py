"""An index brought up to a commit by updates equals a cold build of that commit, field by
field: files, symbols, postings, statistics and history (a property test over random
sequences of commits on a real git repository)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errands.index import CodeIndex
from errands.index.core import REBUILD_SHARE
from errands.index.stored import StoredIndex
from tests.index.conftest import git

DIRS = ["", "pkg/", "pkg/sub/", "lib/", "docs/"]
STEMS = ["alpha", "beta", "gamma", "delta", "epsilon"]
EXTS = [".py", ".py", ".md", ".txt", ".bin"]
WORDS = ["price", "cart", "discount", "total", "round", "parse", "frame", "render"]


@st.composite
def contents(draw: st.DrawFn, ext: str) -> bytes:
    kind = draw(st.sampled_from(["code", "code", "prose", "binary", "oversized"]))
    if kind == "binary":
        return b"\x89PNG\0\0" + bytes(draw(st.lists(st.integers(0, 255), max_size=20)))
    if kind == "oversized":  # past what the index keeps of a file (see paths.too_big)
        return (" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1))) + "\n").encode() * (
            300_000 // 8
        )
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        a, b = draw(st.sampled_from(WORDS)), draw(st.sampled_from(WORDS))
        if kind == "code" and ext == ".py":
            if draw(st.booleans()):
                lines += [f"class {a.title()}{b.title()}:", f"    def {b}_{a}(self, {a}):"]
                lines += [f"        return {a} * {len(lines)}", ""]
            else:
                lines += [f"def {a}_{b}({b}):", f"    return {b} + {a!r}", ""]
        else:
            lines.append(f"The {a} of the {b} {draw(st.sampled_from(WORDS))}.")
    return "\n".join(lines).encode()


def _write(repo: Path, path: str, data: bytes | None) -> None:
    target = repo / path
    if data is None:
        target.unlink()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _commit(data: st.DataObject, repo: Path, files: dict[str, bytes]) -> str:
    """One commit of a few random operations: add, edit, delete, rename, move."""
    draw = data.draw
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["add", "add", "edit", "delete", "rename", "move"]))
        if op != "add" and not files:
            op = "add"
        if op == "add":
            ext = draw(st.sampled_from(EXTS))
            path = draw(st.sampled_from(DIRS)) + draw(st.sampled_from(STEMS)) + ext
            files[path] = draw(contents(ext))
            _write(repo, path, files[path])
            continue
        old = draw(st.sampled_from(sorted(files)))
        if op == "edit":
            files[old] = draw(contents(Path(old).suffix))
            _write(repo, old, files[old])
        elif op == "delete":
            _write(repo, old, None)
            del files[old]
        else:  # rename (a new name) or move (the same name, another directory)
            name = Path(old).name if op == "move" else draw(st.sampled_from(STEMS)) + ".py"
            new = draw(st.sampled_from(DIRS)) + name
            if new in files:
                continue
            moved = files.pop(old)
            _write(repo, old, None)
            files[new] = moved
            _write(repo, new, moved)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "--allow-empty", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def _dump(path: Path) -> dict[str, object]:
    stored = StoredIndex(path)
    try:
        return stored.dump()
    finally:
        stored.close()


def _answers(index: CodeIndex) -> list[object]:
    """What each word scores in both BM25 indexes (which documents are live included,
    which the state leaves to the postings)."""
    found: list[object] = [
        (bm25.top({word: 1.0}, 100), bm25.postings(word))
        for word in WORDS
        for bm25 in (index.file_bm25, index.sym_bm25)
    ]
    for bm25 in (index.file_bm25, index.sym_bm25):  # each document found by its key
        found.append({key: bm25.document(key) for key in bm25.doc_keys if key is not None})
    return found


def assert_same(updated: CodeIndex, fresh: CodeIndex) -> None:
    """Field by field, so a failure names the field that differs."""
    a, b = updated.state(), fresh.state()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs from a fresh build at {fresh.commit[:8]}"


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_an_index_updated_through_any_commits_equals_a_fresh_build(data: st.DataObject) -> None:
    """Each step as the index job takes it: update, save the query file (in place) and the
    index (appended to its journal, or whole when the journal has grown past its bounds),
    then read the index back: base and journal replayed, it equals a fresh build."""
    with tempfile.TemporaryDirectory(prefix="errands-index-prop-") as tmp:
        repo = Path(tmp)
        git(repo, "init", "-q", "-b", "main")
        # A few files first, so that the ones added later share directories, names and
        # words with others (the lookup tables' and postings' lists hold several files).
        files: dict[str, bytes] = {
            f"{d}{stem}.py": "".join(
                f"def {a}_{b}({b}):\n    return {b}\n\n" for b in WORDS[i : i + 4]
            ).encode()
            for i, (d, stem, a) in enumerate(zip(DIRS, STEMS, WORDS, strict=False))
        }
        for path, body in files.items():
            _write(repo, path, body)
        commits = [_commit(data, repo, files) for _ in range(data.draw(st.integers(2, 6)))]
        git_dir = repo / ".git"
        # A short history window, so that updates move it past commits it held.
        window = data.draw(st.integers(1, 4))
        start = data.draw(st.sampled_from(commits))
        index = CodeIndex.build(git_dir, start, history_commits=window)
        saved = repo / "saved.idx"
        # The journal's bounds: past them the index is saved whole (compacted). A tiny
        # repository's base is small, so a share of 0.25 compacts often; 100 never does.
        share = data.draw(st.sampled_from([0.0, 0.25, 100.0]))
        records = data.draw(st.sampled_from([1, 2, 64]))
        index.save(saved, journal_share=share, journal_records=records)
        # Forwards, backwards and sideways through the commits, as a base branch moves.
        for target in data.draw(st.lists(st.sampled_from(commits), min_size=1, max_size=5)):
            # Updated as a fork (as the index job does the index its process holds), which
            # leaves the index it came from as it was, for its readers.
            previous, before = index, copy.deepcopy((index.state(), _answers(index)))
            index = index.fork()
            index.update(git_dir, target)
            assert (previous.state(), _answers(previous)) == before
            fresh = CodeIndex.build(git_dir, target, history_commits=window)
            assert_same(index, fresh)
            query = " ".join(data.draw(st.lists(st.sampled_from(WORDS), min_size=1)))
            assert index.locate(query) == fresh.locate(query)
            # The query file too, updated in place from the last one when it can be: the
            # same contents, and the same answers as the index.
            index.save_query_file(repo / "updated.q")
            fresh.save_query_file(repo / "fresh.q")
            assert _dump(repo / "updated.q") == _dump(repo / "fresh.q")
            stored = StoredIndex(repo / "updated.q")
            assert stored.locate(query) == index.locate(query)
            stored.close()
            # Saved and read back, as the next update (another process) would; the next
            # step goes on from either.
            index.save(saved, journal_share=share, journal_records=records)
            loaded = CodeIndex.load(saved)
            assert_same(loaded, fresh)
            assert loaded.locate(query) == fresh.locate(query)
            if data.draw(st.booleans()):
                index = loaded
        index.save(repo / "saved.idx")
        loaded = CodeIndex.load(repo / "saved.idx")
        assert_same(loaded, index)
        # Read back, it updates as the index it was saved from (its overlay and removed
        # documents, and its query file in place, included).
        target = data.draw(st.sampled_from(commits))
        loaded.update(git_dir, target)
        fresh = CodeIndex.build(git_dir, target, history_commits=window)
        assert_same(loaded, fresh)
        loaded.save_query_file(repo / "updated.q")
        fresh.save_query_file(repo / "fresh.q")
        assert _dump(repo / "updated.q") == _dump(repo / "fresh.q")


def test_an_update_of_a_fork_leaves_the_index_it_came_from_as_it_was(repo: Path) -> None:
    """A file added beside others (a directory, a name it defines and words it holds
    listed with theirs), one edited and one deleted, in a fork: the index forked from
    answers as before, every table, posting and statistic the same; then that file edited
    in a fork of the fork (its documents in the overlay of the index forked from)."""
    _write(repo, "pkg/cart.py", b"def price_cart(cart):\n    return cart.total\n")
    _write(repo, "pkg/round.py", b"def round_price(price):\n    return round(price)\n")
    _write(repo, "lib/parse.py", b"def parse_frame(frame):\n    return frame\n")
    _write(repo, "lib/frame.py", b"def render_frame(frame):\n    return frame\n")
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    _write(repo, "pkg/discount.py", b"def price_cart(cart, rate):\n    return cart.total * rate\n")
    _write(repo, "lib/parse.py", b"def parse_frame(frame, total):\n    return frame\n")
    _write(repo, "lib/frame.py", None)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    _write(repo, "pkg/discount.py", b"def price_cart(cart):\n    return cart.total\n")
    git(repo, "commit", "-q", "-am", "third")  # (the second's file, in the overlay now)
    third = git(repo, "rev-parse", "HEAD")
    index = CodeIndex.build(repo / ".git", first)
    for target in (second, third):
        before = copy.deepcopy((index.state(), _answers(index), index.locate("price cart")))
        fork = index.fork()
        fork.update(repo / ".git", target)
        assert (index.state(), _answers(index), index.locate("price cart")) == before
        assert_same(fork, CodeIndex.build(repo / ".git", target))
        index = fork


def test_a_large_change_is_a_cold_build_and_equals_one(repo: Path) -> None:
    """More than REBUILD_SHARE of the files changed: the update builds afresh (cheaper than
    re-indexing them one by one), and the result is the same index."""
    for i in range(80):
        _write(repo, f"pkg/m{i}.py", f"def f{i}(x):\n    return x + {i}\n".encode())
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    index = CodeIndex.build(repo / ".git", first)
    many = max(33, int(80 * REBUILD_SHARE) + 1)
    for i in range(many):
        _write(repo, f"pkg/m{i}.py", f"def g{i}(y):\n    return y * {i}\n".encode())
    git(repo, "commit", "-q", "-am", "many")
    second = git(repo, "rev-parse", "HEAD")
    changed = index.update(repo / ".git", second)
    assert len(changed) == many
    assert_same(index, CodeIndex.build(repo / ".git", second))
    assert not index.file_bm25.fragmented  # a bulk build, not an overlay of many documents


def test_a_fork_of_a_fragmented_index_is_compacted(repo: Path) -> None:
    """A process that forks its index for every update does not keep every update's
    removed and overlay documents: the fork of a fragmented index is compacted."""
    for i in range(4):
        _write(repo, f"pkg/m{i}.py", f"def f{i}(x):\n    return x + {i}\n".encode())
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "first")
    index = CodeIndex.build(repo / ".git", git(repo, "rev-parse", "HEAD"))
    for round_no in range(20):  # 80 documents removed and added: past the 64 tolerated
        for i in range(4):
            _write(repo, f"pkg/m{i}.py", f"def g{i}(y):\n    return y * {round_no}\n".encode())
        git(repo, "commit", "-q", "-am", "edit")
        index = index.fork()
        index.update(repo / ".git", git(repo, "rev-parse", "HEAD"))
    assert not index.sym_bm25.fragmented and not index.file_bm25.fragmented
    assert_same(index, CodeIndex.build(repo / ".git", index.commit))


def test_history_counts_the_commits_in_the_window_of_the_commit_indexed(repo: Path) -> None:
    """Churn and age are those of the commit being indexed: after an update, a file changed
    in 3 of the last 4 commits reads 3, as git log says (not 1 more per update)."""
    shas = []
    for i in range(5):
        _write(repo, "hot.py", f"def hot():\n    return {i}\n".encode())
        _write(repo, f"cold{i}.py", b"x = 1\n")
        git(repo, "add", "--all")
        git(repo, "commit", "-q", "-m", f"c{i}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    index = CodeIndex.build(repo / ".git", shas[0], history_commits=4)
    index.update(repo / ".git", shas[4])
    assert index.churn("hot.py") == 4
    assert index.churn("cold0.py") == 0  # its commit has left the window
    assert index.age("cold3.py") == 1
    index.update(repo / ".git", shas[2])
    assert index.churn("hot.py") == 3
    assert index.age("cold2.py") == 0
    assert index.age("cold3.py") is None
