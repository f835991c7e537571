"""The code index of one project at one commit: build, update, persist, query."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import tempfile
import threading
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate, chain
from pathlib import Path

from errands.errors import InvalidInput
from errands.index import gitio
from errands.index import locate as _locate
from errands.index.lexical import _WORD, BM25, _word_tokens, term_counts, tokens
from errands.index.model import Located, Symbol
from errands.index.paths import is_binary, skip_path, too_big
from errands.index.symbols import grammar, language_of, parse

FORMAT_VERSION = 1
HISTORY_COMMITS = 500
# Symbol chunks longer than this many lines are cut: the head of a long body says most.
_CHUNK_MAX_LINES = 200
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(slots=True)
class FileInfo:
    path: str
    blob: str
    size: int
    language: str | None
    symbols: tuple[Symbol, ...]
    imports: tuple[str, ...]
    text: bytes  # zlib-compressed UTF-8 contents, for snippets


@dataclass(slots=True)
class Derived:
    """Lookup tables computed from the files on first use after a change."""

    defs: dict[str, list[Symbol]] = field(default_factory=dict)  # name → definitions
    modules: dict[str, str] = field(default_factory=dict)  # dotted name → path
    path_tokens: dict[str, list[str]] = field(default_factory=dict)  # dir/stem token → paths
    basenames: dict[str, list[str]] = field(default_factory=dict)


class CodeIndex:
    """Files, languages, symbols, imports, a lexical index and history of one commit."""

    def __init__(self, commit: str) -> None:
        self.commit = commit
        self._files: dict[str, FileInfo] = {}
        self._file_bm25 = BM25()
        self._sym_bm25 = BM25()
        self._churn: Counter[str] = Counter()
        self._age: dict[str, int] = {}
        self._derived: Derived | None = None

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        git_dir: Path,
        commit: str,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> CodeIndex:
        """Index every text file of ``commit``, read in one ``git cat-file --batch`` stream."""
        sha = gitio.rev_parse(git_dir, commit)
        index = cls(sha)
        history = gitio.History(git_dir, sha, max_commits=HISTORY_COMMITS)
        entries = [
            e
            for e in gitio.ls_tree(git_dir, sha)
            if not skip_path(e.path) and not too_big(e.path, e.size)
        ]
        index._add_entries(git_dir, entries, progress)
        index._churn, index._age = history.result()
        return index

    def _add_entries(
        self,
        git_dir: Path,
        entries: Sequence[gitio.TreeEntry],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        by_blob: dict[str, list[gitio.TreeEntry]] = defaultdict(list)
        for e in entries:
            by_blob[e.blob].append(e)
        total = len(entries)
        items = (
            (entry, data)
            for blob, data in gitio.read_blobs(git_dir, list(by_blob))
            for entry in by_blob[blob]
        )
        if total >= PARALLEL_MIN_FILES and _workers() > 1:
            languages = {language_of(e.path) for e in entries}
            analysed = _analyse_parallel(items, _workers(), languages)
        else:
            analysed = (_analyse(entry, data) for entry, data in items)
        for done, file in enumerate(analysed, 1):
            if file is not None:
                self._add_analysed(file)
            if progress is not None and (done % 200 == 0 or done == total):
                progress(done, total)
        self._derived = None

    def _add_analysed(self, file: _Analysed) -> None:
        info = file.info
        path = info.path
        self._files[path] = info
        self._file_bm25.add(path, file.counts)
        sym_bm25 = self._sym_bm25
        for i, counts in enumerate(file.chunks):
            sym_bm25.add(f"{path}\0{i}", counts)

    def _remove_file(self, path: str) -> None:
        info = self._files.pop(path, None)
        if info is None:
            return
        self._file_bm25.remove(path)
        for i in range(len(info.symbols)):
            self._sym_bm25.remove(f"{path}\0{i}")

    def update(self, git_dir: Path, commit: str) -> list[str]:
        """Re-index only the files that changed since ``self.commit``; the changed paths.

        History statistics move approximately: each changed file counts one more commit."""
        sha = commit if _FULL_SHA.fullmatch(commit) else gitio.rev_parse(git_dir, commit)
        if sha == self.commit:
            return []
        changes = gitio.diff_raw(git_dir, self.commit, sha)
        for change in changes:
            self._remove_file(change.path)
        entries = [
            gitio.TreeEntry(c.path, c.blob, 0)
            for c in changes
            if c.status != "D" and c.mode not in ("120000", "160000") and not skip_path(c.path)
        ]
        self._add_entries(git_dir, entries)
        self._age = {path: age + 1 for path, age in self._age.items()}
        for change in changes:
            self._churn[change.path] += 1
            self._age[change.path] = 0
        self.commit = sha
        self._derived = None
        return [c.path for c in changes]

    # ---- persistence ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the index to one file (atomically: a crash leaves the old one, and two
        writers at once — the index job and a research job — each replace it whole)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        state = {
            "version": FORMAT_VERSION,
            "commit": self.commit,
            "files": self._files,
            "file_bm25": self._file_bm25,
            "sym_bm25": self._sym_bm25,
            "churn": self._churn,
            "age": self._age,
        }
        try:
            with os.fdopen(handle, "wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> CodeIndex:
        """Read an index written by :meth:`save` (Errands' own data directory only: the
        format is pickle, so never point this at a file someone else wrote)."""
        try:
            with path.open("rb") as fh:
                state = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            raise InvalidInput(f"cannot read code index {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
            raise InvalidInput(f"code index {path} has an old or unknown format; rebuild it")
        index = cls(state["commit"])
        index._files = state["files"]
        index._file_bm25 = state["file_bm25"]
        index._sym_bm25 = state["sym_bm25"]
        index._churn = state["churn"]
        index._age = state["age"]
        return index

    # ---- facts ----------------------------------------------------------------------------

    @property
    def files(self) -> int:
        return len(self._files)

    @property
    def symbol_count(self) -> int:
        return sum(len(f.symbols) for f in self._files.values())

    @property
    def languages(self) -> dict[str, int]:
        counts = Counter(f.language for f in self._files.values() if f.language)
        return dict(counts.most_common())

    @property
    def paths(self) -> list[str]:
        return sorted(self._files)

    def symbols(self, path: str) -> tuple[Symbol, ...]:
        info = self._files.get(path)
        return info.symbols if info else ()

    def imports(self, path: str) -> tuple[str, ...]:
        info = self._files.get(path)
        return info.imports if info else ()

    def text(self, path: str) -> str:
        info = self._files.get(path)
        if info is None:
            raise InvalidInput(f"no file {path!r} in the index")
        return zlib.decompress(info.text).decode("utf-8", "replace")

    def derived(self) -> Derived:
        if self._derived is None:
            self._derived = _derive(self._files)
        return self._derived

    # ---- queries --------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[tuple[str, int, str]]:
        """Lines matching a query, best files first: ``(path, line, snippet)``.

        Lines containing the query literally come first; otherwise the lines holding the most
        of its words. At most three lines per file, so one file cannot fill the list."""
        query = query.strip()
        if not query or limit <= 0:
            return []
        terms = {t: 1.0 for t in tokens(query)}
        ranked = self._file_bm25.top(terms, max(limit, 10)) if terms else []
        needle = query.lower()
        literal = re.compile(re.escape(needle))
        results: list[tuple[str, int, str]] = []
        for path, _score in ranked:
            lines = self.text(path).split("\n")
            hits: list[tuple[float, int]] = []
            for no, line in enumerate(lines, 1):
                low = line.lower()
                if literal.search(low):
                    hits.append((1000.0, no))
                    continue
                overlap = sum(1 for t in terms if t in low)
                if overlap:
                    hits.append((overlap, no))
            hits.sort(key=lambda h: (-h[0], h[1]))
            for _s, no in hits[:3]:
                results.append((path, no, lines[no - 1].strip()[:200]))
            if len(results) >= limit:
                break
        return results[:limit]

    def locate(self, text: str, *, limit: int = 10) -> list[Located]:
        """Files ranked for a task's text, each with the reasons and the symbols matched."""
        return _locate.locate(self, text, limit=limit)

    def repo_map(self, paths: Sequence[str], *, max_chars: int = 6000) -> str:
        """An outline of these files' symbols (classes, functions, methods with line numbers)
        in the order given, cut to ``max_chars``; files that do not fit are named at the end."""
        out: list[str] = []
        used = 0
        left: list[str] = []
        for path in paths:
            info = self._files.get(path)
            if info is None:
                continue
            block = [path]
            depth: dict[str | None, int] = {None: 0}
            for sym in info.symbols:
                if sym.kind == "variable":
                    continue
                level = depth.get(sym.parent, 1) + 1 if sym.parent else 1
                depth[sym.name] = level
                block.append(
                    f"{'  ' * level}{sym.kind} {sym.name} :{sym.start_line}-{sym.end_line}"
                )
            chunk = "\n".join(block)
            if used + len(chunk) + 1 > max_chars:
                # A file's outline that does not fit whole is cut to the lines that do.
                room = max_chars - used - 1
                if room > len(path) + 40 and not left:
                    cut = chunk[:room].rsplit("\n", 1)[0]
                    out.append(cut + "\n  …")
                    used += len(cut) + 5
                else:
                    left.append(path)
                continue
            out.append(chunk)
            used += len(chunk) + 1
        text = "\n".join(out)
        if left:
            more = f"\n(+{len(left)} more files: " + ", ".join(left)
            room = max_chars - len(text) - 1
            if room > 20:
                text += more[: room - 1] + ")" if len(more) >= room else more + ")"
        return text[:max_chars]

    # ---- internals for the ranker -----------------------------------------------------

    @property
    def file_bm25(self) -> BM25:
        return self._file_bm25

    @property
    def sym_bm25(self) -> BM25:
        return self._sym_bm25

    def churn(self, path: str) -> int:
        return self._churn.get(path, 0)

    def age(self, path: str) -> int | None:
        return self._age.get(path)

    def symbol_at(self, key: str) -> Symbol | None:
        path, _, idx = key.partition("\0")
        info = self._files.get(path)
        if info is None:
            return None
        i = int(idx)
        return info.symbols[i] if i < len(info.symbols) else None


