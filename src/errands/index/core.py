"""The code index of one project at one commit: build, update, persist, query."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errands.errors import GitError, InvalidInput
from errands.index import gitio, journal, memory, stored
from errands.index import locate as _locate
from errands.index.analyse import FileInfo, pack_files, unpack_files
from errands.index.bm25 import BM25
from errands.index.build import PARALLEL_MIN_FILES, Analysis, analyse_entries, reap_workers
from errands.index.lexical import tokens
from errands.index.model import Located, Symbol
from errands.index.overlay import Overlay
from errands.index.paths import skip_path, too_big
from errands.index.tables import Derived, saved_tables

# 9: symbols' names, kinds and parents in one column (8: symbols' names, kinds and
# parents each one string, the lookup tables as rows; 7: a
# journal of updates beside the saved index, which names the base it follows; 6:
# document keys packed; 5: files column by column, lookup tables without the
# definitions; 4: the history window, lookup tables; 3: no files' contents)
FORMAT_VERSION = 9
HISTORY_COMMITS = 500
# An update re-indexing more than this share of the files costs about as much as a cold
# build (adding documents one by one costs several times a bulk build's per-file work), so
# it is one.
REBUILD_SHARE = 0.125
# A save after updates appends them to the saved index's journal until the journal would
# pass this share of the saved index, or hold this many records (each is replayed by every
# load: a few ms for a one-file update); then the index is saved whole.
JOURNAL_SHARE = 0.25
JOURNAL_RECORDS = 64
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


class CodeIndex:
    """Files, languages, symbols, imports, a lexical index and history of one commit."""

    def __init__(self, commit: str, *, history_commits: int = HISTORY_COMMITS) -> None:
        self.commit = commit
        self.history_commits = history_commits  # the window's length
        self._files: Overlay[str, FileInfo] = Overlay()  # (a fork shares its base)
        self._file_bm25 = BM25()
        self._sym_bm25 = BM25()
        self._window = gitio.Window((), {})
        # Per file: the window's commits that changed it, and the newest of them (its age
        # is that commit's position in the window, looked up in _position).
        self._churn: Overlay[str, int] = Overlay()
        self._last: Overlay[str, str] = Overlay()
        self._position: dict[str, int] = {}
        self._derived: Derived | None = None
        # The commit of the query file this index last wrote or was loaded beside, and the
        # paths updates changed since: what an update of that file in place rewrites.
        self._query_base: str | None = None
        self._changed: set[str] = set()
        # The files whose history signals the window's moves since may have changed (None:
        # not known, every file's are compared).
        self._history_moved: set[str] | None = set()
        # The saved index this one is (was read from or last saved as), and the paths
        # updates changed since (None: unknown, the next save writes the index whole).
        self._disk: _OnDisk | None = None
        self._unsaved: set[str] | None = None

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
        memory.release()
        return index

    def _set_window(self, window: gitio.Window, *, moved: bool = False) -> None:
        """Take ``window`` and its history signals (``moved``: from this index's window,
        counting again only the files of the commits that entered or left)."""
        if moved:
            self._churn, self._last = window.signals_after(self._window, self._churn, self._last)
        else:
            self._churn, self._last = window.signals()
        self._window = window
        self._position = {sha: i for i, sha in enumerate(window.commits)}

    def _bulk(self, analysis: Analysis) -> None:
        """Take a fresh build's files and documents (an empty index only)."""
        self._files = Overlay({info.path: info for info in analysis.infos})
        # Both indexes number terms as the build did: one vocabulary, the base of both
        # overlays (never changed through them), not a copy each (~8 MB at 50,000 files).
        vocab = Overlay(analysis.vocab)
        # The workers' batches are gone by now: their pages go back before the sorts below
        # take new ones (the sort keys are mapped apart from the heap).
        memory.release()
        for part, attr in (("files", "_file_bm25"), ("chunks", "_sym_bm25")):
            docs = getattr(analysis, part)
            if docs is not None:
                # Let go of each part's arrays once its index is built, not at the end.
                setattr(analysis, part, None)
                bm25 = BM25.of_docs(docs, vocab)
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
        for i in range(info.symbol_count):
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
            if self._unsaved is not None:
                self._unsaved.add(change.path)
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
        self._set_window(moved, moved=True)
        self.commit = sha
        return [c.path for c in changes]

    def fork(self) -> CodeIndex:
        """A copy to update apart from this one, which stays as it is for whoever reads it
        (another thread's `locate`): what updates never change in place shared, the files
        and the tables keyed by name overlays of this index's (see
        :class:`~errands.index.overlay.Overlay`), the rest copied — a few ms on a large
        repository, in proportion to what earlier updates changed rather than to its size,
        where reading the saved index again takes seconds."""
        other = CodeIndex.__new__(CodeIndex)
        other.__dict__.update(self.__dict__)
        other._files = self._files.fork()
        other._file_bm25 = self._file_bm25.fork()
        other._sym_bm25 = self._sym_bm25.fork()
        other._derived = None if self._derived is None else self._derived.fork()
        # (the window and the history signals are replaced by an update, never changed)
        other._changed = set(self._changed)
        other._history_moved = None if self._history_moved is None else set(self._history_moved)
        other._unsaved = None if self._unsaved is None else set(self._unsaved)
        return other

    # ---- persistence ----------------------------------------------------------------------

    def save(
        self,
        path: Path,
        *,
        journal_share: float = JOURNAL_SHARE,
        journal_records: int = JOURNAL_RECORDS,
    ) -> journal.Identity:
        """Save the index at ``path``: when it was read from (or last saved as) the index
        saved there, and no other writer has saved since, by appending what its updates
        changed to that index's journal (see :mod:`errands.index.journal`); otherwise, or
        when the journal has grown long, whole (atomically: a crash leaves the old one, and
        two writers at once — the index job and a research job — each replace it whole).

        Returns the saved index's identity (:func:`errands.index.journal.identity`), taken
        as it was written: a reader that caches this index under it never pairs it with
        another writer's save that came after.

        ``journal_share`` and ``journal_records`` bound the journal (see
        :data:`JOURNAL_SHARE`); 0 saves whole."""
        disk, paths = self._disk, self._unsaved
        if (
            disk is not None
            and paths is not None
            and disk.records < journal_records
            # (checked again under the writers' lock; here it saves building a record
            # for an index saved elsewhere)
            and (journal.identity(path) or ())[:3] == disk.base
        ):
            saved = self._append(path, disk, paths, journal_share * disk.base[2])
            if saved is not None:
                return saved
        return self._save_whole(path)

    def _append(
        self, path: Path, disk: _OnDisk, paths: set[str], limit: float
    ) -> journal.Identity | None:
        payload = pickle.dumps(self._delta(disk, paths), protocol=pickle.HIGHEST_PROTOCOL)
        if disk.at + len(payload) > limit:
            return None
        saved = journal.append(path, payload, base=disk.base, at=disk.at)
        if saved is not None:
            self._disk = _OnDisk(
                disk.base, disk.token, saved[-1], disk.records + 1, self.commit, self._window
            )
            self._unsaved = set()
        return saved

    def _delta(self, disk: _OnDisk, paths: set[str]) -> dict[str, object]:
        """What the updates since ``disk`` changed: the entries, documents and history
        window a load applies to that saved index to make this one (see :meth:`_replay`)."""
        infos = [self._files[p] for p in sorted(paths) if p in self._files]
        docs = [
            (
                _document(self._file_bm25, info.path),
                [
                    (i, counts)
                    for i in range(info.symbol_count)
                    if (counts := _document(self._sym_bm25, f"{info.path}\0{i}")) is not None
                ],
            )
            for info in infos
        ]
        # The window by the commits the saved one holds (their positions there), and the
        # others' files: a move of the window costs the commits that entered.
        old = disk.window
        at = {sha: i for i, sha in enumerate(old.commits)}
        window: list[int | tuple[str, tuple[str, ...] | None]] = []
        for sha in self._window.commits:
            i, files = at.get(sha), self._window.changed.get(sha)
            window.append(i if i is not None and old.changed.get(sha) == files else (sha, files))
        return {
            "version": FORMAT_VERSION,
            "token": disk.token,
            "at": disk.at,
            "from": disk.commit,
            "commit": self.commit,
            "paths": sorted(paths),
            "files": pack_files(infos),
            "docs": docs,
            "window": window,
        }

    def _replay(self, delta: dict[str, Any]) -> None:
        """Apply a journal's record (see :meth:`_delta`) to the index it follows."""
        for path in delta["paths"]:
            self._remove_file(path)
        infos = unpack_files(delta["files"]).values()
        for info, (file_doc, sym_docs) in zip(infos, delta["docs"], strict=True):
            self._files[info.path] = info
            if self._derived is not None:
                self._derived.add(info)
            if file_doc is not None:
                self._file_bm25.add(info.path, file_doc)
            for i, counts in sym_docs:
                self._sym_bm25.add(f"{info.path}\0{i}", counts)
        old = self._window
        commits: list[str] = []
        changed: dict[str, tuple[str, ...]] = {}
        for entry in delta["window"]:
            if isinstance(entry, int):
                sha, files = old.commits[entry], old.changed.get(old.commits[entry])
            else:
                sha, files = entry
            commits.append(sha)
            if files is not None:
                changed[sha] = files
        self._set_window(gitio.Window(tuple(commits), changed), moved=True)
        self.commit = delta["commit"]

    def _save_whole(self, path: Path) -> journal.Identity:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        # Many updates leave removed documents and a large overlay behind: the file gets a
        # compacted copy (this index stays as it is, so an update never pays for that).
        file_bm25, sym_bm25 = self._file_bm25, self._sym_bm25
        if file_bm25.fragmented or sym_bm25.fragmented:
            file_bm25, sym_bm25 = file_bm25.compact(), sym_bm25.compact()
        # Names this base to the records of its journal: a journal left beside an older
        # base (a crash between the two) is never applied to this one.
        token = os.urandom(16)
        state = {
            "version": FORMAT_VERSION,
            "token": token,
            "commit": self.commit,
            "files": pack_files(self._files.values()),
            "file_bm25": file_bm25,
            "sym_bm25": sym_bm25,
            "window": self._window,
            "history_commits": self.history_commits,
            # The lookup tables keyed by path words too, so a load need not make them (from
            # the paths: the tables themselves are made only when a query asks for them).
            "derived": saved_tables(self._files.keys()),
        }
        try:
            with os.fdopen(handle, "wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                base = journal.stat_identity(os.fstat(fh.fileno()))
            journal.replace_base(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._disk = _OnDisk(base, token, 0, 0, self.commit, self._window)
        self._unsaved = set()
        del state
        memory.release()
        return base + journal.NO_JOURNAL

    def save_query_file(self, path: Path) -> bool:
        """Write the index as a query file (see :mod:`errands.index.stored`): what a fresh
        process reads to answer `locate` without loading the whole index. When the file
        there holds this index as it was before its last updates, only the rows of the files
        they changed are rewritten (True); otherwise it is written whole (False)."""
        contents = stored.Contents(
            self.commit, self._files, self._file_bm25, self._sym_bm25, self._churn, self._last,
            self._window.commits,
        )  # fmt: skip
        updated = self._query_base is not None and stored.update(
            path, contents, base=self._query_base, changed=self._changed,
            history=self._history_moved,
        )  # fmt: skip
        if not updated:
            stored.write(path, contents)
            memory.release()
        self._query_base, self._changed, self._history_moved = self.commit, set(), set()
        return updated

    @classmethod
    def load(cls, path: Path) -> CodeIndex:
        """Read an index written by :meth:`save`, its journal's records applied in order
        (Errands' own data directory only: the format is pickle, so never point this at a
        file someone else wrote). A journal's torn or damaged tail, or records that do not
        follow this base, are left out: the index is then that of an earlier commit, which
        the next update brings forward and saves whole."""
        # A process reading an index often let go of another just before (the one it held,
        # replaced): its pages go back first rather than stay beside this one.
        memory.release()
        try:
            with path.open("rb") as fh:
                base = journal.stat_identity(os.fstat(fh.fileno()))
                state = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            raise InvalidInput(f"cannot read code index {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
            raise InvalidInput(f"code index {path} has an old or unknown format; rebuild it")
        index = cls(state["commit"], history_commits=state["history_commits"])
        # (The packed columns let go of as soon as read: tens of MB at 50,000 files.)
        index._files = Overlay(unpack_files(state.pop("files")))
        index._file_bm25 = state["file_bm25"]
        index._sym_bm25 = state["sym_bm25"]
        index._sym_bm25.share_vocab(index._file_bm25)
        index._set_window(state["window"])
        index._derived = Derived.restored(state.pop("derived"), index._files.values())
        token, at, applied = state["token"], 0, 0
        data, _size = journal.read(path)
        for start, end, payload in journal.records(data):
            delta = _record(payload)
            if (
                delta is None
                or delta.get("token") != token
                or delta.get("at") != start
                or delta.get("from") != index.commit
            ):
                break
            index._replay(delta)
            at, applied = end, applied + 1
        index._disk = _OnDisk(base, token, at, applied, index.commit, index._window)
        index._unsaved = set()
        # Terms by id, which saving after an update reads (the query file's rows and the
        # journal's record): made once here, not by the first update of each fork of this
        # index (tens of ms on a large repository, a small part of a load).
        index._file_bm25.term_names()
        index._sym_bm25.term_names()
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
            "churn": dict(self._churn.items()),
            "age": {path: self._position[sha] for path, sha in self._last.items()},
        }

    @property
    def files(self) -> int:
        return len(self._files)

    @property
    def symbol_count(self) -> int:
        return sum(f.symbol_count for f in self._files.values())

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

    def symbols_named(self, path: str, name: str) -> list[Symbol]:
        """A file's symbols called ``name`` (its definitions of that name), in order."""
        info = self._files.get(path)
        return info.symbols_named(name) if info else []

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
        sha = self._last.get(path)
        return None if sha is None else self._position[sha]

    def symbol_at(self, key: str) -> Symbol | None:
        path, _, idx = key.partition("\0")
        info = self._files.get(path)
        if info is None:
            return None
        return info.symbol(int(idx))


@dataclass(frozen=True, slots=True)
class _OnDisk:
    """A saved index, as an index read from it or saved as it knows it: its base's identity
    and token, its journal's length and records, and the commit and window there."""

    base: tuple[int, int, int]
    token: bytes
    at: int
    records: int
    commit: str
    window: gitio.Window


def _document(bm25: BM25, key: str) -> dict[str, int] | None:
    """A document's terms and counts, None when there is no such document (one without
    terms is a document too: it counts among the live ones)."""
    return bm25.document(key) if bm25.doc_keys.id_of(key) is not None else None


def _record(payload: bytes) -> dict[str, Any] | None:
    """A journal record's contents, None when this version cannot read it."""
    try:
        delta = pickle.loads(payload)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError):
        return None
    if not isinstance(delta, dict) or delta.get("version") != FORMAT_VERSION:
        return None
    return delta


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
