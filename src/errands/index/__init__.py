"""The code index: files, languages, symbols, imports, lexical search and localization.

:class:`CodeIndex` is built from a git repository at a commit (no checkout), updated when the
base moves by re-indexing only changed files, saved to one file per project, and answers
``search`` (for the agent's ``search_code`` tool), ``locate`` (which files a task is about,
with reasons) and ``repo_map`` (a compact outline of symbols).
"""

from errands.index.core import CodeIndex
from errands.index.model import Located, Symbol

__all__ = ["CodeIndex", "Located", "Symbol"]
