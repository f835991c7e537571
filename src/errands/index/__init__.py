"""The code index: files, languages, symbols, imports, lexical search and localization.

:class:`CodeIndex` is built from a git repository at a commit (no checkout), updated when the
base moves by re-indexing only changed files, saved per project (a whole index and a journal
of the updates since), and answers
``search`` (for the agent's ``search_code`` tool), ``locate`` (which files a task is about,
with reasons) and ``repo_map`` (a compact outline of symbols).

Its names are imported when first used: `errands locate` reads a query file
(:mod:`errands.index.stored`) and needs none of the building machinery (worker processes,
git plumbing, pickling) that importing :mod:`errands.index.core` brings along.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from errands.index.core import CodeIndex
    from errands.index.model import Located, Symbol

__all__ = ["CodeIndex", "Located", "Symbol"]


def __getattr__(name: str) -> Any:
    if name == "CodeIndex":
        from errands.index.core import CodeIndex

        return CodeIndex
    if name in ("Located", "Symbol"):
        from errands.index import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
