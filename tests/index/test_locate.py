"""Localization, search, incremental updates and persistence on a real small repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errands.index import CodeIndex, Located, build
from errands.index.locate import _CALL
from tests.index.conftest import Commit, git

FILES: dict[str, str | bytes | None] = {
    "shop/__init__.py": "",
    "shop/cart.py": (
        "from shop.pricing import apply_discount\n\n\n"
        "class Cart:\n"
        "    def __init__(self):\n"
        "        self.items = []\n\n"
        "    def total(self):\n"
        "        return apply_discount(sum(self.items))\n"
    ),
    "shop/pricing.py": (
        "def apply_discount(amount):\n"
        "    # the discount is a percentage of the amount\n"
        "    return amount * 0.9\n\n\n"
        "class PriceRounder:\n"
        "    def round_price(self, value):\n"
        "        return round(value, 2)\n"
    ),
    "shop/inventory.py": (
        "class Stock:\n    def reserve(self, sku):\n        return sku\n\n\n"
        "def restock(stock, amount):\n    return amount\n"
    ),
    "shop/shipping.py": "def shipping_cost(weight):\n    return weight * 2\n",
    "tests/test_pricing.py": (
        "from shop.pricing import apply_discount, PriceRounder\n\n\n"
        "def test_discount():\n    assert apply_discount(100) == 90\n"
    ),
    "docs/pricing.md": "# Pricing\n\nDiscounts, rounding, PriceRounder and the amount.\n",
}


@pytest.fixture
def built(repo: Path, commit: Commit) -> tuple[Path, CodeIndex]:
    head = commit(FILES, "initial")
    return repo / ".git", CodeIndex.build(repo / ".git", head)


def _paths(located: list[Located]) -> list[str]:
    return [loc.path for loc in located]


def test_traceback_path_ranks_its_file_first(built: tuple[Path, CodeIndex]) -> None:
    _git_dir, index = built
    text = (
        "Checkout crashes when the cart is empty:\n\n"
        "Traceback (most recent call last):\n"
        '  File "/home/me/app/main.py", line 3, in <module>\n'
        '  File "/usr/lib/python3/site-packages/shop/inventory.py", line 6, in restock\n'
        "ZeroDivisionError: division by zero\n"
    )
    top = index.locate(text)[0]
    assert top.path == "shop/inventory.py"
    assert "traceback names this file" in top.reasons


def test_backticked_identifier_ranks_its_defining_file_first(
    built: tuple[Path, CodeIndex],
) -> None:
    _git_dir, index = built
    located = index.locate(
        "Prices with many decimals: `PriceRounder` should use banker's rounding."
    )
    assert located[0].path == "shop/pricing.py"
    assert any("PriceRounder" in reason for reason in located[0].reasons)
    assert [s.name for s in located[0].symbols][:1] == ["PriceRounder"]
    # The test and the docs that mention it stay rankable, below the source.
    assert "tests/test_pricing.py" in _paths(located)[1:]


def test_dotted_module_and_plain_words(built: tuple[Path, CodeIndex]) -> None:
    _git_dir, index = built
    assert index.locate("see shop.shipping.shipping_cost for heavy parcels")[0].path == (
        "shop/shipping.py"
    )
    # No signal in the text but words: lexical and path matches still find it.
    assert index.locate("the stock reservation for a sku is wrong")[0].path == ("shop/inventory.py")
    assert index.locate("") == []


def test_search_returns_path_line_snippet(built: tuple[Path, CodeIndex]) -> None:
    git_dir, index = built
    hits = index.search(git_dir, "apply_discount")
    assert ("shop/pricing.py", 1, "def apply_discount(amount):") in hits
    assert all(isinstance(line, int) and line >= 1 for _p, line, _s in hits)
    assert index.search(git_dir, "round_price", limit=1) == [
        ("shop/pricing.py", 7, "def round_price(self, value):")
    ]
    assert index.search(git_dir, "   ") == []
    assert index.text(git_dir, "shop/pricing.py").startswith("def apply_discount(amount):\n")


def test_search_reads_the_indexed_commit_not_the_branch_tip(
    built: tuple[Path, CodeIndex], commit: Commit
) -> None:
    git_dir, index = built
    commit({"shop/pricing.py": "def apply_discount(amount):\n    return 0  # changed\n"})
    hits = index.search(git_dir, "apply_discount")
    assert ("shop/pricing.py", 2, "# the discount is a percentage of the amount") in hits


def test_search_skips_files_the_repository_lost(
    built: tuple[Path, CodeIndex], tmp_path: Path
) -> None:
    from errands.errors import GitError

    _git_dir, index = built
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    assert index.search(empty, "apply_discount") == []
    with pytest.raises(GitError):
        index.text(empty, "shop/pricing.py")


def test_update_reindexes_only_changed_files(built: tuple[Path, CodeIndex], commit: Commit) -> None:
    git_dir, index = built
    before = {p: index.symbols(p) for p in index.paths}
    head = commit(
        {
            "shop/shipping.py": "def express_cost(weight):\n    return weight * 5\n",
            "shop/inventory.py": None,
        },
        "rework shipping",
    )
    changed = index.update(git_dir, head)
    assert sorted(changed) == ["shop/inventory.py", "shop/shipping.py"]
    assert index.commit == head
    assert "shop/inventory.py" not in index.paths
    assert "shop/inventory.py" not in _paths(index.locate("`restock` fails"))
    assert [s.name for s in index.symbols("shop/shipping.py")] == ["express_cost"]
    assert index.locate("`express_cost` is too high")[0].path == "shop/shipping.py"
    assert not [hit for hit in index.search(git_dir, "shipping_cost") if "shipping_cost" in hit[2]]
    for path, symbols in before.items():
        if path not in changed:
            assert index.symbols(path) == symbols
    # The same as a fresh build of that commit.
    fresh = CodeIndex.build(git_dir, head)
    assert fresh.paths == index.paths
    assert fresh.symbol_count == index.symbol_count
    assert index.update(git_dir, head) == []


def test_save_load_round_trip(built: tuple[Path, CodeIndex], tmp_path: Path) -> None:
    git_dir, index = built
    target = tmp_path / "data" / "index.bin"
    index.save(target)
    loaded = CodeIndex.load(target)
    assert loaded.commit == index.commit
    assert loaded.paths == index.paths
    assert loaded.symbol_count == index.symbol_count
    assert loaded.languages == index.languages
    text = "`PriceRounder` rounds wrong"
    assert _paths(loaded.locate(text)) == _paths(index.locate(text))
    assert loaded.search(git_dir, "apply_discount") == index.search(git_dir, "apply_discount")


def test_load_rejects_garbage(tmp_path: Path) -> None:
    from errands.errors import InvalidInput

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not an index")
    with pytest.raises(InvalidInput):
        CodeIndex.load(bad)


def test_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    from errands.errors import GitError

    with pytest.raises(GitError):
        CodeIndex.build(tmp_path, "HEAD")


def test_bare_repository_and_progress(built: tuple[Path, CodeIndex], tmp_path: Path) -> None:
    git_dir, index = built
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_dir), str(bare))
    seen: list[tuple[int, int]] = []
    copy = CodeIndex.build(
        bare, index.commit, progress=lambda done, total: seen.append((done, total))
    )
    assert copy.paths == index.paths
    assert seen and seen[-1][0] == seen[-1][1]


def test_parallel_build_equals_serial_build(
    built: tuple[Path, CodeIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    git_dir, serial = built
    monkeypatch.setattr(build, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(build, "PARALLEL_MIN_COST", 0)
    monkeypatch.setattr(build, "_BATCH_FILES", 2)
    if build._workers() < 2:
        monkeypatch.setattr(build, "_workers", lambda: 2)
    parallel = CodeIndex.build(git_dir, serial.commit)
    assert parallel.paths == serial.paths
    for path in serial.paths:
        assert parallel.symbols(path) == serial.symbols(path)
        assert parallel.imports(path) == serial.imports(path)
    for mine, theirs in (
        (parallel.file_bm25, serial.file_bm25),
        (parallel.sym_bm25, serial.sym_bm25),
    ):
        assert mine.doc_keys == theirs.doc_keys
        assert mine.doc_len == theirs.doc_len
        assert mine.vocab.keys() == theirs.vocab.keys()  # ids differ: words arrive in any order
        assert all(mine.postings(t) == theirs.postings(t) for t in theirs.vocab)
    query = "`apply_discount` rounds the price wrong"
    assert parallel.locate(query) == serial.locate(query)


def test_concurrent_saves_each_replace_the_index_whole(
    built: tuple[Path, CodeIndex], tmp_path: Path
) -> None:
    """The index job and a research job may save the same project's index at once."""
    import threading

    _, index = built
    target = tmp_path / "index" / "project.idx"
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(20):
                index.save(target)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert CodeIndex.load(target).paths == index.paths
    # No temp files left: the index, its writers' lock and perhaps a journal.
    left = {p.name for p in target.parent.iterdir()}
    assert (
        {"project.idx", "project.idx.lock"}
        <= left
        <= {"project.idx", "project.idx.lock", "project.idx.journal"}
    )