# Builds of at least this many files analyse them in worker processes (forked, so they
# start in milliseconds with everything already imported); smaller ones, and every
# one-file update, stay in this process.
PARALLEL_MIN_FILES = 100
_BATCH_FILES = 16


@dataclass(slots=True)
class _Analysed:
    """One file's index entry and its term counts (whole file, then one per symbol)."""

    info: FileInfo
    counts: Counter[str]
    chunks: list[Counter[str]]


def _analyse(entry: gitio.TreeEntry, data: bytes) -> _Analysed | None:
    """Everything the index keeps about one file, or None for binary and oversized files;
    a pure function of its arguments, so it may run in any process."""
    if is_binary(data) or too_big(entry.path, len(data)):
        return None
    path = entry.path
    text = data.decode("utf-8", "replace")
    language = language_of(path)
    symbols: tuple[Symbol, ...] = ()
    imports: tuple[str, ...] = ()
    if language is not None:
        parsed = parse(path, language, data)
        symbols, imports = parsed.symbols, parsed.imports
    info = FileInfo(
        path=path,
        blob=entry.blob,
        size=entry.size,
        language=language,
        symbols=symbols,
        imports=imports,
        text=zlib.compress(data, 1),
    )
    counts, chunks = _term_counts(text, symbols)
    # The path is part of the document: `irradiance.py` is about irradiance.
    for tok in tokens(path.replace("/", " ").replace(".", " ")):
        counts[tok] += 2
    return _Analysed(info, counts, chunks)


