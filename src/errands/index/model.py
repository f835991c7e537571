"""The index's public value types."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Symbol:
    """A definition in a file: ``kind`` is class, function, method, struct, interface, ...

    Lines are 1-based and inclusive; ``parent`` is the enclosing definition's name.
    """

    name: str
    kind: str
    path: str
    start_line: int
    end_line: int
    parent: str | None

    def __reduce__(
        self,
    ) -> tuple[Callable[..., Symbol], tuple[str, str, str, int, int, str | None]]:
        # Pickled as its fields: several times faster than the dataclass default, and an
        # index holds (and a build ships between processes) thousands of symbols.
        return (_unpickled, (self.name, self.kind, self.path, self.start_line, self.end_line,
                             self.parent))  # fmt: skip


def _unpickled(
    name: str, kind: str, path: str, start_line: int, end_line: int, parent: str | None
) -> Symbol:
    """A symbol read back, its names interned: a large repository's 700,000 symbols have a
    few hundred thousand distinct names (a method's parent is its class's name, `__init__`
    is everywhere) and a handful of kinds, each otherwise a string of its own in memory —
    and in every pickle of the index, which shares equal objects only."""
    intern = sys.intern
    return Symbol(
        intern(name), intern(kind), path, start_line, end_line,
        None if parent is None else intern(parent),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Located:
    """A file ranked for a text, with why, and the symbols in it the text pointed at."""

    path: str
    score: float
    reasons: list[str] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As `errands locate --json` prints it, the API answers it and the MCP tool gives it."""
        return {
            "path": self.path,
            "score": self.score,
            "reasons": list(self.reasons),
            "symbols": [
                {"name": s.name, "kind": s.kind, "line": s.start_line, "end": s.end_line}
                for s in self.symbols
            ],
        }
