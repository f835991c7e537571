"""Localization: which files a task's text is about, with reasons, without an LLM.

Each signal adds to a file's score, and says so in its reasons:

* paths written in the text and traceback frames (suffix-matched against the repository);
* dotted module names (``pkg.mod.Class`` → ``pkg/mod.py``, and ``Class`` in it);
* identifiers the text names (backticks, code blocks, CamelCase, snake_case, ``name(``) that
  files define, weighted by how few files define them;
* BM25 over whole files and over symbol chunks (the best chunk of a file counts);
* words of the text that name directories or files;
* a weak prior for files changed often and recently.

Tests and documentation are scaled down but stay rankable. Weights are general: nothing
here knows any particular repository.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from errands.index.lexical import STOPWORDS, split_identifier
from errands.index.model import Located, Symbol
from errands.index.paths import ext_of, is_doc, is_test
from errands.index.symbols import LANGUAGE_BY_EXT

T = TypeVar("T")


class _Lookup(Protocol[T]):
    def get(self, key: str, /) -> list[T] | None: ...


class _Tables(Protocol):
    """The ranker's lookup tables (:class:`~errands.index.tables.Derived`)."""

    def defined_in(self, name: str, most: int, /) -> list[str] | None: ...
    def named_by(self, word: str, /) -> int: ...  # how many files' paths name the word
    @property
    def modules(self) -> _Lookup[str]: ...
    @property
    def path_tokens(self) -> _Lookup[str]: ...
    @property
    def basenames(self) -> _Lookup[str]: ...


class _Scorer(Protocol):
    def scores(self, query: Mapping[str, float], /) -> npt.NDArray[np.float64]: ...
    def best(self, scores: npt.NDArray[np.float64], limit: int, /) -> list[tuple[str, float]]: ...


