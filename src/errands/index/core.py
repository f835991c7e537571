"""The code index of one project at one commit: build, update, persist, query."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from errands.errors import GitError, InvalidInput
from errands.index import gitio, stored
from errands.index import locate as _locate
from errands.index.analyse import FileInfo, pack_files, unpack_files
from errands.index.bm25 import BM25
from errands.index.build import PARALLEL_MIN_FILES, Analysis, analyse_entries, reap_workers
from errands.index.lexical import tokens
from errands.index.model import Located, Symbol
from errands.index.paths import skip_path, too_big
from errands.index.tables import Derived

# 6: document keys packed (5: files column by column, lookup tables without the
# definitions; 4: the history window, lookup tables; 3: no files' contents)
FORMAT_VERSION = 6
HISTORY_COMMITS = 500
# An update re-indexing more than this share of the files costs about as much as a cold
# build (adding documents one by one costs several times a bulk build's per-file work), so
# it is one.
REBUILD_SHARE = 0.125
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


class CodeIndex:
    """Files, languages, symbols, imports, a lexical index and history of one commit."""

    def __init__(self, commit: str, *, history_commits: int = HISTORY_COMMITS) -> None:
        self.commit = commit
        self.history_commits = history_commits  # the window's length
        self._files: dict[str, FileInfo] = {}
        self._file_bm25 = BM25()
        self._sym_bm25 = BM25()
        self._window = gitio.Window((), {})
        self._churn: Counter[str] = Counter()
        self._age: dict[str, int] = {}
        self._derived: Derived | None = None
        # The commit of the query file this index last wrote or was loaded beside, and the
        # paths updates changed since: what an update of that file in place rewrites.
        self._query_base: str | None = None
        self._changed: set[str] = set()
        # The files whose history signals the window's moves since may have changed (None:
        # not known, every file's are compared).
        self._history_moved: set[str] | None = set()

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        git_dir: Path,
        commit: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        history_commits: int = HISTORY_COMMITS,
    ) -> CodeIndex:
        """Index every text file of ``commit`` (in worker processes when there are many),
        with the files changed by its last ``history_commits`` commits."""
        sha = commit if _FULL_SHA.fullmatch(commit) else gitio.rev_parse(git_dir, commit)
        index = cls(sha, history_commits=history_commits)
        history = gitio.History(git_dir, sha, max_commits=history_commits)
        entries = [
            e
            for e in gitio.ls_tree(git_dir, sha)
            if not skip_path(e.path) and not too_big(e.path, e.size)
        ]
        index._bulk(analyse_entries(git_dir, entries, progress))
        index._set_window(history.result())
        reap_workers()
        return index

    def _set_window(self, window: gitio.Window) -> None:
        self._window = window
        self._churn, self._age = window.signals()

    def _bulk(self, analysis: Analysis) -> None:
        """Take a fresh build's files and documents (an empty index only)."""
        self._files = {info.path: info for info in analysis.infos}
        for part, attr in (("files", "_file_bm25"), ("chunks", "_sym_bm25")):
            docs = getattr(analysis, part)
            if docs is not None:
                # Let go of each part's arrays once its index is built, not at the end.
                setattr(analysis, part, None)
                bm25 = BM25.bulk(docs.keys, analysis.vocab, docs.ptr, docs.terms, docs.tfs)
                setattr(self, attr, bm25)
                del docs
        self._derived = None

    def _add(self, analysis: Analysis) -> None:
        """Add analysed files one document at a time (an update: the index has others)."""
        names = list(analysis.vocab)
        for info in analysis.infos:
            self._files[info.path] = info
            if self._derived is not None:
                self._derived.add(info)
        for docs, bm25 in ((analysis.files, self._file_bm25), (analysis.chunks, self._sym_bm25)):
            if docs is not None:
                for i, key in enumerate(docs.keys):
                    if key is not None:  # (fresh keys: never removed)
                        bm25.add(key, docs.counts(i, names))

    def _remove_file(self, path: str) -> None:
        info = self._files.pop(path, None)
        if info is None:
            return
        if self._derived is not None:
            self._derived.remove(info)
        self._file_bm25.remove(path)
        for i in range(len(info.symbols)):
            self._sym_bm25.remove(f"{path}\0{i}")

    def update(
        self, git_dir: Path, commit: str, *, progress: Callable[[int, int], None] | None = None
    ) -> list[str]:
        """Bring the index to ``commit``: re-index only the files that changed since
        ``self.commit`` — or all of them when so many changed that a cold build is cheaper —
        and move the history window; the changed paths. Either way the index then equals a
        cold build of ``commit``."""
        sha = commit if _FULL_SHA.fullmatch(commit) else gitio.rev_parse(git_dir, commit)
        if sha == self.commit:
            return []
        # The window's git processes start first and run while git lists the changes: an
        # update of a file or two is mostly waiting for git processes, so they overlap.
        window = self._window.moving_to(git_dir, self.commit, sha, max_commits=self.history_commits)
        try:
            changes = gitio.diff_raw(git_dir, self.commit, sha)
        except BaseException:
            window.close()
            raise
        if len(changes) > max(PARALLEL_MIN_FILES, REBUILD_SHARE * len(self._files)):
            window.close()
            fresh = CodeIndex.build(
                git_dir, sha, progress=progress, history_commits=self.history_commits
            )
            self.__dict__.update(fresh.__dict__)
            return [c.path for c in changes]
        for change in changes:
            self._remove_file(change.path)
            self._changed.add(change.path)
        entries = [
            gitio.TreeEntry(c.path, c.blob, 0)
            for c in changes
            if c.status != "D" and c.mode not in ("120000", "160000") and not skip_path(c.path)
        ]
        # Oversized files are left out by `analyse`, on their contents' length, as in a build.
        self._add(analyse_entries(git_dir, entries, progress))
        moved = window.result()
        if self._history_moved is not None:
            self._history_moved = _history_moved(self._window, moved, self._history_moved)
        self._set_window(moved)
        self.commit = sha
        return [c.path for c in changes]

    # ---- persistence ----------------------------------------------------------------------

    def save(self, path: Path) -> tuple[int, int, int]:
        """Write the index to one file (atomically: a crash leaves the old one, and two
        writers at once — the index job and a research job — each replace it whole).

        Returns the written file's identity (inode, mtime in ns, size), taken before it is
        renamed into place: a reader that caches this index under it never pairs it with
        another writer's file that replaced it in between."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        # Many updates leave removed documents and a large overlay behind: the file gets a
        # compacted copy (this index stays as it is, so an update never pays for that).
        file_bm25, sym_bm25 = self._file_bm25, self._sym_bm25
        if file_bm25.fragmented or sym_bm25.fragmented:
            file_bm25, sym_bm25 = file_bm25.compact(), sym_bm25.compact()
        state = {
            "version": FORMAT_VERSION,
            "commit": self.commit,
            "files": pack_files(self._files.values()),
            "file_bm25": file_bm25,
            "sym_bm25": sym_bm25,
            "window": self._window,
            "history_commits": self.history_commits,
            # The lookup tables too, so a fresh process's first query need not build them.
            "derived": self.derived().saved(),
        }
        try:
            with os.fdopen(handle, "wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                st = os.fstat(fh.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def save_query_file(self, path: Path) -> bool:
        """Write the index as a query file (see :mod:`errands.index.stored`): what a fresh
        process reads to answer `locate` without loading the whole index. When the file
        there holds this index as it was before its last updates, only the rows of the files
        they changed are rewritten (True); otherwise it is written whole (False)."""
        contents = stored.Contents(
            self.commit, self._files, self._file_bm25, self._sym_bm25, self._churn, self._age,
            self._window.commits,
        )  # fmt: skip
        updated = self._query_base is not None and stored.update(
            path, contents, base=self._query_base, changed=self._changed,
            history=self._history_moved,
        )  # fmt: skip
        if not updated:
            stored.write(path, contents)
        self._query_base, self._changed, self._history_moved = self.commit, set(), set()
        return updated

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
        index = cls(state["commit"], history_commits=state["history_commits"])
        index._files = unpack_files(state["files"])
        index._file_bm25 = state["file_bm25"]
        index._sym_bm25 = state["sym_bm25"]
        index._set_window(state["window"])
        index._derived = Derived.restored(state["derived"], index._files.values())
        # Saved after its query file (see workflow.code_index): an update of that file in
        # place checks that it is at this commit.
        index._query_base = index.commit
        return index

    # ---- facts ----------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Everything queries read, in plain values independent of how the index came about
        (document numbering, dict order, removed documents): two indexes of one commit have
        equal states, whatever updates led to either. For tests and the benchmark (it walks
        every posting)."""
        return {
            "commit": self.commit,
            "files": dict(sorted(self._files.items())),
            "file_postings": self._file_bm25.documents(),
            "file_statistics": self._file_bm25.statistics(),
            "symbol_postings": self._sym_bm25.documents(),
            "symbol_statistics": self._sym_bm25.statistics(),
            "tables": self.derived(),
            "window": self._window,
            "churn": dict(self._churn),
            "age": self._age,
        }

    @property
    def files(self) -> int:
        return len(self._files)

    @property
    def symbol_count(self) -> int:
        return sum(len(f.symbols) for f in self._files.values())

    @property
    def languages(self) -> dict[str, int]:
        counts = Counter(f.language for f in self._files.values() if f.language)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def paths(self) -> list[str]:
        return sorted(self._files)

    def symbols(self, path: str) -> tuple[Symbol, ...]:
        info = self._files.get(path)
        return info.symbols if info else ()

    def imports(self, path: str) -> tuple[str, ...]:
        info = self._files.get(path)
        return info.imports if info else ()

    def text(self, git_dir: Path, path: str) -> str:
        """A file's contents at the indexed commit, read from the repository."""
        text = self._texts(git_dir, [path])[0]
        if text is None:
            raise GitError(f"{git_dir} lacks {path} at {self.commit[:12]}")
        return text

    def _texts(self, git_dir: Path, paths: list[str]) -> list[str | None]:
        """Files' contents (None where the repository lacks the blob)."""
        blobs: list[str] = []
        for path in paths:
            info = self._files.get(path)
            if info is None:
                raise InvalidInput(f"no file {path!r} in the index")
            blobs.append(info.blob)
        if not blobs:
            return []
        return [
            None if data is None else data.decode("utf-8", "replace")
            for data in gitio.read_blobs(git_dir, blobs)
        ]

    def derived(self) -> Derived:
        if self._derived is None:
            self._derived = Derived.of(self._files.values())
        return self._derived

    # ---- queries --------------------------------------------------------------------------

    def search(self, git_dir: Path, query: str, *, limit: int = 20) -> list[tuple[str, int, str]]:
        """Lines matching a query, best files first: ``(path, line, snippet)``, the files
        read from the repository ``git_dir`` (the one indexed).

        Lines containing the query literally come first; otherwise the lines holding the most
        of its words. At most three lines per file, so one file cannot fill the list."""
        query = query.strip()
        if not query or limit <= 0:
            return []
        terms = {t: 1.0 for t in tokens(query)}
        ranked = [path for path, _ in self._file_bm25.top(terms, max(limit, 10))] if terms else []
        needle = query.lower()
        literal = re.compile(re.escape(needle))
        results: list[tuple[str, int, str]] = []
        for path, text in zip(ranked, self._texts(git_dir, ranked), strict=True):
            if text is None:  # a blob the repository lost (never in a healthy mirror)
                continue
            lines = text.split("\n")
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


def _history_moved(old: gitio.Window, new: gitio.Window, moved: set[str]) -> set[str] | None:
    """``moved`` and the files whose churn or newest commit may differ between the two
    windows: those of the commits that entered or left. None when the commits both hold
    are not in the same order (then which is newest may have changed for any file)."""
    old_set, new_set = set(old.commits), set(new.commits)
    if [c for c in old.commits if c in new_set] != [c for c in new.commits if c in old_set]:
        return None
    for sha in old_set - new_set:
        moved.update(old.changed.get(sha, ()))
    for sha in new_set - old_set:
        moved.update(new.changed.get(sha, ()))
    return moved
