"""The review page: the stack of subtasks, one diff at a time (or the whole branch, or only
what changed since the last review), line comments with threads, and the verdicts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from errands.accounts.access import ACT, READ, Permit, principal_of
from errands.errors import ErrandsError, InvalidInput, NotFound
from errands.git import Detail, Diff
from errands.git.rangediff import RangeDiff
from errands.jobs import ledger
from errands.limits import Count, Id
from errands.schemas import CommentPublic, SubtaskPublic, TaskPublic
from errands.settings import Settings
from errands.store import Database
from errands.web.deps import (
    DbDep,
    ReviewerDep,
    SettingsDep,
    get_reviewer,
    in_session,
    optional_int,
)
from errands.web.ui import diffview
from errands.web.ui.render import page, wants_json
from errands.workflow import actions, reviewers
from errands.workflow.reviewers import Reviewer

router = APIRouter(include_in_schema=False)
# Comments are looked up within their task (which the Permit scopes), never on their own.
ACT_ON_COMMENT = Depends(Permit("act", handler_scoped=frozenset({"comment_id"})))

View = Literal["subtask", "all", "since", "versions"]
VIEWS = ("subtask", "all", "since", "versions")


@dataclass
class Thread:
    root: CommentPublic
    replies: list[CommentPublic] = field(default_factory=list)
    suggestion: str | None = None
    subtask: int | None = None  # where it was made (None: on the whole branch)

    @property
    def text(self) -> str:
        """The comment without its suggestion block (shown apart, as code)."""
        return actions.SUGGESTION_BLOCK.sub("", self.root.body).strip()


@dataclass(frozen=True)
class Asked:
    """What the reader asked to see, as the page's query parameters."""

    view: str = "subtask"
    subtask: Id | None = None
    version: Id | None = None  # a subtask's diff at this version (default: its newest)
    old: Id | None = None  # view=versions: compare these two versions of the subtask
    new: Id | None = None
    round: Id | None = None  # view=since: changes since this review round
    layout: Literal["unified", "split"] = "unified"


AskedDep = Annotated[Asked, Depends()]


@dataclass(frozen=True)
class Selection:
    view: View
    subtask: int | None
    split: bool
    version: int | None = None
    old: int | None = None
    new: int | None = None
    round: int | None = None

    def query(self, **change: Any) -> str:
        values: dict[str, Any] = {
            "view": self.view,
            "subtask": self.subtask,
            "version": self.version,
            "old": self.old,
            "new": self.new,
            "round": self.round,
            "layout": self.layout,
        }
        if "view" in change or "subtask" in change:
            # Another view or subtask: the versions and rounds chosen were this one's.
            values.update(version=None, old=None, new=None, round=None)
        values.update(change)
        if values["view"] not in ("subtask", "versions"):
            values.pop("subtask")
        parts = [f"{k}={v}" for k, v in values.items() if v is not None]
        return "?" + "&".join(parts)

    @property
    def layout(self) -> str:
        return "split" if self.split else "unified"


def _threads(task: TaskPublic) -> list[Thread]:
    # A thread made on any version of a subtask stays that subtask's.
    by_sha = {v.commit_sha: s.position for s in task.subtasks for v in s.versions}
    by_sha.update({s.commit_sha: s.position for s in task.subtasks if s.commit_sha})
    roots = {c.id: Thread(c, suggestion=actions.suggestion_of(c.body)) for c in task.comments}
    for c in task.comments:
        thread = roots[c.id]
        thread.subtask = by_sha.get(c.commit_sha) if c.commit_sha else None
        if c.parent_id is not None and c.parent_id in roots:
            roots[c.parent_id].replies.append(c)
    return [t for t in roots.values() if t.root.parent_id is None]