class Ranked(Protocol):
    """What ranking reads of an index: a :class:`~errands.index.core.CodeIndex` in memory,
    or a query file (:class:`~errands.index.stored.StoredIndex`)."""

    @property
    def files(self) -> int: ...
    @property
    def file_bm25(self) -> _Scorer: ...
    @property
    def sym_bm25(self) -> _Scorer: ...
    def derived(self) -> _Tables: ...
    def symbols(self, path: str) -> tuple[Symbol, ...]: ...
    def symbols_named(self, path: str, name: str) -> list[Symbol]: ...
    def symbol_at(self, key: str) -> Symbol | None: ...
    def churn(self, path: str) -> int: ...
    def age(self, path: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal counts (one scale for every repository), and how much of its
    score a file keeps by kind. A file's score is its kind's factor times the weighted sum
    of its signals, so the benchmark can weigh signals afresh without locating again."""

    traceback: float = 3.0
    traceback_last: float = 1.5
    path: float = 3.0
    module: float = 2.0
    defines: float = 2.0
    bm25_file: float = 2.0
    bm25_symbol: float = 1.0
    path_word: float = 0.6
    stem: float = 1.0
    history: float = 0.15
    test: float = 0.3  # factors by kind; source code keeps 1
    doc: float = 0.3
    non_code: float = 0.6

    def factor(self, kind: str) -> float:
        return 1.0 if kind == "code" else float(getattr(self, kind))


SIGNALS = (
    "traceback", "traceback_last", "path", "module", "defines", "bm25_file", "bm25_symbol",
    "path_word", "stem", "history",
)  # fmt: skip
KINDS = ("code", "test", "doc", "non_code")
WEIGHTS = Weights()

_FRAME = re.compile(r'File "([^"\n]+)", line (\d+)')
_PATHLIKE = re.compile(r"(?<![\w/.-])((?:[\w.-]+[/\\])*[\w-]+\.([A-Za-z0-9]{1,6}))\b")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_BACKTICK = re.compile(r"`([^`\n]{1,200})`")
_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A call's name. Tried only where a run of word characters starts (the characters before its
# first ASCII letter or underscore skipped): the same names as ``([A-Za-z_]\w*)\s*\(``, which
# tried again at every position of a long word with no "(" after it, quadratic in its length
# (a 64 KiB word took ~24 s).
_CALL = re.compile(r"(?<!\w)[^\WA-Za-z_]*([A-Za-z_]\w*)\s*\(")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_INDENTED = re.compile(r"(?m)^(?: {4}|\t).+$")
# The most parts of a dotted name tried as a module (a file that many directories deep is no
# module anyone writes): a name of 30,000 parts, each prefix joined and looked up, took ~2.4 s.
_MODULE_DEPTH = 32
_DUNDER = re.compile(r"__\w+__")
_PROMPT = re.compile(r"(?m)^\s*(?:>>>|\.\.\.|\$|In \[\d+\]:).*$")

# A name defined in more files than this points nowhere.
_MOST_DEFINING = 25

# What one text may name, at most. A text may be 64 KiB, and one made of thousands of a
# repository's identifiers, paths, frames or dotted names had the ranker look each one up
# and score every file they reached: 2-4.5 s a locate on a 50,000-file repository, all the
# while holding a served project's query file. Each cap is well above the most that any
# issue of the benchmark's dev set names (in brackets; 225 issues, the longest 24 KB), so no
# ranking there changes. Past a cap, what comes first in the text is kept (of frames, what
# comes last: the deepest frames count most).
MOST_FRAMES = 100  # distinct traceback frames [20]
MOST_PATHS = 100  # distinct paths written [7]
MOST_DOTTED = 250  # distinct dotted names [62], each tried as up to _MODULE_DEPTH modules
MOST_NAMES = 1000  # distinct identifiers in code, and as many in prose [508; 23]
MOST_WORDS = 1000  # distinct words, for path words and file names [484]
MOST_TERMS = 1000  # BM25 query terms [570]
# And how many files those may point at in all: a name at up to _MOST_DEFINING files, a word
# at up to a twentieth of the repository, and every file pointed at is scored. Past a budget,
# the names (words) pointing at the fewest files are kept: they say the most.
MOST_DEFINITIONS = 1000  # files defining the names, summed over the names [63]
MOST_PATH_WORD_FILES = 5_000  # files whose path a word names, summed over the words [2,522]

_PATH_EXTS = frozenset(LANGUAGE_BY_EXT) | {
    ".cfg",
    ".toml",
    ".ini",
    ".yml",
    ".yaml",
    ".json",
    ".sql",
    ".c",
    ".h",
    ".cpp",
    ".rb",
    ".md",
    ".rst",
    ".txt",
}

_CODE_EXTS = frozenset(e.lstrip(".") for e in LANGUAGE_BY_EXT) | {
    "c", "h", "cc", "cpp", "hpp", "rb", "php", "cs", "kt", "scala", "swift", "m", "sh", "pyx",
}  # fmt: skip


@dataclass(slots=True)
class Evidence:
    """What points at one file: each signal's value before weighting, the reasons (with
    their signal and value) and the symbols the text pointed at."""

    kind: str = "code"
    raw: dict[str, float] = field(default_factory=dict)
    reasons: list[tuple[str, float, str]] = field(default_factory=list)
    symbols: dict[Symbol, float] = field(default_factory=dict)

    def add(self, signal: str, value: float, reason: str) -> None:
        if value > 0:
            self.raw[signal] = self.raw.get(signal, 0.0) + value
            self.reasons.append((signal, value, reason))

    def total(self, weights: Weights) -> float:
        weighted = sum(float(getattr(weights, s)) * v for s, v in self.raw.items())
        return weights.factor(self.kind) * weighted

    def symbol(self, sym: Symbol, value: float) -> None:
        self.symbols[sym] = max(self.symbols.get(sym, 0.0), value)


@dataclass(slots=True)
class _Text:
    """The task text taken apart once."""

    raw: str
    code: str  # backticks, fenced blocks, indented and prompt lines
    frames: list[str]
    paths: list[str]
    dotted: list[str]
    code_idents: Counter[str]
    prose_idents: Counter[str]
    words: Counter[str]


def _parse_text(text: str) -> _Text:
    code_parts = [m.group(0) for m in _FENCE.finditer(text)]
    code_parts += _BACKTICK.findall(text)
    code_parts += _INDENTED.findall(text)
    code_parts += _PROMPT.findall(text)
    code = "\n".join(code_parts)
    all_frames = [m.group(1) for m in _FRAME.finditer(text)]
    deepest = set(_first(dict.fromkeys(reversed(all_frames)), MOST_FRAMES))
    frames = [f for f in all_frames if f in deepest]
    frame_set = set(all_frames)
    paths = []
    for m in _PATHLIKE.finditer(text):
        p = m.group(1)
        if "." + m.group(2).lower() in _PATH_EXTS and p not in frame_set:
            paths.append(p)
    dotted = [m.group(1) for m in _DOTTED.finditer(text)]
    code_idents: Counter[str] = Counter(_IDENT.findall(code))
    code_idents.update(_CALL.findall(text))
    prose_idents: Counter[str] = Counter()
    for word in _IDENT.findall(text):
        if word in code_idents:
            continue
        # Outside code, only words shaped like identifiers count as naming one.
        if "_" in word.strip("_") or (any(c.isupper() for c in word[1:]) and word[0].isalpha()):
            prose_idents[word] += 1
    words = Counter(w.lower() for w in _WORD.findall(text) if len(w) > 2)
    return _Text(
        text,
        code,
        frames,
        _first(dict.fromkeys(paths), MOST_PATHS),
        _first(dict.fromkeys(dotted), MOST_DOTTED),
        _first_counted(code_idents, MOST_NAMES),  # (each still counted over the whole text)
        _first_counted(prose_idents, MOST_NAMES),
        _first_counted(words, MOST_WORDS),
    )


def _first(items: Iterable[T], most: int) -> list[T]:
    return list(islice(items, most))


def _first_counted(counts: Counter[str], most: int) -> Counter[str]:
    """The first ``most`` keys of ``counts`` (in the order first seen), with their counts."""
    return counts if len(counts) <= most else Counter(dict(islice(counts.items(), most)))


def _match_path(index: Ranked, mentioned: str) -> tuple[list[str], int]:
    """Repository files whose path ends with the longest tail of ``mentioned``."""
    norm = mentioned.replace("\\", "/").strip().lstrip("./")
    parts = [p for p in norm.split("/") if p and p != "."]
    if not parts:
        return [], 0
    candidates = index.derived().basenames.get(parts[-1]) or []
    best: list[str] = []
    best_len = 0
    for cand in candidates:
        cparts = cand.split("/")
        n = 0
        while n < min(len(cparts), len(parts)) and cparts[-1 - n] == parts[-1 - n]:
            n += 1
        if n > best_len:
            best, best_len = [cand], n
        elif n == best_len:
            best.append(cand)
    return best, best_len


def locate(
    index: Ranked, text: str, *, limit: int = 10, weights: Weights = WEIGHTS
) -> list[Located]:
    """Files ranked for ``text``, best first, each with its reasons and symbols."""
    found = evidence(index, text)
    # Every file scored, but the reasons and symbols put in order only for those kept: a
    # text can point at thousands of files.
    scored = [(-round(t, 4), path) for path, ev in found.items() if (t := ev.total(weights)) > 0]
    located: list[Located] = []
    for neg_score, path in sorted(scored)[:limit]:
        ev = found[path]
        ranked = sorted(ev.reasons, key=lambda r: -getattr(weights, r[0]) * r[1])
        syms = [s for s, _v in sorted(ev.symbols.items(), key=lambda x: -x[1])][:5]
        reasons = [r for _s, _v, r in ranked][:6]
        located.append(Located(path=path, score=-neg_score, reasons=reasons, symbols=syms))
    return located


def evidence(index: Ranked, text: str) -> dict[str, Evidence]:
    """Every file something in ``text`` points at, with the evidence (unweighted)."""
    w = WEIGHTS  # symbols within a file are ordered on the default scale
    parsed = _parse_text(text)
    derived = index.derived()
    scores: dict[str, Evidence] = defaultdict(Evidence)

    # 1. Traceback frames: every in-repository frame, the deepest the most.
    frame_hits: list[str] = []
    matched = {frame: _match_path(index, frame) for frame in dict.fromkeys(parsed.frames)}
    for frame in parsed.frames:  # (a frame repeated, as in a deep recursion, looked up once)
        files, depth = matched[frame]
        if files and (depth >= 2 or len(files) == 1):
            frame_hits.extend(files[:1] if len(files) == 1 else files[:3])
    for i, path in enumerate(dict.fromkeys(reversed(frame_hits))):
        scores[path].add("traceback", 1 / (1 + 0.25 * i), "traceback names this file")
        if i == 0:
            scores[path].add("traceback_last", 1.0, "the traceback ends in this file")

    # 2. Paths written in the text.
    for mentioned in parsed.paths:
        files, depth = _match_path(index, mentioned)
        if not files:
            continue
        share = 1 / len(files) if depth < 2 else 1.0
        for path in files[:5]:
            scores[path].add("path", share, f"text names `{mentioned}`")

    # 3. Dotted module names → the module file, and the symbol named after it.
    for dotted in parsed.dotted:
        parts = dotted.split(".")
        for k in range(min(len(parts), _MODULE_DEPTH), 1, -1):
            module_paths = derived.modules.get(".".join(parts[:k]))
            if not module_paths:
                continue
            module_path = module_paths[0]
            module_score = scores[module_path]
            module_score.add("module", 1.0, f"module `{'.'.join(parts[:k])}` named in the text")
            if k < len(parts):
                for sym in index.symbols_named(module_path, parts[k]):
                    module_score.symbol(sym, w.module)
            break

    # 4. Identifiers the text names that files define. A name defined in one file points
    # there; one defined in many points nowhere. Plain words (`fix`, `name`) count less than
    # shaped identifiers (`fix_all`, `FixResult`), and a file's total saturates so a long
    # traceback through it cannot outweigh everything else.
    def_sums: dict[str, float] = defaultdict(float)
    def_names: dict[str, list[str]] = defaultdict(list)
    for name, count, ctx_weight, defining in _definitions(index, parsed):
        syms = [s for path in defining for s in index.symbols_named(path, name)]
        shaped = 1.0 if _is_shaped(name) else 0.5
        value = ctx_weight * shaped / len(defining) * (1.0 + 0.2 * min(count - 1, 5))
        for sym in syms:
            scores[sym.path].symbol(sym, value)
        for path in defining:
            def_sums[path] += value
            def_names[path].append(name)
    for path, total in def_sums.items():
        names = ", ".join(f"`{n}`" for n in def_names[path][:3])
        scores[path].add("defines", math.log2(1.0 + total), f"defines {names} named in the text")

    # 5. BM25 over files and over symbol chunks.
    query = _query_terms(parsed)
    if query:
        file_scores = index.file_bm25.scores(query)
        _add_bm25(scores, file_scores, index.file_bm25)
        sym_scores = index.sym_bm25.scores(query)
        best_per_file: dict[str, tuple[float, Symbol]] = {}
        chunks = index.sym_bm25.best(sym_scores, 200)
        top = chunks[0][1] if chunks else 0.0
        for key, s in chunks:  # best first, ties in key order: the first is a file's best
            chunk_sym = index.symbol_at(key)
            if chunk_sym is not None and chunk_sym.path not in best_per_file:
                best_per_file[chunk_sym.path] = (s, chunk_sym)
        if best_per_file:
            for path, (s, sym) in best_per_file.items():
                value = (s / top) ** 2
                scores[path].add("bm25_symbol", value, f"BM25 match on `{sym.name}`")
                scores[path].symbol(sym, w.bm25_symbol * value)

    # 6. Words naming directories or files, and files named after a word or identifier of
    # the text (`config` → config.py, `linted_file` → linted_file.py). Tests and fixtures
    # named after a module do not make its name any less specific.
    for word, paths in _path_words(index, parsed):
        sources = [p for p in paths if not is_test(p)]
        if word in parsed.words:
            value = 1 / math.sqrt(len(sources) or len(paths))
            reason = f"path matches `{word}`"
            for path in paths:
                scores[path].add("path_word", value, reason)
        named = [p for p in sources if _stem(p) == word]
        for path in named:
            scores[path].add("stem", 1 / len(named), f"the file is named `{word}`")

    # 7. History prior, on files with some evidence, and each file's kind.
    max_churn = max((index.churn(p) for p in scores), default=0)
    for path, sc in scores.items():
        churn = index.churn(path)
        if churn and max_churn:
            age = index.age(path)
            recency = 1.0 / (1.0 + (age or 0) / 50.0) if age is not None else 0.0
            value = (math.log1p(churn) / math.log1p(max_churn)) * (0.5 + 0.5 * recency)
            sc.add("history", value, f"changed in {churn} recent commits")
        sc.kind = _kind(path)
    return dict(scores)


def _definitions(index: Ranked, parsed: _Text) -> list[tuple[str, int, float, list[str]]]:
    """The identifiers of the text that files define (and few enough files to point
    somewhere), each with its count, its context's weight and those files: in the text's
    order, code before prose, within :data:`MOST_DEFINITIONS`."""
    tables = index.derived()
    found = []
    for idents, ctx_weight in ((parsed.code_idents, 1.0), (parsed.prose_idents, 0.5)):
        for name, count in idents.items():
            if len(name) < 3 or name.lower() in STOPWORDS or _DUNDER.fullmatch(name):
                continue
            defining = tables.defined_in(name, _MOST_DEFINING)
            if defining:
                found.append((name, count, ctx_weight, defining))
    return _within(found, MOST_DEFINITIONS, lambda item: len(item[3]))


def _path_words(index: Ranked, parsed: _Text) -> list[tuple[str, list[str]]]:
    """The words and identifiers of the text that name directories or files (a word naming
    more than a twentieth of the repository names nothing in particular), each with those
    files: in alphabetical order, within :data:`MOST_PATH_WORD_FILES`."""
    tables = index.derived()
    most = max(20, max(index.files, 1) // 20)
    identifiers = {w.lower() for w in (*parsed.code_idents, *parsed.prose_idents)}
    # Counted first, the files listed only of the words kept: a query file reads a row for
    # each, and the words dropped could name a thousand files each.
    counted = []
    for word in sorted(set(parsed.words) | identifiers):
        if word not in STOPWORDS and 0 < (n := tables.named_by(word)) <= most:
            counted.append((word, n))
    kept = _within(counted, MOST_PATH_WORD_FILES, lambda item: item[1])
    return [(word, tables.path_tokens.get(word) or []) for word, _n in kept]


def _within(found: list[T], budget: int, size: Callable[[T], int]) -> list[T]:
    """``found`` whole if its sizes add up to at most ``budget``; otherwise the items of the
    smallest sizes (ties: the earlier) that fit in it, in their order."""
    if sum(map(size, found)) <= budget:
        return found
    kept: set[int] = set()
    total = 0
    for i in sorted(range(len(found)), key=lambda i: size(found[i])):
        total += size(found[i])
        if total > budget:
            break
        kept.add(i)
    return [item for i, item in enumerate(found) if i in kept]


def considered(index: Ranked, text: str) -> dict[str, int]:
    """How much of ``text`` the ranker looks up and scores, within the caps above: distinct
    frames, paths, dotted names, identifiers, words and BM25 terms; and the files the
    identifiers' definitions and the path words point at, summed (for tests and the
    benchmark: it makes the same lookups as :func:`evidence`)."""
    parsed = _parse_text(text)
    return {
        "frames": len(set(parsed.frames)),
        "paths": len(parsed.paths),
        "dotted": len(parsed.dotted),
        "names": len(parsed.code_idents) + len(parsed.prose_idents),
        "words": len(parsed.words),
        "terms": len(_query_terms(parsed)),
        "definitions": sum(len(item[3]) for item in _definitions(index, parsed)),
        "path_word_files": sum(len(item[1]) for item in _path_words(index, parsed)),
    }


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()


def _kind(path: str) -> str:
    if is_test(path):
        return "test"
    if is_doc(path):
        return "doc"
    return "code" if ext_of(path) in _CODE_EXTS else "non_code"


def _is_shaped(name: str) -> bool:
    """snake_case, CamelCase or mixedCase: a word nobody writes by accident."""
    core = name.strip("_")
    return "_" in core or any(c.isupper() for c in core[1:]) or core[:1].isupper()


def _query_terms(parsed: _Text) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for word, n in Counter(_IDENT.findall(parsed.raw)).items():
        if len(word) < 2:
            continue
        for tok in split_identifier(word):
            if tok not in STOPWORDS:
                counts[tok] += n
    # Repetition says a little, not a lot.
    return {t: 1.0 + math.log(n) for t, n in islice(counts.items(), MOST_TERMS)}


def _add_bm25(
    scores: dict[str, Evidence],
    values: npt.NDArray[np.float64],
    bm25: _Scorer,
) -> None:
    """The best files' BM25 scores, relative to the best and squared, so only files close
    to the top get much."""
    ranked = bm25.best(values, 100)
    for key, s in ranked:
        scores[key].add("bm25_file", (s / ranked[0][1]) ** 2, "BM25 match on the text")
