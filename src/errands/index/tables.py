"""The ranker's lookup tables, derived from the index's files: which files define a name,
which file a dotted module name is, which files a path word or a basename names.

Every list is in path order (a file's symbols in their order within it), whatever order the
files came in, so a table patched file by file after an update equals one built afresh — and
an update patches them rather than building them again (on a large repository that takes
seconds)."""

from __future__ import annotations

import bisect
import io
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from errands.index.analyse import FileInfo
from errands.index.overlay import Overlay
from errands.index.paths import module_names

_PATH_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(slots=True)
class Derived:
    """Lookup tables computed from the files: each key's files (or symbols) in path order.

    Each table is an :class:`Overlay`, so a fork shares what it does not change (a copy of
    each took ~9 ms of a one-file re-index on a 50,000-file repository)."""

    # name → the files defining it (their symbols of that name are the definitions: kept
    # as the files' entries keep them, not as a second set of symbol objects)
    defs: Overlay[str, list[str]] = field(default_factory=Overlay)
    modules: Overlay[str, list[str]] = field(default_factory=Overlay)  # dotted name → paths
    path_tokens: Overlay[str, list[str]] = field(default_factory=Overlay)  # dir/stem token → paths
    basenames: Overlay[str, list[str]] = field(default_factory=Overlay)

    @classmethod
    def of(cls, files: Iterable[FileInfo]) -> Derived:
        tables: dict[str, dict[str, list[str]]] = {name: {} for name in TABLES}
        ordered = sorted(files, key=lambda f: f.path)  # appended in path order
        for info in ordered:
            for table, key in path_keys(info.path):
                tables[table].setdefault(key, []).append(info.path)
        return cls._of_tables(ordered, tables)

    @classmethod
    def restored(cls, saved: tuple[str, bytes, bytes], files: Iterable[FileInfo]) -> Derived:
        """The tables of ``files``, those keyed by path words read from ``saved`` (see
        :func:`saved_tables`), :attr:`defs` listed afresh from the files' symbols."""
        ordered = sorted(files, key=lambda f: f.path)
        joined, table_bytes, ordinal_bytes = saved
        ordinals = array("i")
        ordinals.frombytes(ordinal_bytes)
        keys = joined.split("\0") if ordinals else []
        tables: list[dict[str, list[str]]] = [{} for _ in TABLES]
        for key, table, ordinal in zip(keys, table_bytes, ordinals, strict=True):
            tables[table].setdefault(key, []).append(ordered[ordinal].path)
        return cls._of_tables(ordered, dict(zip(TABLES, tables, strict=True)))

    @classmethod
    def _of_tables(
        cls, ordered: list[FileInfo], tables: dict[str, dict[str, list[str]]]
    ) -> Derived:
        """The tables keyed by path words (by name, see :data:`TABLES`) and :attr:`defs`
        listed from the files' symbols (``ordered``: the files in path order)."""
        defs: dict[str, list[str]] = {}
        for info in ordered:
            for name in dict.fromkeys(info.symbol_names):
                defs.setdefault(name, []).append(info.path)
        return cls(
            Overlay(defs),
            Overlay(tables["modules"]),
            Overlay(tables["path_tokens"]),
            Overlay(tables["basenames"]),
        )

    def defined_in(self, name: str, most: int) -> list[str] | None:
        """The files defining ``name``, in path order; None when none does or more than
        ``most`` do."""
        found = self.defs.get(name)
        return found if found and len(found) <= most else None

    def named_by(self, word: str) -> int:
        """How many files' paths name ``word`` (see :attr:`path_tokens`)."""
        return len(self.path_tokens.get(word) or ())

    def fork(self) -> Derived:
        """A copy to change apart from this one: :meth:`add` and :meth:`remove` put new
        lists in the tables rather than change those there, so the lists are shared, and
        the tables' bases too (see :class:`Overlay`)."""
        return Derived(
            self.defs.fork(), self.modules.fork(), self.path_tokens.fork(), self.basenames.fork()
        )

    def add(self, info: FileInfo) -> None:
        """Enter a file that is not in the tables, where path order puts it (in new lists:
        see :meth:`fork`)."""
        path = info.path
        for table, key in self._keys(info):
            paths = table.get(key, [])
            at = bisect.bisect_left(paths, path)
            table[key] = [*paths[:at], path, *paths[at:]]

    def remove(self, info: FileInfo) -> None:
        """Take a file out of the tables (as it was entered: ``info`` is its old entry)."""
        path = info.path
        for table, key in self._keys(info):
            paths = table.get(key)
            if paths is None:
                continue
            # (Found by bisection, not a step per path: a directory's word lists thousands
            # of files on a large repository.)
            at = bisect.bisect_left(paths, path)
            if at == len(paths) or paths[at] != path:
                continue
            if len(paths) > 1:
                table[key] = [*paths[:at], *paths[at + 1 :]]
            else:
                del table[key]

    def _keys(self, info: FileInfo) -> Iterator[tuple[Overlay[str, list[str]], str]]:
        """Each table and key under which ``info``'s path is listed: its path words', and
        :attr:`defs` under each name it defines."""
        for table, key in path_keys(info.path):
            yield getattr(self, table), key
        for name in dict.fromkeys(info.symbol_names):
            yield self.defs, name


TABLES = ("modules", "basenames", "path_tokens")  # the tables a path is listed in


def saved_tables(paths: Iterable[str]) -> tuple[str, bytes, bytes]:
    """The tables keyed by path words of files at ``paths``, to save (and read back by
    :meth:`Derived.restored`, so a fresh process's first query need not make them: ~0.7 s
    at 50,000 files): each (table, key, path) in path order, as the keys joined by NUL
    (which no git path holds), the tables' numbers and the paths' places in path order.
    Made from the paths, not from the tables (which the saving process may not hold), and
    not as dicts of lists, which a pickle would remember entry by entry."""
    # Keys written as they come (not a list of them all, then joined).
    keys = io.StringIO()
    tables = bytearray()
    ordinals = array("i")
    number = {name: i for i, name in enumerate(TABLES)}
    for ordinal, path in enumerate(sorted(paths)):
        for table, key in path_keys(path):
            if ordinals:
                keys.write("\0")
            keys.write(key)
            tables.append(number[table])
            ordinals.append(ordinal)
    return keys.getvalue(), bytes(tables), ordinals.tobytes()


def path_keys(path: str) -> Iterator[tuple[str, str]]:
    """Each table (by name, one of :data:`TABLES`) and key under which ``path`` is listed:
    a function of the path alone, so the query file can drop a file's keys by its path."""
    for name in module_names(path):
        yield "modules", name
    parts = path.split("/")
    yield "basenames", parts[-1]
    stem = parts[-1].rsplit(".", 1)[0]
    seen: set[str] = set()
    for comp in [*parts[:-1], stem]:
        for tok in split_path_component(comp):
            if tok not in seen:
                seen.add(tok)
                yield "path_tokens", tok


def split_path_component(comp: str) -> list[str]:
    low = comp.lower()
    out = [low]
    out.extend(w.lower() for w in _PATH_WORD.findall(comp.replace("_", " ")) if w.lower() != low)
    return [t for t in out if len(t) > 2 and t not in {"src", "lib", "init", "__init__", "main"}]