def _select(task: TaskPublic, asked: Asked) -> Selection:
    split = asked.layout == "split"
    committed = [s for s in task.subtasks if s.commit_sha]
    view, subtask = asked.view, asked.subtask
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}, not {view!r}.")
    if view in ("subtask", "versions") and subtask is None:
        if not committed:
            return Selection("all", None, split)
        subtask = committed[0].position
    if view == "versions":
        sub = next((s for s in task.subtasks if s.position == subtask), None)
        count = len(sub.versions) if sub else 0
        if count < 2 and (asked.old is None or asked.new is None):
            raise InvalidInput(f"Subtask {subtask} has one version: there is nothing to compare.")
        old, new = asked.old or count - 1, asked.new or count
        return Selection("versions", subtask, split, old=old, new=new)
    if view == "subtask":
        return Selection("subtask", subtask, split, version=asked.version)
    return Selection(view, None, split, round=asked.round if view == "since" else None)  # type: ignore[arg-type]


def _diff_of(
    s: Session,
    settings: Settings,
    task_id: int,
    selection: Selection,
    reviewer: Reviewer,
    detail: Detail | None = None,
    tip: str | None = None,
) -> Diff:
    """What the selection shows (``detail``: of a subtask's newest version or the whole
    branch, only some files' hunks parsed; other views parse all; ``tip``: the branch,
    resolved already)."""
    if selection.view == "since":
        return _since(s, settings, task_id, selection, reviewer)[0]
    if selection.view == "subtask" and selection.version is not None:
        assert selection.subtask is not None
        return actions.version_diff(s, settings, task_id, selection.subtask, selection.version)[1]
    return actions.diff(s, settings, task_id, selection.subtask, detail=detail, tip=tip)[1]


def _since(
    s: Session, settings: Settings, task_id: int, selection: Selection, reviewer: Reviewer
) -> tuple[Diff, str, str]:
    """Since a review round when one is named, else since this reviewer's last review."""
    if selection.round is not None:
        return actions.interdiff(s, settings, task_id, selection.round)[1:]
    task = actions.get_task(s, task_id)
    return reviewers.since_my_last_review(s, settings, task, reviewer)


def _load(
    s: Session,
    settings: Settings,
    task_id: int,
    asked: Asked,
    reviewer: Reviewer,
    detail: Detail | None = None,
) -> dict[str, Any]:
    task, jobs = actions.task_with_jobs(s, task_id)
    public = TaskPublic.of(task, jobs)
    selection = _select(public, asked)
    heads = actions.review_heads(s, task_id)
    since_range: tuple[str, str] | None = None
    diff = Diff(files=[], additions=0, deletions=0)
    range_diff: RangeDiff | None = None
    # The reviewer's marks are kept for a subtask's newest version (what they approve).
    server_viewed = selection.view == "subtask" and selection.version is None
    viewed: set[str] = set()
    if server_viewed and selection.subtask is not None and public.subtasks:
        current = next((x for x in public.subtasks if x.position == selection.subtask), None)
        if current is not None and current.versions:
            viewed = reviewers.viewed_files(s, settings, task, reviewer, selection.subtask)
    standing: tuple[int, int, list[reviewers.Standing]] = (
        task.project.required_approvals,
        0,
        [],
    )
    # The branch's tip, resolved once (each resolve is a git process) for all that need it.
    tip = actions.branch_tip(settings, task)
    if task.branch and task.base_commit:
        standing = reviewers.standings(s, settings, task, reviewer, tip=tip)
    mine = next((x.state for x in standing[2] if x.you), None)
    if selection.view == "since":
        diff, old, new = _since(s, settings, task_id, selection, reviewer)
        since_range = (old, new)
    elif selection.view == "versions":
        assert selection.subtask and selection.old and selection.new
        range_diff = actions.version_interdiff(
            s, settings, task_id, selection.subtask, selection.old, selection.new
        )
    else:
        diff = _diff_of(s, settings, task_id, selection, reviewer, detail, tip)
    sizes = actions.commit_sizes(s, settings, task_id, tip=tip)
    return {
        "task": public,
        "project": task.project,
        "selection": selection,
        "diff": diff,
        "range_diff": range_diff,
        "since_range": since_range,
        "rounds": len(heads),
        "can_interdiff": len(heads) >= 2,
        "sizes": sizes,
        "viewed": viewed,
        "server_viewed": server_viewed,
        "needed": standing[0],
        "approvals": standing[1],
        "standings": standing[2],
        "reviewed_head": mine.reviewed_head if mine else None,
    }


