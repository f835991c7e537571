"""What a saved index packs compactly reads back as it was: symbols' strings, and the
lookup tables keyed by path words."""

from __future__ import annotations

import pickle
from pathlib import Path

from errands.index import CodeIndex
from errands.index.analyse import FileInfo, pack_files, unpack_files
from errands.index.model import Symbol
from errands.index.packed import join_strings, split_strings
from errands.index.tables import Derived, saved_tables
from tests.index.conftest import Commit


def test_strings_read_back_as_they_were_each_distinct_one_shared() -> None:
    strings = ["__init__", None, "Cart", "", "__init__", "naïve", "a\0b", None, "Cart", "x\ny"]
    joined, lengths, places = join_strings(strings)
    assert joined.count("__init__") == 1  # written once
    back = split_strings(joined, lengths, places)
    assert back == strings
    assert back[0] is back[4] and back[2] is back[8]
    assert split_strings(*join_strings([])) == []


def test_the_tables_read_back_equal_the_tables_made_from_the_files() -> None:
    paths = ["src/shop/cart.py", "src/shop/__init__.py", "lib/x y/odd\nname.py", "a.py", "b.txt"]
    files = [
        FileInfo(p, "0" * 40, 1, None, (Symbol("Cart", "class", p, 1, 2, None),), ()) for p in paths
    ]
    assert Derived.restored(saved_tables(paths), files) == Derived.of(files)
    assert Derived.restored(saved_tables([]), []) == Derived.of([])


def test_a_cold_build_read_back_keeps_one_vocabulary_for_both_indexes(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    head = commit({"a.py": "def alpha(beta):\n    return beta\n", "b.md": "gamma delta\n"})
    CodeIndex.build(repo / ".git", head).save(tmp_path / "saved.idx")
    loaded = CodeIndex.load(tmp_path / "saved.idx")
    assert loaded.file_bm25.vocab.flat() is loaded.sym_bm25.vocab.flat()
    assert loaded.file_bm25.df_of("gamma") == 1 and loaded.sym_bm25.df_of("gamma") == 0


def test_a_files_symbols_kept_column_by_column_read_back_as_they_were() -> None:
    syms = (
        Symbol("Cart", "class", "shop/cart.py", 1, 40, None),
        Symbol("total", "method", "shop/cart.py", 3, 9, "Cart"),
        Symbol("naïve", "function", "shop/cart.py", 70_000, 70_010, None),
    )
    info = FileInfo("shop/cart.py", "b" * 40, 123, "python", syms, ("os",))
    assert info.symbols == syms and info.symbol_count == 3
    assert [info.symbol(i) for i in range(4)] == [*syms, None]
    assert info.symbol_names == ("Cart", "total", "naïve")
    assert info.symbols_named("total") == [syms[1]] and info.symbols_named("nowhere") == []
    back = pickle.loads(pickle.dumps(info))  # as a worker's batch sends it
    assert back == info and back.symbols == syms
    assert back.symbol_names[0] is syms[0].name  # interned, shared with this process's
    empty = FileInfo("README.md", "c" * 40, 5, None, (), ())
    assert empty.symbols == () and empty.symbol(0) is None and empty != info
    packed = unpack_files(pack_files([info, empty]))
    assert packed == {"shop/cart.py": info, "README.md": empty}
