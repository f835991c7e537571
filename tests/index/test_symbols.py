"""Symbols per language, extracted from real files in a real repository."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errands.index import CodeIndex, build
from errands.index.analyse import CHUNK_MAX_LINES, analyse, chunk_ranges, chunk_spans, doc_words
from errands.index.bm25 import BM25
from errands.index.build import PARALLEL_MIN_FILES
from errands.index.lexical import term_counts, terms_of_words, tokens
from errands.index.model import Symbol
from errands.index.symbols import parse
from tests.index.conftest import Commit

SOURCES = {
    "pkg/shapes.py": """\
import os
from pkg.base import Base

LIMIT = 10


class Circle(Base):
    def area(self):
        return 3.14


def make_circle():
    return Circle()
""",
    "web/app.js": """\
import { x } from "./lib.js";

class Widget {
  render() {
    return 1;
  }
}

function mount() {}
const helper = () => 2;
""",
    "web/types.ts": """\
import { y } from "./other";

export interface Shape {
  area(): number;
}

export class Square implements Shape {
  area(): number {
    return 4;
  }
}

type Id = string;
""",
    "cmd/main.go": """\
package main

import "fmt"

type Server struct {
	port int
}

func (s *Server) Start() {
	fmt.Println(s.port)
}

func main() {}
""",
    "src/lib.rs": """\
use std::io;

pub struct Parser {
    pos: usize,
}

impl Parser {
    pub fn new() -> Self {
        Parser { pos: 0 }
    }
}

pub fn run() {}
""",
    "src/Main.java": """\
import java.util.List;

public class Main {
    public Main() {}

