"""The ``github`` job of a project: bring GitHub's news in, and Errands' news out.

In: import the open issues once (with their comments), then every pending webhook delivery
of the project, oldest first, each applied and marked done in one transaction, so a crash
re-applies nothing twice; one that fails is recorded and retried by a later run (a bounded
number of times), and the ones after it go on. Out: the research questions of issue tasks onto
their issue, a pull request for every task in review, and review comments made in Errands onto
the pull request. Everything out is found again before it is created (a marker or the head
branch), so a retried job never posts twice; the ledger runs one github job per project at a
time, so no other job is between that lookup and the post.

Permission checks (a network call) happen before the transaction that applies a delivery:
SQLite has one writer, and it must not wait on GitHub.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from errands.domain import TaskState, state_words
from errands.errors import Cancelled, ErrandsError, LeaseLost
from errands.faults import crash_point
from errands.github import issues as text
from errands.github import manage, payloads, reviewsync, stacks
from errands.github.errors import GitHubError, MalformedWebhook
from errands.github.forge import RepoAccess, repo_access
from errands.github.intake import request_sync
from errands.github.markers import find_marker, with_marker
from errands.github.pulls import pull_body, pull_title
from errands.github.rest import RepoAPI
from errands.github.sanitize import sanitize
from errands.store import (
    GitHubDelivery,
    GitHubOutbox,
    Project,
    Question,
    ReviewComment,
    ReviewerState,
    Subtask,
    Task,
)
from errands.store import events as event_log
from errands.store.models import utcnow
from errands.workflow import actions, progress
from errands.workflow.context import JobContext
from errands.workflow.reviewers import Reviewer

log = logging.getLogger(__name__)

# States in which the issue still is the task's specification (nothing executed yet).
NOT_STARTED = frozenset(
    {TaskState.CREATED, TaskState.RESEARCHING, TaskState.AWAITING_ANSWERS, TaskState.READY}
)
CANCELLABLE = NOT_STARTED | {TaskState.FAILED}
# States in which a moved base matters: the task has (or is about to have) a base commit.
BASED = frozenset(
    {
        TaskState.AWAITING_ANSWERS,
        TaskState.READY,
        TaskState.EXECUTING,
        TaskState.IN_REVIEW,
        TaskState.REVISING,
    }
)
LIVE = BASED | {TaskState.CREATED, TaskState.RESEARCHING}
# A review comment GitHub would not take (e.g. its line is not in the diff): not retried.
NOT_SYNCED = reviewsync.NOT_SYNCED
# GitHub's longest comment; anything longer from a webhook is cut to it.
MAX_COMMENT = reviewsync.MAX_COMMENT


# A delivery whose handling crashes (a bug, or GitHub failing mid-way) is tried again by later
# runs of the job, at most this many times in all; then it is marked failed. Either way the
# deliveries after it go on.
MAX_DELIVERY_ATTEMPTS = 3


class DeliveriesToRetry(ErrandsError):
    """Some deliveries failed this run and have attempts left: the ledger runs the job again
    later (with back-off), after everything else in this run was done."""

    code = "github_delivery_retry"
    retryable = True


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        project = session.get_one(Project, ctx.lease.project_id)
        full_name, installation = project.github_repo, project.github_installation_id
        import_needed = project.github_imported_at is None
    if full_name is None:
        return
    with repo_access(ctx.settings, full_name, installation) as access:
        sync = Sync(ctx, access)
        if import_needed:
            sync.import_open_issues()
        retry = sync.process_deliveries()
        sync.post_questions()
        sync.post_status()
        sync.open_pull_requests()
        sync.publish_stacks()
        sync.describe_pull_requests()
        sync.post_review_comments()
        sync.push_comment_edits()
        sync.push_deletions()
        sync.push_resolutions()
        sync.post_verdicts()
    if retry and ctx.lease.last_attempt:
        # This job is out of attempts; a fresh one takes the deliveries left over (each has
        # a bounded number of attempts of its own, so this ends).
        with ctx.db.session() as session:
            request_sync(session, ctx.settings, ctx.lease.project_id)
    elif retry:
        raise DeliveriesToRetry(f"{retry} GitHub delivery(ies) failed and will be tried again")


@dataclass(frozen=True)
class Context:
    """What a delivery handler needs: the transaction, the delivery and its sender's rights,
    and for an edited issue, its writers' comments (fetched before the transaction)."""

    session: Session
    project: Project
    can_write: bool
    comments: list[tuple[str, str]] = field(default_factory=list)


