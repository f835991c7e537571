"""The query file a fresh process answers `locate` from (errands.index.stored) gives the
answers of the index it was written from, and refuses what it cannot read."""

from __future__ import annotations

from collections.abc import Iterator
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
    for key, paths in derived.path_tokens.items():
        assert tables.path_tokens.get(key) == paths
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