def _visible_threads(
    threads: list[Thread], selection: Selection
) -> dict[tuple[str, str, int], list[Thread]]:
    """Threads made on what is on screen, by (path, side, last line) — where they show."""
    placed: dict[tuple[str, str, int], list[Thread]] = defaultdict(list)
    for t in threads:
        here = t.subtask == selection.subtask if selection.view == "subtask" else t.subtask is None
        if here:
            placed[(t.root.path, t.root.side, t.root.end_line or t.root.line)].append(t)
    return placed


def review_page(
    request: Request,
    db: Database,
    settings: Settings,
    task_id: int,
    asked: Asked | None = None,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    asked = asked or Asked()
    reviewer = get_reviewer(request)
    # A page parses the files it prints; the JSON answer is the whole diff.
    detail = None if wants_json(request) else diffview.PAGE_DETAIL
    context = in_session(db, lambda s: _load(s, settings, task_id, asked, reviewer, detail))
    selection: Selection = context["selection"]
    diff: Diff = context["diff"]
    if wants_json(request):
        found = context["range_diff"]
        return JSONResponse(found.to_dict() if found is not None else diff.to_dict())
    task: TaskPublic = context["task"]
    threads = _threads(task)
    files = diffview.build(diff, split=selection.split, highlight=diffview.HIGHLIGHT_BUDGET)
    placed = _visible_threads(threads, selection)
    shown = {key for f in files for key in _keys(f)}
    subtask_row = next((s for s in task.subtasks if s.position == selection.subtask), None)
    open_threads = [t for t in threads if not t.root.resolved]
    return page(
        request,
        "review.html",
        status=status,
        error=error,
        files=files,
        threads=threads,
        placed=placed,
        unplaced=[t for key, ts in placed.items() if key not in shown for t in ts],
        open_blocking=sum(1 for t in open_threads if t.root.kind == "blocking"),
        open_count=len(open_threads),
        current=subtask_row,
        diff_rev=_rev_of(selection, subtask_row, context),
        highlight_batches=";".join(
            ",".join(str(i) for i in batch) for batch in diffview.batches(files)
        ),
        **context,
    )


def _rev_of(selection: Selection, sub: SubtaskPublic | None, context: dict[str, Any]) -> str:
    """The commit whose files the new side shows (to expand unchanged lines from)."""
    version = selection.version if selection.view == "subtask" and sub is not None else None
    if sub is not None and version is not None and 1 <= version <= len(sub.versions):
        return sub.versions[version - 1].commit_sha
    if selection.view == "subtask" and sub is not None and sub.commit_sha:
        return sub.commit_sha
    if context["since_range"]:
        return str(context["since_range"][1])
    return "tip"


def _keys(view: diffview.FileView) -> set[tuple[str, str, int]]:
    keys: set[tuple[str, str, int]] = set()
    for row in view.rows:
        if row.old_no is not None:
            keys.add((view.file.path, "old", row.old_no))
        if row.new_no is not None:
            keys.add((view.file.path, "new", row.new_no))
    return keys


@router.get("/tasks/{task_id}/review", response_model=None, dependencies=[READ])
def show_review(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    asked: AskedDep,
) -> Response:
    return review_page(request, db, settings, task_id, asked)


@router.get("/tasks/{task_id}/review/file", response_model=None, dependencies=[READ])
def file_fragment(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    path: str,
    asked: AskedDep,
    reviewer: ReviewerDep,
    row: Annotated[Count, Query()] = 0,
) -> Response:
    """One file's rows, from its unified row ``row`` on: a large file when the reader opens
    it, a file after the page's first screens (or the rest of one cut there) as they near it.
    """
    detail = Detail(paths=frozenset({path}))
    context = in_session(db, lambda s: _load(s, settings, task_id, asked, reviewer, detail))
    selection: Selection = context["selection"]
    files = diffview.build(context["diff"], split=selection.split, only=path, start=row)
    found = next((f for f in files if f.file.path == path), None)
    if found is None:
        raise InvalidInput(f"{path} is not in this diff.")
    if found.file.is_binary:
        raise InvalidInput(f"{path} is a binary file: it is not shown.")
    threads = _threads(context["task"])
    return page(
        request,
        "_diff_table.html",
        f=found,
        placed=_visible_threads(threads, selection),
        **context,
        diff_rev=_rev_of(selection, None, context),
        current=next(
            (s for s in context["task"].subtasks if s.position == selection.subtask), None
        ),
    )


@router.get("/tasks/{task_id}/review/highlight", dependencies=[READ])
def highlight_files(
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    file: Annotated[list[Count], Query()],
    asked: AskedDep,
    reviewer: ReviewerDep,
) -> dict[str, Any]:
    """The highlighted lines of files the page printed uncoloured (past its highlighting
    budget), by their index in the diff: the page swaps them in where it shows them."""

    def work(s: Session) -> Diff:
        task, jobs = actions.task_with_jobs(s, task_id)
        selection = _select(TaskPublic.of(task, jobs), asked)
        detail = Detail(indexes=frozenset(file))
        return _diff_of(s, settings, task_id, selection, reviewer, detail)

    diff = in_session(db, work)
    out = []
    for index in file:
        if not 0 <= index < len(diff.files):
            raise NotFound(f"This diff has no file {index} (it has {len(diff.files)}).")
        found = diff.files[index]
        out.append({"index": index, "path": found.path, "lines": diffview.highlighted_lines(found)})
    return {"files": out}


@router.get("/tasks/{task_id}/review/lines", dependencies=[READ])
def context_lines(
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    path: str,
    rev: str,
    start: Annotated[Id, Query()],
    end: Annotated[Id | None, Query()] = None,
) -> dict[str, Any]:
    """Unchanged lines between hunks, highlighted, for the "expand" rows."""
    text = in_session(db, lambda s: actions.file_at(s, settings, task_id, path, rev))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    html = diffview.highlight_lines(path, lines)
    stop = len(lines) if end is None else min(end, len(lines))
    return {"start": start, "lines": [str(h) for h in html[start - 1 : stop]]}


FILE_LINES_SHOWN = 20_000  # a longer file would make a page too heavy to be of use


@router.get("/tasks/{task_id}/file", response_model=None, dependencies=[READ])
def show_file(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    path: str,
    rev: str = "base",
) -> Response:
    """A file of the repository as the task sees it (research links here)."""

    def work(s: Session) -> tuple[TaskPublic, str]:
        task, jobs = actions.task_with_jobs(s, task_id)
        return TaskPublic.of(task, jobs), actions.file_at(s, settings, task_id, path, rev)

    task, text = in_session(db, work)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # A NUL byte is git's own sign of a binary file.
    if "\0" in text:
        unshown = f"{path} is a binary file: it cannot be shown as text."
    elif len(lines) > FILE_LINES_SHOWN:
        unshown = f"{path} has {len(lines):,} lines: too many to show here."
    else:
        unshown = ""
    return page(
        request,
        "file.html",
        task=task,
        path=path,
        rev=rev,
        lines=[] if unshown else diffview.highlight_lines(path, lines),
        unshown=unshown,
    )


# -- forms ------------------------------------------------------------------------------


def _back(task_id: int, back: str) -> str:
    # Only back to this task's review: a form field must not redirect anywhere else.
    prefix = f"/tasks/{task_id}/review"
    return back if back.startswith(prefix) and "//" not in back else prefix


def _number(text: str | None) -> int | None:
    if text and text.isascii() and text.isdigit() and len(text) < 10:
        return int(text) or None
    return None


def _review_form(
    request: Request,
    db: Database,
    settings: Settings,
    task_id: int,
    back: str,
    work: Any,
    *,
    anchor: str = "",
) -> Response:
    target = _back(task_id, back)
    try:
        result = in_session(db, work)
    except ErrandsError as exc:
        params = dict(request.query_params)
        query = dict(p.split("=", 1) for p in target.partition("?")[2].split("&") if "=" in p)
        params.update(query)
        layout = params.get("layout", "unified")
        asked = Asked(
            view=params.get("view", "subtask"),
            # A back link's own numbers: shown again if they are sane, else the defaults.
            subtask=_number(params.get("subtask")),
            version=_number(params.get("version")),
            old=_number(params.get("old")),
            new=_number(params.get("new")),
            round=_number(params.get("round")),
            layout="split" if layout == "split" else "unified",
        )
        return review_page(
            request, db, settings, task_id, asked, error=exc.message, status=exc.status
        )
    suffix = anchor.format(result=result) if anchor else ""
    return RedirectResponse(target + suffix, status_code=303)


@router.post("/tasks/{task_id}/review/comments", response_model=None, dependencies=[ACT])
def add_comment(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    path: Annotated[str, Form()] = "",
    line: Annotated[str, Form()] = "",
    end_line: Annotated[str, Form()] = "",
    side: Annotated[str, Form()] = "new",
    kind: Annotated[str, Form()] = "blocking",
    body: Annotated[str, Form()] = "",
    suggestion: Annotated[str, Form()] = "",
    subtask: Annotated[str, Form()] = "",
    parent_id: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    def work(s: Session) -> int:
        number = optional_int(line, "The line")
        parent = optional_int(parent_id, "The thread")
        if number is None and parent is None:
            raise InvalidInput("Pick a line to comment on.")
        last = optional_int(end_line, "The last line")
        text = body.strip()
        if kind == "suggestion" and suggestion.strip("\n"):
            code = suggestion.rstrip("\n")
            text = (
                f"{text}\n\n```suggestion\n{code}\n```" if text else f"```suggestion\n{code}\n```"
            )
        comment = actions.add_comment(
            s,
            settings,
            task_id,
            path=path,
            line=number or 1,
            body=text,
            kind=kind,
            side=side,
            end_line=last if last and number and last > number else None,
            subtask=optional_int(subtask, "The subtask"),
            parent_id=parent,
            author_id=principal_of(request).user_id,
        )
        return comment.id

    return _review_form(request, db, settings, task_id, back, work, anchor="#c{result}")


@router.post(
    "/tasks/{task_id}/review/comments/{comment_id}/resolve",
    response_model=None,
    dependencies=[ACT_ON_COMMENT],
)
def resolve(
    request: Request,
    task_id: Id,
    comment_id: Id,
    db: DbDep,
    settings: SettingsDep,
    resolved: Annotated[str, Form()] = "1",
    back: Annotated[str, Form()] = "",
) -> Response:
    return _review_form(
        request,
        db,
        settings,
        task_id,
        back,
        lambda s: (
            actions.resolve_comment(s, task_id, comment_id, resolved != "0", settings=settings).id
        ),
        anchor="#c{result}",
    )


@router.post(
    "/tasks/{task_id}/review/comments/{comment_id}/apply",
    response_model=None,
    dependencies=[ACT_ON_COMMENT],
)
def apply(
    request: Request,
    task_id: Id,
    comment_id: Id,
    db: DbDep,
    settings: SettingsDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    return _review_form(
        request,
        db,
        settings,
        task_id,
        f"/tasks/{task_id}/review?view=all",
        lambda s: actions.apply_suggestion(s, settings, task_id, comment_id).position,
    )


@router.post("/tasks/{task_id}/review/request-changes", response_model=None, dependencies=[ACT])
def request_changes(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    return _verdict(request, db, settings, task_id, back, "request-changes")


@router.post("/tasks/{task_id}/review/approve", response_model=None, dependencies=[ACT])
def approve(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    return _verdict(request, db, settings, task_id, back, "approve")


def _verdict(
    request: Request, db: Database, settings: Settings, task_id: int, back: str, verdict: str
) -> Response:
    reviewer = get_reviewer(request)
    queued: list[bool] = []

    def work(s: Session) -> object:
        if verdict == "approve":
            task = actions.approve(s, settings, task_id, reviewer)
            queued.append(ledger.active_job(s, task.id) is not None)
            return task
        queued.append(True)
        return actions.request_changes(s, settings, task_id, reviewer)

    response = _review_form(request, db, settings, task_id, back, work)
    if isinstance(response, RedirectResponse) and queued == [True]:
        # The work now happens in a job: follow it live on the task page.
        return RedirectResponse(f"/tasks/{task_id}#plan", status_code=303)
    return response