class Sync:
    def __init__(self, ctx: JobContext, access: RepoAccess) -> None:
        self.ctx = ctx
        self.api: RepoAPI = access.api
        self.project_id = ctx.lease.project_id

    # -- helpers --------------------------------------------------------------------------

    def _note(
        self,
        session: Session,
        task: Task | None,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        event_log.record(
            session,
            kind,
            self.ctx.redact(message),
            task_id=task.id if task else None,
            project_id=self.project_id,
            job_id=self.ctx.lease.job_id,
            data=data,
        )

    def _task_for_issue(self, session: Session, number: int) -> Task | None:
        return session.scalars(
            select(Task).where(Task.project_id == self.project_id, Task.github_issue == number)
        ).first()

    def _task_for_pull(self, session: Session, number: int, head: str | None) -> Task | None:
        found = session.scalars(
            select(Task).where(Task.project_id == self.project_id, Task.github_pr == number)
        ).first()
        if found is None and head and head.startswith("errands/"):
            found = session.scalars(
                select(Task).where(Task.project_id == self.project_id, Task.branch == head)
            ).first()
        return found

    def _import(
        self,
        session: Session,
        project: Project,
        issue: payloads.Issue,
        comments: list[tuple[str, str]],
    ) -> Task:
        task = manage.issue_task(session, project, issue, comments)
        self._note(
            session,
            task,
            "task.created",
            f"Task {task.id} imported from GitHub issue #{issue.number}: {task.title}",
        )
        return task

    def _start(self, session: Session, task: Task, why: str) -> None:
        if task.state != TaskState.CREATED:
            ignored = f"{why}; task is {state_words(task.state)}"
            self._note(session, task, "github.trigger_ignored", ignored)
            return
        actions.start_research(session, self.ctx.settings, task.id)
        self._note(session, task, "github.triggered", why)

    def _writers_comments(self, number: int) -> list[tuple[str, str]]:
        return manage.writers_comments(self.api, number)

    # -- import ---------------------------------------------------------------------------

    def import_open_issues(self) -> None:
        """Every open issue (with its writers' comments) becomes a task, once."""
        imported = 0
        for raw in self.api.open_issues():
            issue = payloads.Issue.model_validate(raw, strict=False)
            with self.ctx.db.session() as session:
                if self._task_for_issue(session, issue.number) is not None:
                    continue
            comments = self._writers_comments(issue.number)
            with self.ctx.db.session() as session:
                project = session.get_one(Project, self.project_id)
                if self._task_for_issue(session, issue.number) is not None:
                    continue
                self._import(session, project, issue, comments)
                imported += 1
            if self.ctx.settings.github_trigger_label in {label.name for label in issue.labels}:
                # The label was set by someone with triage rights or more; it still takes
                # write access to start work.
                self._maybe_start_labeled(issue)
        with self.ctx.db.session() as session:
            session.get_one(Project, self.project_id).github_imported_at = utcnow()
            self._note(session, None, "github.imported", f"Imported {imported} open issue(s)")

    def _maybe_start_labeled(self, issue: payloads.Issue) -> None:
        if issue.user is None or not self.api.can_write(issue.user.login):
            return
        with self.ctx.db.session() as session:
            task = self._task_for_issue(session, issue.number)
            if task is not None:
                self._start(session, task, f"issue #{issue.number} carries the trigger label")

    # -- deliveries -----------------------------------------------------------------------

    def process_deliveries(self) -> int:
        """Apply the project's pending deliveries, oldest first, each at most once per run;
        return how many failed and are left for a later run."""
        tried: set[str] = set()
        left = 0
        while True:
            with self.ctx.db.session() as session:
                delivery = session.scalars(
                    select(GitHubDelivery)
                    .where(
                        GitHubDelivery.project_id == self.project_id,
                        GitHubDelivery.state == "pending",
                        GitHubDelivery.id.not_in(tried),
                    )
                    .order_by(GitHubDelivery.received_at, GitHubDelivery.id)
                ).first()
                if delivery is None:
                    return left
                delivery_id, kind = delivery.id, delivery.event
                payload = dict(delivery.payload or {})
            tried.add(delivery_id)
            self.ctx.check_cancelled()
            try:
                self._process(delivery_id, kind, payload)
            except (Cancelled, LeaseLost):
                raise
            except ErrandsError as exc:
                if exc.retryable:
                    raise  # GitHub asks us to wait: the whole job waits, nothing is lost
                if isinstance(exc, GitHubError):
                    left += self._failed(delivery_id, kind, exc.message, final=False)
                else:
                    # The delivery asked for something the task's state refuses (approve
                    # with blocking comments, cancel during a merge): record why, move on.
                    self._failed(delivery_id, kind, exc.message, final=True)
            except Exception as exc:
                log.exception("github delivery %s (%s) failed", delivery_id, kind)
                left += self._failed(delivery_id, kind, f"{type(exc).__name__}: {exc}", final=False)

    def _process(self, delivery_id: str, kind: str, payload: dict[str, Any]) -> None:
        try:
            event = payloads.REPO_EVENTS[kind].model_validate(payload)
        except (KeyError, ValidationError) as exc:
            # Stored before intake checked payloads, or by a version that read other fields.
            detail = payloads.explain(exc) if isinstance(exc, ValidationError) else "unknown"
            raise MalformedWebhook(f"The stored {kind} payload does not fit: {detail}") from exc
        can_write = self._sender_can_write(event)
        comments = (
            self._writers_comments(event.issue.number)
            if isinstance(event, payloads.IssuesEvent) and event.action == "edited"
            else []
        )
        with self.ctx.db.session() as session:
            claimed = session.execute(
                update(GitHubDelivery)
                .where(GitHubDelivery.id == delivery_id, GitHubDelivery.state == "pending")
                .values(state="done", processed_at=utcnow(), payload=None)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return  # another github job of this project took it
            project = session.get_one(Project, self.project_id)
            outcome = self._apply(event, Context(session, project, can_write, comments))
            session.get_one(GitHubDelivery, delivery_id).outcome = outcome

    def _failed(self, delivery_id: str, kind: str, error: str, *, final: bool) -> int:
        """Count a failed attempt at a delivery and say why in the project's events; mark it
        failed (and drop its payload) when ``final`` or out of attempts. 1 if it is left for
        a later run, else 0."""
        with self.ctx.db.session() as session:
            row = session.get(GitHubDelivery, delivery_id)
            if row is None or row.state != "pending":
                return 0
            row.attempts += 1
            row.outcome = error[:2000]
            if final or row.attempts >= MAX_DELIVERY_ATTEMPTS:
                row.state, row.processed_at, row.payload = "failed", utcnow(), None
                self._note(
                    session,
                    None,
                    "github.delivery_failed",
                    f"{kind} delivery {delivery_id} failed after {row.attempts} attempt(s), "
                    f"given up: {error}",
                )
                return 0
            self._note(
                session,
                None,
                "github.delivery_failed",
                f"{kind} delivery {delivery_id} failed (attempt {row.attempts} of "
                f"{MAX_DELIVERY_ATTEMPTS}), will be tried again: {error}",
            )
            return 1

    def _sender_can_write(self, event: payloads.Event) -> bool:
        if isinstance(event, payloads.IssuesEvent):
            return self.api.can_write(event.sender.login)
        if isinstance(event, payloads.IssueCommentEvent):
            return self.api.can_write(event.comment.user.login)
        if isinstance(event, payloads.PullRequestReviewCommentEvent):
            # A new comment counts by its author; an edit by whoever made it (a deletion
            # counts whoever made it: it is gone from GitHub either way).
            if event.action == "deleted":
                return False
            editor = event.sender if event.action == "edited" and event.sender else None
            return self.api.can_write((editor or event.comment.user).login)
        if isinstance(event, payloads.PullRequestReviewEvent):
            acting = event.sender if event.action == "dismissed" and event.sender else None
            return self.api.can_write((acting or event.review.user).login)
        if isinstance(event, payloads.PullRequestReviewThreadEvent):
            return event.sender is not None and self.api.can_write(event.sender.login)
        return False  # push and pull_request: acted on whoever sent them

    def _apply(self, event: payloads.Event, c: Context) -> str:
        if isinstance(event, payloads.IssuesEvent):
            return self._issue_event(event, c)
        if isinstance(event, payloads.IssueCommentEvent):
            return self._issue_comment(event, c)
        if isinstance(event, payloads.PullRequestEvent):
            return self._pull_closed(event, c)
        if isinstance(event, payloads.PullRequestReviewEvent):
            return self._review(event, c)
        if isinstance(event, payloads.PullRequestReviewCommentEvent):
            return self._review_comment(event, c)
        if isinstance(event, payloads.PullRequestReviewThreadEvent):
            return self._review_thread(event, c)
        return self._push(event, c)

    def _noter(self, session: Session) -> reviewsync.Note:
        return lambda task, kind, message: self._note(session, task, kind, message)

    def _review_thread(self, event: payloads.PullRequestReviewThreadEvent, c: Context) -> str:
        pull = event.pull_request
        task = self._task_for_pull(c.session, pull.number, pull.head.ref)
        if task is None:
            return "no task for the pull request"
        return reviewsync.thread_resolution(
            c.session, task, event, c.can_write, self._noter(c.session)
        )

    def _issue_event(self, event: payloads.IssuesEvent, c: Context) -> str:
        issue, action = event.issue, event.action
        number = issue.number
        task = self._task_for_issue(c.session, number)
        if action in ("opened", "labeled") and task is None and issue.state != "closed":
            task = self._import(c.session, c.project, issue, [])
        if task is None:
            return f"issue #{number}: no task"
        trigger = self.ctx.settings.github_trigger_label
        if action == "opened":
            if trigger in {label.name for label in issue.labels} and c.can_write:
                self._start(c.session, task, f"issue #{number} opened with the trigger label")
            return f"issue #{number} imported as task {task.id}"
        if action == "labeled":
            if event.label is None or event.label.name != trigger:
                return "another label"
            if not c.can_write:
                self._note(
                    c.session,
                    task,
                    "github.trigger_ignored",
                    f"@{event.sender.login} labelled #{number} but has no write access",
                )
                return "labeller lacks write access"
            self._start(c.session, task, f"issue #{number} labelled {trigger!r}")
            return f"task {task.id} triggered"
        if action == "edited":
            # Before work starts the text is only a draft anyone may refine; after that,
            # only people with write access steer the task.
            if task.state not in NOT_STARTED or not (c.can_write or task.state == "created"):
                self._note(
                    c.session, task, "github.edit_ignored", f"Issue #{number} edited; not applied"
                )
                return "edit not applied"
            task.title = text.issue_title(issue)
            # The writers' comments stay in the body, as when the issue was imported.
            task.body = text.issue_body(issue, c.comments)
            self._note(c.session, task, "github.issue_edited", f"Issue #{number} edited")
            return "task updated"
        if action == "closed":
            if TaskState(task.state) in CANCELLABLE:
                actions.cancel(c.session, task.id)
                self._note(c.session, task, "github.issue_closed", f"Issue #{number} closed")
                return f"task {task.id} cancelled"
            self._note(
                c.session,
                task,
                "github.issue_closed",
                f"Issue #{number} closed; the task is {state_words(task.state)} and carries on",
            )
            return "task already past research"
        return f"issues.{action} not handled"

    def _issue_comment(self, event: payloads.IssueCommentEvent, c: Context) -> str:
        issue, comment = event.issue, event.comment
        number, login, raw = issue.number, comment.user.login, comment.body
        if find_marker(raw) is not None:
            return "our own comment"
        if issue.pull_request is not None:
            task = self._task_for_pull(c.session, number, None)
            if task is not None and c.can_write:
                self._note(
                    c.session, task, "github.pr_comment", text.comment_block(login, raw)[:2000]
                )
            return "pull request conversation noted"
        task = self._task_for_issue(c.session, number)
        if not c.can_write:
            if task is not None:
                self._note(
                    c.session,
                    task,
                    "github.comment_ignored",
                    f"Comment by @{login} on #{number} ignored: no write access",
                )
            return "commenter lacks write access"
        if text.is_command(raw):
            if task is None:
                task = self._import(c.session, c.project, issue, [])
            self._start(c.session, task, f"/errands from @{login} on #{number}")
            return f"task {task.id} triggered"
        if task is None:
            return "no task for the issue"
        if task.state == TaskState.AWAITING_ANSWERS:
            options = {q.position: len(q.options) for q in task.questions if not q.answered}
            found = text.parse_answers(raw, options)
            for answer in found:
                actions.answer(
                    c.session,
                    self.ctx.settings,
                    task.id,
                    answer.question,
                    option=answer.option,
                    text=answer.text,
                )
            if found:
                return f"{len(found)} answer(s) taken"
        if TaskState(task.state) in NOT_STARTED:
            block = text.comment_block(login, raw)
            if block in task.body:
                return "comment already in the task"  # an edit fetched it first
            task.body = (task.body + "\n\n" + block)[: text.MAX_BODY]
            self._note(c.session, task, "github.comment", f"Comment by @{login} added to the task")
            return "comment added to the task"
        self._note(c.session, task, "github.comment", text.comment_block(login, raw)[:2000])
        return "comment noted"

    def _pull_closed(self, event: payloads.PullRequestEvent, c: Context) -> str:
        pull = event.pull_request
        number = pull.number
        task = self._task_for_pull(c.session, number, pull.head.ref)
        if task is None:
            return f"pull request #{number}: no task"
        state = TaskState(task.state)
        if pull.merged:
            if state is TaskState.MERGED:
                return "already merged"  # our own merge, coming back
            task.merge_commit = pull.merge_commit_sha
            if state is TaskState.IN_REVIEW:
                task.state = TaskState.MERGED
                self._note(
                    c.session, task, "task.merged", f"Pull request #{number} merged on GitHub"
                )
                self._note_state(c.session, task, TaskState.MERGED)
                return f"task {task.id} merged"
        if state in (TaskState.MERGED, TaskState.CANCELLED):
            return f"task already {state}"
        actions.cancel(c.session, task.id)
        why = "merged" if pull.merged else "closed without merging"
        self._note(c.session, task, "github.pr_closed", f"Pull request #{number} {why} on GitHub")
        return f"task {task.id} cancelled"

    def _note_state(self, session: Session, task: Task, state: TaskState) -> None:
        event_log.record(
            session,
            "task.state",
            f"Task is {state_words(state)}",
            task_id=task.id,
            project_id=self.project_id,
            job_id=self.ctx.lease.job_id,
            data={"state": state},
        )

    def _review(self, event: payloads.PullRequestReviewEvent, c: Context) -> str:
        review, pull = event.review, event.pull_request
        task = self._task_for_pull(c.session, pull.number, pull.head.ref)
        if task is None:
            return "no task for the pull request"
        login, verdict = review.user.login, review.state.lower()
        if event.action in ("edited", "dismissed"):
            return reviewsync.review_changed(
                c.session, task, event, c.can_write, self._noter(c.session)
            )
        if find_marker(review.body) is not None:
            return "our own review"
        if not c.can_write:
            self._note(c.session, task, "github.review_ignored", f"@{login} lacks write access")
            return "reviewer lacks write access"
        self._note(c.session, task, "github.review", f"@{login} reviewed on GitHub: {verdict}")
        who = Reviewer(f"github:{login}"[:64], f"@{login} (GitHub)")
        if verdict == "approved" and task.state == TaskState.IN_REVIEW:
            actions.approve(c.session, self.ctx.settings, task.id, who)
            return "approved"
        if verdict == "changes_requested" and task.state == TaskState.IN_REVIEW:
            actions.request_changes(c.session, self.ctx.settings, task.id, who)
            return "changes requested: revise queued"
        return f"review {verdict} noted"

    def _review_comment(self, event: payloads.PullRequestReviewCommentEvent, c: Context) -> str:
        comment, pull = event.comment, event.pull_request
        task = self._task_for_pull(c.session, pull.number, pull.head.ref)
        if task is None:
            return "no task for the pull request"
        if event.action == "edited":
            return reviewsync.comment_edited(
                c.session, task, event, c.can_write, self._noter(c.session)
            )
        if event.action == "deleted":
            return reviewsync.comment_deleted(c.session, task, event, self._noter(c.session))
        # Lookups stay within the task: a delivery about another repository (another
        # organization's) never reaches this project's comments.
        if (
            find_marker(comment.body) is not None
            or c.session.scalars(
                select(ReviewComment.id).where(
                    ReviewComment.task_id == task.id, ReviewComment.github_id == comment.id
                )
            ).first()
        ):
            return "our own comment"
        login = comment.user.login
        if not c.can_write:
            self._note(c.session, task, "github.comment_ignored", f"@{login} lacks write access")
            return "commenter lacks write access"
        if TaskState(task.state) not in LIVE:
            return f"task is {task.state}"
        parent = None
        if comment.in_reply_to_id:
            parent = c.session.scalars(
                select(ReviewComment).where(
                    ReviewComment.task_id == task.id,
                    ReviewComment.github_id == comment.in_reply_to_id,
                )
            ).first()
        line = comment.line or comment.original_line or 1
        start = comment.start_line
        subtask = next(
            (s for s in task.subtasks if s.commit_sha and s.commit_sha == comment.commit_id),
            None,
        )
        row = ReviewComment(
            task_id=task.id,
            subtask_id=subtask.id if subtask else None,
            parent_id=parent.id if parent else None,
            path=comment.path,
            line=start if start else line,
            end_line=line if start else None,
            side="old" if comment.side == "LEFT" else "new",
            body=sanitize(comment.body)[:MAX_COMMENT] or "(empty)",
            kind="blocking",
            commit_sha=comment.commit_id,
            github_id=comment.id,
            github_author=login,
            github_digest=reviewsync.digest(comment.body),
            github_resolved=False,
        )
        c.session.add(row)
        c.session.flush()
        self._note(
            c.session,
            task,
            "review.comment",
            f"blocking comment from @{login} on GitHub, {row.path}:{row.line}: {row.body[:120]}",
            {"comment_id": row.id, "parent_id": row.parent_id, "github_author": login},
        )
        return f"comment {row.id} added"

    def _push(self, event: payloads.PushEvent, c: Context) -> str:
        ref, after = event.ref, event.after
        if ref != f"refs/heads/{c.project.base_branch}" or event.deleted:
            return "not the base branch"
        moved = 0
        for task in c.session.scalars(select(Task).where(Task.project_id == self.project_id)):
            if TaskState(task.state) in BASED and task.base_commit and task.base_commit != after:
                moved += 1
                self._base_moved(c, task, after)
        return f"{moved} task(s) need a rebase"

    def _base_moved(self, c: Context, task: Task, after: str) -> None:
        """The task's base moved on GitHub: flagged, and restacked onto it (at once when in
        review, else when its running job brings it to review)."""
        queued = actions.base_moved(c.session, self.ctx.settings, task, after)
        self._note(
            c.session,
            task,
            "github.base_moved",
            f"{c.project.base_branch} moved to {after[:10]} on GitHub (the task is based on "
            f"{str(task.base_commit)[:10]}): "
            + ("rebasing onto it" if queued else "it is rebased once back in review"),
        )

    # -- out ------------------------------------------------------------------------------

    def _task_ids(self, *where: ColumnElement[bool]) -> list[int]:
        """This project's tasks matching ``where``, by id (each is then handled in a
        transaction of its own)."""
        with self.ctx.db.session() as session:
            query = select(Task.id).where(Task.project_id == self.project_id, *where)
            return list(session.scalars(query))

    def post_questions(self) -> None:
        """Each round of questions onto the issue, once: a round is known by its newest
        question (a retried research asks anew, with new questions; so does an agent that
        stops to ask while it works), and found again by that marker if an attempt died
        between posting and recording it."""
        waiting = self._task_ids(
            Task.github_issue.is_not(None), Task.state == TaskState.AWAITING_ANSWERS
        )
        for task_id in waiting:
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                asked: list[Question] = [q for q in task.questions if not q.answered]
                if not asked:
                    continue
                round_id = max(q.id for q in asked)
                if task.github_questions_round == round_id:
                    continue  # this round is on the issue already
                issue = int(task.github_issue or 0)
                again = task.github_questions_round is not None
                body = with_marker(
                    text.questions_comment(asked, again=again), "questions", round_id
                )
            # An earlier attempt may have posted it and died before recording it: the marker
            # finds that comment. (Only one sync of a project runs at a time, so no other job
            # is between this lookup and the post.)
            existing = next(
                (
                    c
                    for c in self.api.issue_comments(issue)
                    if find_marker(c.get("body")) == ("questions", round_id)
                ),
                None,
            )
            if existing is None:
                self.ctx.check_cancelled()  # a job that lost its lease posts nothing more
                existing = self.api.comment_on_issue(issue, body)
                crash_point("github.questions_posted")  # posted, not recorded
            posted = existing
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                task.github_questions_comment = int(posted["id"])
                task.github_questions_round = round_id
                self._note(
                    session,
                    task,
                    "github.questions_posted",
                    f"{'New q' if again else 'Q'}uestions posted on #{issue}",
                )

    def post_status(self) -> None:
        """Edit the task's progress notes into its one status comment on the issue (made
        the first time, found again by its marker if an attempt died before recording it)."""
        with self.ctx.db.session() as session:
            candidates = [
                (t.id, t.github_issue, t.github_status_comment, t.github_status_digest)
                for t in session.scalars(
                    select(Task)
                    .join(Subtask, Subtask.task_id == Task.id)
                    .where(
                        Task.project_id == self.project_id,
                        Task.github_issue.is_not(None),
                        Subtask.progress.is_not(None),
                    )
                    .distinct()
                )
            ]
        for task_id, issue, recorded, digest in candidates:
            with self.ctx.db.session() as session:
                body = with_marker(
                    progress.status_comment(session.get_one(Task, task_id)), "status", task_id
                )
            wanted = hashlib.sha256(body.encode()).hexdigest()
            if wanted == digest:
                continue
            comment_id = recorded
            if comment_id is None:
                comment_id = next(
                    (
                        int(c["id"])
                        for c in self.api.issue_comments(int(issue or 0))
                        if find_marker(c.get("body")) == ("status", task_id)
                    ),
                    None,
                )
            self.ctx.check_cancelled()  # a job that lost its lease posts nothing more
            if comment_id is None:
                comment_id = int(self.api.comment_on_issue(int(issue or 0), body)["id"])
                crash_point("github.status_posted")  # posted, not recorded
            else:
                self.api.edit_issue_comment(comment_id, body)
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                task.github_status_comment, task.github_status_digest = comment_id, wanted
                self._note(session, task, "github.status_updated", f"Progress noted on #{issue}")

    def open_pull_requests(self) -> None:
        waiting = self._task_ids(
            Task.github_pr.is_(None),
            Task.branch.is_not(None),
            Task.state == TaskState.IN_REVIEW,
            ~Task.project.has(Project.stacked_pulls.is_(True)),  # see publish_stacks
        )
        for task_id in waiting:
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                branch, base = str(task.branch), task.base_branch
                title, body = pull_title(task), pull_body(task)
            if not branch.startswith("errands/"):
                continue  # never open a pull request from a branch that is not ours
            # An earlier attempt may have opened it before the job died: find it first.
            pull = self.api.pull_for_branch(branch)
            if pull is None or pull.get("state") != "open":
                self.ctx.check_cancelled()  # a job that lost its lease opens nothing more
                pull = self._create_pull(title=title, body=body, head=branch, base=base)
                crash_point("github.pull_opened")  # opened, not recorded
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                task.github_pr, task.github_pr_url = int(pull["number"]), pull.get("html_url")
                self._note(
                    session,
                    task,
                    "github.pr_opened",
                    f"Pull request #{pull['number']} for {branch}: {pull.get('html_url')}",
                )

    def publish_stacks(self) -> None:
        """Tasks of a project with stacked pull requests: one per subtask, linked as a GitHub
        stack (errands.github.stacks)."""
        waiting = self._task_ids(
            Task.branch.is_not(None),
            Task.state == TaskState.IN_REVIEW,
            Task.project.has(Project.stacked_pulls.is_(True)),
        )
        mirror = None
        for task_id in waiting:
            mirror = stacks.publish(self.ctx, self.api, mirror, task_id)

    def describe_pull_requests(self) -> None:
        """After a review round rewrote the stack, write the pull request's description again
        from it. Only then: the description names the top subtask's commit, and one that
        already names the current one (a person's edit since included) is left alone."""
        waiting = self._task_ids(Task.github_pr.is_not(None), Task.state == TaskState.IN_REVIEW)
        for task_id in waiting:
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                number, body = int(task.github_pr or 0), pull_body(task)
                top = next((s.commit_sha for s in reversed(task.subtasks) if s.commit_sha), None)
            if top is None:
                continue
            pull = self.api.pull(number)
            if pull.get("state") != "open" or f"`{top[:10]}`" in str(pull.get("body") or ""):
                continue
            self.ctx.check_cancelled()  # a job that lost its lease edits nothing more
            self.api.update_pull(number, body=body)
            with self.ctx.db.session() as session:
                self._note(
                    session,
                    session.get_one(Task, task_id),
                    "github.pr_described",
                    f"Pull request #{number}'s description rewritten from the stack",
                )

    def _create_pull(self, *, title: str, body: str, head: str, base: str) -> dict[str, Any]:
        try:
            return self.api.create_pull(title=title, body=body, head=head, base=base)
        except GitHubError as exc:
            # GitHub keeps one open pull request per head and base: if one appeared since
            # the lookup, it is ours (the branch is), so take it rather than fail.
            if exc.http_status != 422:
                raise
            found = self.api.pull_for_branch(head)
            if found is None or found.get("state") != "open":
                raise
            return found

    def post_review_comments(self) -> None:
        with self.ctx.db.session() as session:
            pending = [
                (c.id, c.task_id)
                for c in session.scalars(
                    select(ReviewComment)
                    .join(Task, Task.id == ReviewComment.task_id)
                    .where(
                        Task.project_id == self.project_id,
                        Task.github_pr.is_not(None),
                        ReviewComment.github_id.is_(None),
                    )
                    .order_by(ReviewComment.id)
                )
            ]
        on_github: dict[int, dict[int, int]] = {}  # pr -> our comment id -> GitHub id
        for comment_id, task_id in pending:
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                comment = session.get_one(ReviewComment, comment_id)
                pr, branch = stacks.pull_for_comment(session, task, comment), task.branch
                parent_github = (
                    session.get_one(ReviewComment, comment.parent_id).github_id
                    if comment.parent_id
                    else None
                )
                body, sent = reviewsync.outgoing_body(comment), comment.body
                path, line, end, side = comment.path, comment.line, comment.end_line, comment.side
                commit = comment.commit_sha
            if pr not in on_github:
                on_github[pr] = {}
                for c in self.api.review_comments(pr):
                    found = find_marker(c.get("body"))
                    if found and found[0] == "comment":
                        on_github[pr][found[1]] = int(c["id"])
            github_id = on_github[pr].get(comment_id)
            self.ctx.check_cancelled()  # a job that lost its lease posts nothing more
            try:
                if github_id is None and comment.parent_id is not None:
                    if not parent_github:
                        continue  # the parent is not on GitHub (yet): keep it here only
                    github_id = int(self.api.reply_to_review_comment(pr, parent_github, body)["id"])
                elif github_id is None:
                    head = commit or str(self.api.pull(pr)["head"]["sha"])
                    github_id = int(
                        self.api.create_review_comment(
                            pr,
                            body=body,
                            commit_id=head,
                            path=path,
                            line=end or line,
                            start_line=line if end else None,
                            side="LEFT" if side == "old" else "RIGHT",
                        )["id"]
                    )
            except GitHubError as exc:
                if exc.http_status != 422:
                    raise
                github_id = NOT_SYNCED
                with self.ctx.db.session() as session:
                    self._note(
                        session,
                        session.get_one(Task, task_id),
                        "github.comment_not_synced",
                        f"GitHub would not take comment {comment_id} on {branch}: {exc.message}",
                    )
            with self.ctx.db.session() as session:
                row = session.get(ReviewComment, comment_id)
                if row is not None:  # (deleted meanwhile: the outbox would not know of it)
                    row.github_id, row.github_digest = github_id, reviewsync.digest(body)
                    row.github_resolved = False if github_id else None
                    # Edited while it was being posted: the edit goes out next.
                    row.github_edit_pending = bool(github_id) and row.body != sent
                elif github_id:
                    self.api.delete_review_comment(github_id)

    # -- out: edits, deletions, resolutions, verdicts (see errands.github.reviewsync) -----

    def push_comment_edits(self) -> None:
        """Errands comments edited here whose copy is on the pull request: edit it there."""
        with self.ctx.db.session() as session:
            pending = list(
                session.scalars(
                    select(ReviewComment.id)
                    .join(Task, Task.id == ReviewComment.task_id)
                    .where(
                        Task.project_id == self.project_id,
                        ReviewComment.github_edit_pending.is_(True),
                        ReviewComment.github_id.is_not(None),
                        ReviewComment.github_id != NOT_SYNCED,
                    )
                    .order_by(ReviewComment.id)
                )
            )
        for comment_id in pending:
            with self.ctx.db.session() as session:
                found = session.get_one(ReviewComment, comment_id)
                github_id, text_sent = int(found.github_id or 0), found.body
                body = reviewsync.outgoing_body(found)
                found_digest, at = found.github_digest, found.edited_at
            # Edited on GitHub too, after ours, and its webhook not here yet: theirs is newer
            # and wins (see reviewsync), so it is taken rather than written over.
            remote = self.api.review_comment(github_id)
            newer = remote is not None and reviewsync.newer_on_github(found_digest, at, remote)
            edited = None
            if remote is not None and not newer:
                self.ctx.check_cancelled()  # a job that lost its lease edits nothing more
                edited = self.api.edit_review_comment(github_id, body)
            with self.ctx.db.session() as session:
                row = session.get(ReviewComment, comment_id)
                if row is None:
                    continue  # deleted meanwhile: the outbox deletes it on GitHub
                if newer and remote is not None:
                    reviewsync.take_github_edit(row, remote)
                    self._note(
                        session,
                        row.task,
                        "review.comment_edited",
                        f"Comment {comment_id} was edited on GitHub after its edit here: "
                        "GitHub's newer text is kept",
                    )
                    continue
                if edited is None:
                    row.github_id, row.github_edit_pending = NOT_SYNCED, False
                    self._note(
                        session,
                        row.task,
                        "github.comment_not_synced",
                        f"Comment {comment_id} is gone from the pull request; kept here only",
                    )
                    continue
                row.github_digest = reviewsync.digest(body)
                # From now on the edit is GitHub's, at GitHub's time (see reviewsync).
                row.edited_at = reviewsync.github_time(edited.get("updated_at")) or row.edited_at
                row.github_edit_pending = row.body != text_sent  # edited again meanwhile

    def push_deletions(self) -> None:
        with self.ctx.db.session() as session:
            waiting = [
                (o.id, o.github_id, o.task_id)
                for o in session.scalars(
                    select(GitHubOutbox)
                    .where(GitHubOutbox.project_id == self.project_id)
                    .order_by(GitHubOutbox.id)
                )
            ]
        for outbox_id, github_id, task_id in waiting:
            self.ctx.check_cancelled()
            if github_id != NOT_SYNCED:
                self.api.delete_review_comment(github_id)  # gone already is as good
            with self.ctx.db.session() as session:
                row = session.get(GitHubOutbox, outbox_id)
                if row is not None:
                    session.delete(row)
                task = session.get(Task, task_id) if task_id else None
                self._note(
                    session,
                    task,
                    "github.comment_deleted",
                    f"Review comment {github_id} deleted from the pull request",
                )

    def push_resolutions(self) -> None:
        """Threads resolved or reopened here: the same on the pull request (GraphQL: REST has
        no review threads)."""
        with self.ctx.db.session() as session:
            pending = [
                # In a stack, the thread is on its subtask's pull request if Errands made it
                # there, else on the task's (where comments made on GitHub are read).
                (
                    c.id,
                    int(c.github_id or 0),
                    list(dict.fromkeys([stacks.pull_for_comment(session, t, c), t.github_pr])),
                    c.resolved,
                )
                for c, t in session.execute(
                    select(ReviewComment, Task)
                    .join(Task, Task.id == ReviewComment.task_id)
                    .where(
                        Task.project_id == self.project_id,
                        Task.github_pr.is_not(None),
                        ReviewComment.parent_id.is_(None),
                        ReviewComment.github_id.is_not(None),
                        ReviewComment.github_id != NOT_SYNCED,
                    )
                    .order_by(ReviewComment.id)
                )
                if c.resolved != bool(c.github_resolved)
            ]
        threads: dict[int, dict[int, tuple[str, bool]]] = {}
        for comment_id, github_id, pulls, resolved in pending:
            found: tuple[str, bool] | None = None
            for pr in (int(p) for p in pulls if p):
                if pr not in threads:
                    threads[pr] = self.api.review_threads(pr)
                found = threads[pr].get(github_id)
                if found is not None:
                    break
            now = found[1] if found else None
            if found is not None and found[1] != resolved:
                self.ctx.check_cancelled()
                now = self.api.resolve_thread(found[0], resolved)
            with self.ctx.db.session() as session:
                row = session.get(ReviewComment, comment_id)
                if row is None:
                    continue
                if now is None:  # no such thread on GitHub (any more): stop trying
                    row.github_id = NOT_SYNCED
                    continue
                row.github_resolved = now
                word = "resolved" if now else "reopened"
                self._note(session, row.task, "github.thread_synced", f"Thread {comment_id} {word}")

    def post_verdicts(self) -> None:
        """Verdicts given in Errands, each posted once on the pull request as a review."""
        with self.ctx.db.session() as session:
            pending = [
                (state.id, int(task.github_pr or 0))
                for state, task in session.execute(
                    select(ReviewerState, Task)
                    .join(Task, Task.id == ReviewerState.task_id)
                    .where(
                        Task.project_id == self.project_id,
                        Task.github_pr.is_not(None),
                        ReviewerState.verdict.is_not(None),
                        ReviewerState.verdict_head.is_not(None),
                        ReviewerState.reviewer.not_like("github:%"),
                    )
                )
                if state.github_posted != reviewsync.posted_key(state)
            ]
        for state_id, pr in pending:
            with self.ctx.db.session() as session:
                state = session.get_one(ReviewerState, state_id)
                key, head = reviewsync.posted_key(state), str(state.verdict_head)
                body = reviewsync.verdict_body(state, head)
                marker = (state.id, key)
                name = state.name
            # (GitHub is asked outside the transaction: SQLite has one writer.)
            posted = reviewsync.is_posted(list(self.api.reviews(pr)), *marker)
            kind, said = "github.verdict_posted", f"{name}'s verdict posted on #{pr}"
            if not posted:
                self.ctx.check_cancelled()  # a job that lost its lease posts nothing more
                try:
                    self.api.create_review(pr, body=body, event="COMMENT", commit_id=head)
                except GitHubError as exc:
                    if exc.http_status != 422:
                        raise
                    # The commit is no longer the pull request's (a newer round): say so once.
                    kind = "github.verdict_not_synced"
                    said = f"GitHub would not take {name}'s verdict: {exc.message}"
            with self.ctx.db.session() as session:
                state = session.get_one(ReviewerState, state_id)
                state.github_posted = key
                self._note(session, session.get(Task, state.task_id), kind, said)