def test_a_failure_in_a_worker_process_fails_the_build(
    built: tuple[Path, CodeIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    from errands.index.analyse import Analysed, analyse

    git_dir, index = built
    monkeypatch.setattr(build, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(build, "PARALLEL_MIN_COST", 0)
    monkeypatch.setattr(build, "_CLAIM_COST", 1)  # one file per claim
    if build._workers() < 2:
        monkeypatch.setattr(build, "_workers", lambda: 2)
    parent = os.getpid()

    def failing(path: str, blob: str, data: bytes) -> Analysed | None:
        if os.getpid() == parent:
            time.sleep(0.05)  # slow here, so the worker surely claims files too
            return analyse(path, blob, data)
        raise ValueError(f"cannot analyse {path} in a worker")

    monkeypatch.setattr(build, "analyse", failing)
    with pytest.raises(ValueError, match="in a worker"):
        CodeIndex.build(git_dir, index.commit)


def test_a_file_named_after_a_word_of_the_text_ranks_first(repo: Path, commit: Commit) -> None:
    """`rule L027` names rules/L027.py: its fixtures, named alike, do not dilute that, and
    the file's own name counts more than a directory sharing the word."""
    head = commit(
        {
            "lint/rules/L027.py": "def check(segment):\n    return segment\n",
            "lint/rules/L028.py": "def check(segment):\n    return None\n",
            "tests/fixtures/L027.yml": "rule: L027\ncases: []\n",
            "tests/rules/test_L027.py": "def test_it():\n    pass\n",
            "lint/l027/helpers.py": "def helper():\n    return 1\n",
        }
    )
    index = CodeIndex.build(repo / ".git", head)
    top = index.locate("Accessing struct elements evades rule L027")[0]
    assert top.path == "lint/rules/L027.py"
    assert "the file is named `l027`" in top.reasons


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="aZ_9\u00e9\u0663 (\t\n.x", max_size=16))
def test_calls_are_found_as_the_plain_pattern_finds_them(text: str) -> None:
    # _CALL starts only where a word starts (linear on a long word, where the plain
    # pattern was quadratic), and must find the very same names.
    assert _CALL.findall(text) == re.findall(r"([A-Za-z_]\w*)\s*\(", text)