def _term_counts(text: str, symbols: tuple[Symbol, ...]) -> tuple[Counter[str], list[Counter[str]]]:
    """The file's term counts and one per symbol chunk, from one pass of the tokeniser.

    Words never span lines, so the file's words are those of its line ranges in order: the
    text is scanned range by range (gaps and chunks), each chunk's tokens counted on their
    own and all of them together for the file — the same counts, in the same first-seen
    order, as tokenising the file and then every chunk separately."""
    if not symbols:
        return term_counts(text), []
    lines = text.split("\n")
    n = len(lines)
    # Character offset of line k (0-based): the lengths before it plus their newlines.
    starts = list(accumulate(map(len, lines), initial=0))
    findall = _WORD.findall
    word_tokens = _word_tokens.__getitem__
    stream: list[list[str]] = []
    chunks: list[Counter[str]] = []
    cur = 0  # lines before this one are in `stream`
    for i, sym in enumerate(symbols):
        # A container's chunk stops at its first nested definition, so a class's chunk is
        # its header, docstring and attributes, not every method again.
        end = sym.end_line
        nxt = symbols[i + 1] if i + 1 < len(symbols) else None
        if nxt is not None and nxt.start_line <= sym.end_line and nxt.start_line > sym.start_line:
            end = nxt.start_line - 1
        end = min(end, sym.start_line + _CHUNK_MAX_LINES)
        a = min(sym.start_line - 1, n)
        b = max(min(end, n), a)
        if a >= cur:
            if a > cur:
                gap = findall(text, starts[cur] + cur, starts[a] + a)
                stream.append(list(chain.from_iterable(map(word_tokens, gap))))
            toks = list(
                chain.from_iterable(map(word_tokens, findall(text, starts[a] + a, starts[b] + b)))
            )
            stream.append(toks)
            cur = b
        else:  # overlaps a chunk already scanned (definitions sharing a line): scan it again
            words = findall(text, starts[a] + a, starts[b] + b)
            toks = list(chain.from_iterable(map(word_tokens, words)))
            if b > cur:
                more = findall(text, starts[cur] + cur, starts[b] + b)
                stream.append(list(chain.from_iterable(map(word_tokens, more))))
                cur = b
        counts = Counter(toks)
        for tok in tokens(sym.name):
            counts[tok] += 2
        if sym.parent:
            for tok in tokens(sym.parent):
                counts[tok] += 1
        chunks.append(counts)
    if cur < n:
        tail = findall(text, starts[cur] + cur)
        stream.append(list(chain.from_iterable(map(word_tokens, tail))))
    return Counter(chain.from_iterable(stream)), chunks


