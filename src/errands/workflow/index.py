"""The index stage: mirror the repository and learn its languages, size and verify commands."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from errands.errors import GitError
from errands.git import git
from errands.index import CodeIndex
from errands.settings import Settings
from errands.store import Database, Project
from errands.store.models import utcnow
from errands.workflow.code_index import Progress, refresh_index
from errands.workflow.detect import detect_verify
from errands.workflow.mirrors import base_tip, open_mirror, pool_for
from errands.workflow.project_config import CONFIG_FILE, parse_repo_config

if TYPE_CHECKING:  # `errands index` runs without the agent's modules (pydantic-ai: ~1 s)
    from errands.workflow.context import JobContext

LANGUAGES = {
    ".py": "Python",
    ".pyi": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".rb": "Ruby",
    ".php": "PHP",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".hpp": "C++",
    ".cs": "C#",
    ".swift": "Swift",
    ".scala": "Scala",
    ".sh": "Shell",
    ".sql": "SQL",
    ".html": "HTML",
    ".css": "CSS",
    ".scss": "CSS",
    ".vue": "Vue",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".hs": "Haskell",
    ".lua": "Lua",
    ".r": "R",
    ".m": "Objective-C",
}


def count_languages(files: list[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for name in files:
        language = LANGUAGES.get(PurePosixPath(name).suffix.lower())
        if language:
            counts[language] += 1
    return dict(counts.most_common())


Emit = Callable[[str, str, dict[str, Any]], None]


def index_project(
    settings: Settings,
    db: Database,
    project_id: int,
    *,
    emit: Emit,
    progress: Progress | None = None,
) -> CodeIndex:
    """Mirror the repository and learn it: languages, verify commands, `.errands.toml`, and
    the code index (only changed files when one exists). The index job and `errands index`
    both run this."""
    with db.session() as session:
        project = session.get_one(Project, project_id)
        origin, base_branch = project.origin, project.base_branch
    emit("index.started", f"Indexing {origin} ({base_branch})", {})
    mirror = open_mirror(settings, project_id, origin)
    mirror.fetch()
    ref = base_tip(mirror, origin, base_branch)
    files = git("ls-tree", "-r", "--name-only", "-z", ref, cwd=mirror.path).split("\0")
    files = [f for f in files if f]

    def read(path: str) -> str | None:
        try:
            return git("show", f"{ref}:{path}", cwd=mirror.path)
        except GitError:  # a submodule or an unreadable blob: nothing to learn from it
            return None

    languages = count_languages(files)
    detection = detect_verify(files, read)
    commands = [d.command for d in detection]
    config_text = read(CONFIG_FILE) if CONFIG_FILE in files else None
    # An invalid file fails the index with the reason rather than being silently ignored.
    repo_config = parse_repo_config(config_text) if config_text is not None else None
    started = time.monotonic()
    code, changed = refresh_index(settings, project_id, mirror, ref, progress=progress)
    seconds = time.monotonic() - started
    # The project's first job then finds a checked-out workspace waiting in the pool.
    pool_for(settings, mirror, project_id).prewarm(ref)
    with db.session() as session:
        project = session.get_one(Project, project_id)
        project.repo_config = repo_config.model_dump(mode="json") if repo_config else {}
        project.languages = languages
        project.file_count = len(files)
        project.detected_commands = commands
        project.detection = [d.to_dict() for d in detection]
        project.indexed_at = utcnow()
    how = "cold build" if changed is None else f"{len(changed)} changed file(s) re-indexed"
    emit(
        "index.finished",
        f"Indexed {len(files)} files ({code.symbol_count} symbols; {how} in {seconds:.2f}s); "
        f"verify with: {', '.join(commands) or 'nothing detected'}",
        {
            "file_count": len(files),
            "symbols": code.symbol_count,
            "reindexed": changed,
            "seconds": round(seconds, 3),
            "languages": languages,
            "detected_commands": commands,
            "detection": [d.to_dict() for d in detection],
            "repo_config": bool(repo_config),
        },
    )
    return code


def run(ctx: JobContext) -> None:
    last = [0.0]

    def progress(done: int, total: int) -> None:
        # A few events per build, not one per file.
        if total and (done == total or done / total - last[0] >= 0.25):
            last[0] = done / total
            ctx.emit("index.progress", f"Indexed {done}/{total} files", done=done, total=total)

    code = index_project(
        ctx.settings, ctx.db, ctx.lease.project_id, emit=ctx.event, progress=progress
    )
    # The index's lookup tables, made by this job (after the save, which no longer makes
    # them, to keep its peak down) rather than by the first query of the index this process
    # holds: a task's research (~60 ms at 5,000 files, ~0.8 s at 50,000). Not in
    # index_project: `errands index` exits without a query. Nothing when an update or a
    # load brought them along.
    code.derived()
