"""The query file a fresh process answers `locate` from (errands.index.stored) gives the
answers of the index it was written from, and refuses what it cannot read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from errands.errors import InvalidInput
from errands.index import CodeIndex
from errands.index.locate import evidence
from errands.index.stored import StoredIndex
from tests.index.conftest import Commit
from tests.index.test_locate import FILES

QUERIES = [
    "Checkout crashes when the cart is empty:\n\nTraceback (most recent call last):\n"
    '  File "/usr/lib/python3/site-packages/shop/inventory.py", line 6, in restock\n'
    "ZeroDivisionError: division by zero\n",
    "`PriceRounder.round_price` rounds the discount wrongly (see shop/pricing.py)",
    "shop.cart.Cart total ignores the apply_discount percentage",
    "shipping cost by weight, and the stock reserve",
    "nothing here matches xyzzy",
]


@pytest.fixture
def index_and_file(
    repo: Path, commit: Commit, tmp_path: Path
) -> Iterator[tuple[CodeIndex, StoredIndex]]:
    index = CodeIndex.build(repo / ".git", commit(FILES, "initial"))
    index.save_query_file(tmp_path / "index.q")
    stored = StoredIndex(tmp_path / "index.q")
    yield index, stored
    stored.close()


@pytest.mark.parametrize("query", QUERIES)
def test_the_query_file_answers_as_the_index(
    index_and_file: tuple[CodeIndex, StoredIndex], query: str
) -> None:
    index, stored = index_and_file
    assert stored.commit == index.commit and stored.files == index.files
    assert evidence(stored, query) == evidence(index, query)
    assert stored.locate(query, limit=20) == index.locate(query, limit=20)


def test_every_symbol_and_lookup_is_there(index_and_file: tuple[CodeIndex, StoredIndex]) -> None:
    index, stored = index_and_file
    for path in index.paths:
        assert stored.symbols(path) == index.symbols(path)
        for i, sym in enumerate(index.symbols(path)):
            assert stored.symbol_at(f"{path}\0{i}") == sym
        assert stored.symbol_at(f"{path}\0{len(index.symbols(path))}") is None
    derived = index.derived()
    tables = stored.derived()
    for name, syms in derived.defs.items():
        assert tables.defs.get(name) == syms
        for most in (1, 2, 25):
            assert tables.defined_in(name, most) == derived.defined_in(name, most)
    for key, paths in derived.path_tokens.items():
        assert tables.path_tokens.get(key) == paths
        assert tables.named_by(key) == derived.named_by(key) == len(paths)
    assert tables.basenames.get("no-such-file.py") is None


def test_a_file_that_is_not_a_query_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.q"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(InvalidInput):
        StoredIndex(junk)
    with pytest.raises(InvalidInput):
        StoredIndex(tmp_path / "missing.q")


def test_the_query_file_is_readable_by_its_owner_only(
    index_and_file: tuple[CodeIndex, StoredIndex], tmp_path: Path
) -> None:
    # It names a private repository's files and symbols, as the pickled index does.
    index, _stored = index_and_file
    index.save(tmp_path / "index.idx")
    assert (tmp_path / "index.q").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "index.idx").stat().st_mode & 0o777 == 0o600


def test_an_update_rewrites_only_the_changed_files_rows_in_place(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """A one-file change: the query file is updated where it is (the same file, one more
    version), the other files keep their rows and ids, and it holds what a fresh build's
    file holds; a reader opened before the update answers from the new version."""
    first = commit(FILES, "initial")
    index = CodeIndex.build(repo / ".git", first)
    target = tmp_path / "index.q"
    assert index.save_query_file(target) is False  # a cold build: written whole
    reader = StoredIndex(target)
    before = reader.rows("SELECT id, path FROM files ORDER BY id")
    inode = target.stat().st_ino
    second = commit(
        {
            "shop/pricing.py": "def round_price(value):\n    return round(value, 3)\n\n"
            "def shipping_by_zone(zone):\n    return 4\n",
            "shop/cart.py": None,
        }
    )
    index.update(repo / ".git", second)
    assert index.save_query_file(target) is True
    assert target.stat().st_ino == inode
    after = dict(reader.rows("SELECT path, id FROM files"))
    kept = [(fid, p) for fid, p in before if p not in ("shop/pricing.py", "shop/cart.py")]
    assert all(after[p] == fid for fid, p in kept)
    assert "shop/cart.py" not in after
    fresh = CodeIndex.build(repo / ".git", second)
    fresh.save_query_file(tmp_path / "fresh.q")
    with closing(StoredIndex(tmp_path / "fresh.q")) as fresh_file:
        assert reader.dump() == fresh_file.dump()
    for query in [*QUERIES, "shipping_by_zone for a zone"]:
        assert reader.locate(query, limit=20) == fresh.locate(query, limit=20)
    assert reader.commit == second
    reader.close()


def test_an_update_of_many_documents_writes_the_file_whole(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """Past a quarter of the base in added and removed documents, queries would read
    mostly rows: the file is written afresh instead (a new file, the same contents)."""
    files: dict[str, str | bytes | None] = {
        f"pkg/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(300)
    }
    index = CodeIndex.build(repo / ".git", commit(files, "initial"))
    target = tmp_path / "index.q"
    index.save_query_file(target)
    inode = target.stat().st_ino
    for start, in_place in ((0, True), (30, False)):  # 30 files: under REBUILD_SHARE
        changed: dict[str, str | bytes | None] = {
            f"pkg/m{i}.py": f"def g{i}(y):\n    return y * {i}\n" for i in range(start, start + 30)
        }
        index.update(repo / ".git", commit(changed))
        assert index.save_query_file(target) is in_place
    assert target.stat().st_ino != inode
    fresh = CodeIndex.build(repo / ".git", index.commit)
    fresh.save_query_file(tmp_path / "fresh.q")
    with closing(StoredIndex(target)) as got, closing(StoredIndex(tmp_path / "fresh.q")) as want:
        assert got.dump() == want.dump()
