"""The index's public value types."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def __reduce__(self) -> tuple[type[Symbol], tuple[str, str, str, int, int, str | None]]:
        # Pickled as its fields: several times faster than the dataclass default, and an
        # index holds (and a build ships between processes) thousands of symbols.
        return (Symbol, (self.name, self.kind, self.path, self.start_line, self.end_line,
                         self.parent))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Located:
    """A file ranked for a text, with why, and the symbols in it the text pointed at."""

    path: str
    score: float
    reasons: list[str] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