    void greet() {
        System.out.println("hi");
    }
}
""",
}

EXPECTED: dict[str, set[tuple[str, str, int, int, str | None]]] = {
    "pkg/shapes.py": {
        ("LIMIT", "variable", 4, 4, None),
        ("Circle", "class", 7, 9, None),
        ("area", "method", 8, 9, "Circle"),
        ("make_circle", "function", 12, 13, None),
    },
    "web/app.js": {
        ("Widget", "class", 3, 7, None),
        ("render", "method", 4, 6, "Widget"),
        ("mount", "function", 9, 9, None),
        ("helper", "function", 10, 10, None),
    },
    "web/types.ts": {
        ("Shape", "interface", 3, 5, None),
        ("Square", "class", 7, 11, None),
        ("area", "method", 8, 10, "Square"),
        ("Id", "type", 13, 13, None),
    },
    "cmd/main.go": {
        ("Server", "struct", 5, 7, None),
        ("Start", "method", 9, 11, "Server"),
        ("main", "function", 13, 13, None),
    },
    "src/lib.rs": {
        ("Parser", "struct", 3, 5, None),
        ("Parser", "impl", 7, 11, None),
        ("new", "method", 8, 10, "Parser"),
        ("run", "function", 13, 13, None),
    },
    "src/Main.java": {
        ("Main", "class", 3, 9, None),
        ("Main", "constructor", 4, 4, "Main"),
        ("greet", "method", 6, 8, "Main"),
    },
}

IMPORTS = {
    "pkg/shapes.py": ("os", "pkg.base"),
    "web/app.js": ("./lib.js",),
    "web/types.ts": ("./other",),
    "cmd/main.go": ("fmt",),
    "src/lib.rs": ("std::io",),
    "src/Main.java": ("java.util.List",),
}


@pytest.fixture
def index(repo: Path, commit: Commit) -> CodeIndex:
    head = commit({**SOURCES, "README.md": "# demo\n", "logo.png": b"\x89PNG\0\0data"})
    return CodeIndex.build(repo / ".git", head)


@pytest.mark.parametrize("path", sorted(SOURCES))
def test_symbols_per_language(index: CodeIndex, path: str) -> None:
    got = {(s.name, s.kind, s.start_line, s.end_line, s.parent) for s in index.symbols(path)}
    assert got == EXPECTED[path]
    assert all(s.path == path for s in index.symbols(path))
    assert index.imports(path) == IMPORTS[path]


def test_facts(index: CodeIndex, repo: Path) -> None:
    # The binary file is skipped; the README is indexed lexically without symbols.
    assert index.files == len(SOURCES) + 1
    assert index.symbol_count == sum(len(v) for v in EXPECTED.values())
    assert index.languages == {
        "python": 1,
        "javascript": 1,
        "typescript": 1,
        "go": 1,
        "rust": 1,
        "java": 1,
    }
    # A symbolic revision resolves to the same commit.
    assert CodeIndex.build(repo / ".git", "HEAD").commit == index.commit


def test_repo_map_outlines_symbols_within_budget(index: CodeIndex) -> None:
    text = index.repo_map(["pkg/shapes.py", "cmd/main.go"])
    assert text.splitlines()[:4] == [
        "pkg/shapes.py",
        "  class Circle :7-9",
        "    method area :8-9",
        "  function make_circle :12-13",
    ]
    assert "method Start :9-11" in text
    small = index.repo_map(sorted(SOURCES), max_chars=120)
    assert len(small) <= 120


_DOC_SOURCE = (
    "import os\nLIMIT_VALUE = 3\n# 12345 0x1F 1e5 2to3 1_000 café_x naïve — ∑x\n\n"
    "class PriceRule:\n    '''Rounds totalPrice.'''\n    rate = 2\n\n"
    "    def apply_discount(self, price):\n"
    "        def inner_helper(x): return x * rate\n"
    "        return inner_helper(price)\n\n"
    "    def other(self): pass\n"
    "class Tiny: x_value = 1; y_value = 2\n"
    "def f(): return 1\n"
    "def long_body():\n" + "    long_name_here = 1\n" * (CHUNK_MAX_LINES + 20) + "tail_word\n"
)


def _expected_docs(path: str, source: str) -> list[Counter[str]]:
    """The file's and each symbol chunk's term counts, tokenising each piece of text on its
    own with the query tokeniser (the regex)."""
    symbols = parse(path, "python", source.encode()).symbols
    path_terms = term_counts(path.replace("/", " ").replace(".", " "))
    docs = [term_counts(source) + path_terms + path_terms]
    lines = source.split("\n")
    for i, sym in enumerate(symbols):
        end = sym.end_line
        nxt = symbols[i + 1] if i + 1 < len(symbols) else None
        if nxt is not None and sym.start_line < nxt.start_line <= sym.end_line:
            end = nxt.start_line - 1
        end = min(end, sym.start_line + CHUNK_MAX_LINES)
        want = term_counts("\n".join(lines[sym.start_line - 1 : end]))
        for tok in tokens(sym.name):
            want[tok] += 2
        for tok in tokens(sym.parent or ""):
            want[tok] += 1
        docs.append(want)
    return docs


def test_term_counts_of_file_and_chunks_equal_tokenising_each_separately() -> None:
    analysed = analyse("m.py", "0" * 40, _DOC_SOURCE.encode())
    assert analysed is not None
    got = [terms_of_words(words) for words in doc_words(analysed)]
    assert got == _expected_docs("m.py", _DOC_SOURCE)
    assert "12345" not in got[0] and {"1e5", "2to3", "1_000", "caf"} <= set(got[0])


def _bm25_docs(bm25: BM25) -> dict[str, Counter[str]]:
    docs: dict[str, Counter[str]] = {}
    for term in bm25.vocab:
        for doc, tf in bm25.postings(term).items():
            key = bm25.doc_keys[doc]
            assert key is not None
            docs.setdefault(key, Counter())[term] = tf
    return docs


@pytest.mark.parametrize("files", [1, PARALLEL_MIN_FILES])
def test_indexed_documents_equal_tokenising_each_separately(
    repo: Path, commit: Commit, files: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the whole build (word segments, the lexicon, the merge, BM25), in this
    # process and in worker processes: numbers are not terms, as the query tokeniser has it.
    monkeypatch.setattr(build, "PARALLEL_MIN_COST", 0)  # so many small files: workers
    paths = ["pkg/m.py", *(f"pkg/more_{i}.py" for i in range(files - 1))]
    index = CodeIndex.build(repo / ".git", commit(dict.fromkeys(paths, _DOC_SOURCE)))
    file_docs, chunk_docs = _bm25_docs(index.file_bm25), _bm25_docs(index.sym_bm25)
    for path in paths:
        want = _expected_docs(path, _DOC_SOURCE)
        assert file_docs.get(path, Counter()) == want[0]
        for i, chunk in enumerate(want[1:]):
            assert chunk_docs.get(f"{path}\0{i}", Counter()) == chunk
    assert "12345" not in index.file_bm25.vocab and "1e5" in index.file_bm25.vocab


TRICKY_PY = b'''"""Module."""
from __future__ import annotations
import os, sys as system
import a.b.c as abc
from . import sibling
from ..pkg.mod import thing as other
LIMIT = 3
x, y = 1, 2
z: int = 4
a = b = 5
if TYPE_CHECKING:
    from typing import Any
    def only_typing(): ...
try:
    import fast
except ImportError:
    fast = None
    class Fallback:
        def run(self): pass
else:
    def after(): pass
finally:
    pass
with open(__file__) as fh:
    def in_with(): pass
for i in range(3):
    def in_loop(): pass
else:
    def loop_else(): pass
while False:
    class InWhile: pass
match LIMIT:
    case 3:
        def in_case(): pass
@decorator
class Decorated:
    attribute = 1
    @property
    def prop(self):
        import json
        def inner():
            class Deep:
                def method(self): pass
        return lambda: 0
def import_class_definitions(value):
    while value:
        value = value.parent
    return value
def outer_plain(value):
    if value:
        for v in value:
            from deep.inside import thing
async def coroutine(): pass
def broken(:
    pass
class AfterError: pass
'''


def test_python_statement_walk_finds_what_the_query_finds() -> None:
    from errands.index.symbols import _python_defs, _query_defs, grammar

    loaded = grammar("python")
    root = loaded.parser.parse(TRICKY_PY).root_node
    queried = _query_defs(loaded.cursor, root)
    # Without the source every statement holder is looked into; with it, only those whose
    # text can hold a definition or an import.
    for walked in (_python_defs(root), _python_defs(root, TRICKY_PY)):
        assert sorted(walked[0]) == sorted(queried[0])
        assert walked[1] == queried[1]
    names = {d.name for d in walked[0]}
    assert {"only_typing", "Fallback", "in_case", "Deep", "method", "AfterError", "LIMIT"} <= names
    assert {"os", "a.b.c", "..pkg.mod", "json", "deep.inside"} <= set(walked[1])


def test_bulk_word_tokens_equal_one_at_a_time() -> None:
    from errands.index.lexical import _ByteWordTokens, _WordTokens, word_tokens

    words = [
        "a", "x1", "is", "IS", "the_value", "THE_VALUE", "get_x", "_private", "__dunder__",
        "a_b_c", "snake_case_name", "HTTPServer", "getX", "parseHTTPResponse_v2", "abc123",
        "Mixed_Case_Words", "_", "__", "x_", "IO", "ioError", "self", "none_value", "1_000",
    ]  # fmt: skip
    assert word_tokens(words) == [_WordTokens()[w] for w in words]
    # A build's words, as bytes: the same, and runs of digits have no terms.
    words += ["123", "0", "007", "abc", "ABC", "if", "Self", "IF", "A", "_1", "_1_2", "_12_34"]
    words += ["get_get", "A_B", "HTTP_2", "__INIT__", "IS_A", "the_", "x__y", "SELF_SELF", "_a_"]
    words += ["getX2", "XMLHttpRequest", "ABCdef", "aB", "Ab", "IfElse", "SelfTest", "None", "x2Y"]
    want = [() if w.isdigit() else _WordTokens()[w] for w in words]
    assert _ByteWordTokens().learn([w.encode() for w in words]) == want


def test_expand_by_packed_keys_equals_by_argsort(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counts ride in the sorted keys' low bits when they fit, else an argsort orders them:
    # both give each document's term counts as splitting each word alone does.
    import numpy as np

    from errands.index import lexical

    docs = [
        Counter({b"get_value": 2, b"getValue": 1, b"value": 3, b"123": 4, b"x": 1}),
        Counter(),
        Counter({b"HTTPServer": 70_000, b"http": 1, b"server_http": 2, b"the": 5}),
        Counter({b"value": 1}),
    ]
    lexicon = lexical.Lexicon()
    pairs = [(w, n) for doc in docs for w, n in doc.items()]
    words = lexicon.number([w for w, _ in pairs])
    counts = np.array([n for _, n in pairs], dtype=np.int32)
    doc_ptr = np.cumsum([0, *map(len, docs)]).astype(np.int64)
    want = [terms_of_words(Counter({w.decode(): n for w, n in doc.items()})) for doc in docs]

    def expanded() -> list[Counter[str]]:
        ptr, terms, tfs = lexicon.expand(doc_ptr, words, counts)
        assert terms.dtype == tfs.dtype == np.int32
        spans = list(pairwise(ptr.tolist()))
        assert all((np.diff(terms[a:b]) > 0).all() for a, b in spans)  # sorted, each once
        return [
            Counter({lexicon.names[t]: int(n) for t, n in zip(terms[a:b], tfs[a:b], strict=True)})
            for a, b in spans
        ]

    assert expanded() == want
    monkeypatch.setattr(lexical, "_KEY_BITS", 0)  # no count fits: by argsort
    assert expanded() == want


_LINE = st.sampled_from(["", "x = 1", "def f():", "    return y", "class K:", "é"])


@st.composite
def _files(draw: st.DrawFn) -> tuple[bytes, tuple[Symbol, ...]]:
    lines = draw(st.lists(_LINE, max_size=12))
    data = "\n".join(lines).encode() + draw(st.sampled_from([b"", b"\n"]))
    bounds = draw(
        st.lists(st.tuples(st.integers(1, 15), st.integers(0, CHUNK_MAX_LINES + 5)), max_size=6)
    )
    # As parsing gives them: in order of start, a symbol's end at or after its start.
    symbols = tuple(
        Symbol(f"s{i}", "function", "f.py", start, start + extent, None)
        for i, (start, extent) in enumerate(sorted(bounds))
    )
    return data, symbols


@given(st.lists(_files(), max_size=5))
def test_chunk_ranges_of_many_files_equal_each_file_alone(
    files: list[tuple[bytes, tuple[Symbol, ...]]],
) -> None:
    # The build finds every chunk of a batch at once in the files joined by a space each
    # (a space, not a newline, between them: lines stay within their file).
    import numpy as np

    text = b" ".join(data for data, _ in files)
    at = np.cumsum([0, *(len(data) + 1 for data, _ in files)])[:-1].astype(np.int64)
    lines = [n for _, syms in files for sym in syms for n in (sym.start_line, sym.end_line)]
    lo, hi = chunk_ranges(
        text,
        at,
        at + np.array([len(data) for data, _ in files], dtype=np.int64),
        np.array([len(syms) for _, syms in files], dtype=np.int64),
        np.array(lines, dtype=np.int64).reshape(-1, 2),
    )
    want = [
        start + offset
        for (data, syms), start in zip(files, at.tolist(), strict=True)
        for offset in chunk_spans(data, syms)
    ]
    assert np.column_stack([lo, hi]).ravel().tolist() == want