def _analyse_batch(batch: list[tuple[gitio.TreeEntry, bytes]]) -> list[_Analysed | None]:
    return [_analyse(entry, data) for entry, data in batch]


def _workers() -> int:
    """Worker processes for a large build: one per CPU this process may use (at most 4),
    and none where processes cannot be forked — or should not be: forking a process that runs
    other threads (the server, a job worker) can copy a lock another thread holds and hang the
    child, so there the build stays in-process. `errands index` and the benchmarks fork."""
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 4)


def _analyse_parallel(
    items: Iterable[tuple[gitio.TreeEntry, bytes]],
    workers: int,
    languages: Iterable[str | None],
) -> Iterator[_Analysed | None]:
    """``_analyse`` over ``items`` in worker processes, yielded in the order of ``items``
    (so the index is the same as a serial build's, document ids included).

    Batches go to the workers as ``items`` are read, so reading blobs overlaps analysing
    them; binary and oversized files are dropped here rather than shipped to a worker."""
    # Grammars are loaded and queries compiled once here, before the fork, not per worker.
    for language in set(languages) - {None}:
        assert language is not None
        grammar(language)
    context = multiprocessing.get_context("fork")
    # Each slot is a batch under analysis, or a count of files skipped here, in item order.
    slots: deque[Future[list[_Analysed | None]] | int] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # The first submit forks every worker (fork start method), so they exist before
        # `items` starts its `git cat-file` and cannot inherit that process's pipes.
        slots.append(pool.submit(_analyse_batch, []))
        batch: list[tuple[gitio.TreeEntry, bytes]] = []
        for entry, data in items:
            if is_binary(data) or too_big(entry.path, len(data)):
                if batch:
                    slots.append(pool.submit(_analyse_batch, batch))
                    batch = []
                slots.append(1)
            else:
                batch.append((entry, data))
                if len(batch) >= _BATCH_FILES:
                    slots.append(pool.submit(_analyse_batch, batch))
                    batch = []
            while slots and (isinstance(slots[0], int) or slots[0].done()):
                yield from _slot_results(slots.popleft())
        if batch:
            slots.append(pool.submit(_analyse_batch, batch))
        while slots:
            yield from _slot_results(slots.popleft())


def _slot_results(slot: Future[list[_Analysed | None]] | int) -> list[_Analysed | None]:
    return [None] * slot if isinstance(slot, int) else slot.result()


_PATH_WORD = re.compile(r"[A-Za-z0-9]+")


def _derive(files: dict[str, FileInfo]) -> Derived:
    from errands.index.paths import module_names

    derived = Derived()
    defs: dict[str, list[Symbol]] = defaultdict(list)
    path_tokens: dict[str, list[str]] = defaultdict(list)
    basenames: dict[str, list[str]] = defaultdict(list)
    for path, info in files.items():
        for sym in info.symbols:
            defs[sym.name].append(sym)
        for name in module_names(path):
            derived.modules.setdefault(name, path)
        parts = path.split("/")
        basenames[parts[-1]].append(path)
        stem = parts[-1].rsplit(".", 1)[0]
        seen: set[str] = set()
        for comp in [*parts[:-1], stem]:
            for tok in split_path_component(comp):
                if tok not in seen:
                    seen.add(tok)
                    path_tokens[tok].append(path)
    derived.defs = dict(defs)
    derived.path_tokens = dict(path_tokens)
    derived.basenames = dict(basenames)
    return derived


def split_path_component(comp: str) -> list[str]:
    low = comp.lower()
    out = [low]
    out.extend(w.lower() for w in _PATH_WORD.findall(comp.replace("_", " ")) if w.lower() != low)
    return [t for t in out if len(t) > 2 and t not in {"src", "lib", "init", "__init__", "main"}]
