"""The ``github`` job of a project: bring GitHub's news in, and Errands' news out.

In: import the open issues once (with their comments), then every pending webhook delivery
of the project, oldest first, each applied and marked done in one transaction, so a crash
re-applies nothing twice. Out: the research questions of issue tasks onto their issue, a pull
request for every task in review, and review comments made in Errands onto the pull request.
Everything out is found again before it is created (a marker or the head branch), so a
retried job never posts twice.

Permission checks (a network call) happen before the transaction that applies a delivery:
SQLite has one writer, and it must not wait on GitHub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from errands.domain import TaskState
from errands.errors import ErrandsError
from errands.github import issues as text
from errands.github.errors import GitHubError
from errands.github.forge import RepoAccess, repo_access
from errands.github.markers import find_marker, with_marker
from errands.github.pulls import pull_body, pull_title
from errands.github.rest import RepoAPI
from errands.github.sanitize import sanitize
from errands.store import GitHubDelivery, Project, ReviewComment, Task
from errands.store import events as event_log
from errands.store.models import utcnow
from errands.workflow import actions
from errands.workflow.context import JobContext

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
NOT_SYNCED = 0


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
        sync.process_deliveries()
        sync.post_questions()
        sync.open_pull_requests()
        sync.post_review_comments()


@dataclass(frozen=True)
class Context:
    """What a delivery handler needs: the transaction, the delivery and its sender's rights."""

    session: Session
    project: Project
    payload: dict[str, Any]
    can_write: bool


class Sync:
    def __init__(self, ctx: JobContext, access: RepoAccess) -> None:
        self.ctx = ctx
        self.api: RepoAPI = access.api
        self.project_id = ctx.lease.project_id

    # -- helpers --------------------------------------------------------------------------

    def _note(self, session: Session, task: Task | None, kind: str, message: str) -> None:
        event_log.record(
            session,
            kind,
            self.ctx.redact(message),
            task_id=task.id if task else None,
            project_id=self.project_id,
            job_id=self.ctx.lease.job_id,
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
        self, session: Session, project: Project, issue: dict[str, Any], comments: list[Any]
    ) -> Task:
        task = Task(
            project_id=project.id,
            title=text.issue_title(issue),
            body=text.issue_body(issue, comments),
            state=TaskState.CREATED,
            base_branch=project.base_branch,
            github_issue=int(issue["number"]),
        )
        session.add(task)
        session.flush()
        self._note(
            session,
            task,
            "task.created",
            f"Task {task.id} imported from GitHub issue #{issue['number']}: {task.title}",
        )
        return task

    def _start(self, session: Session, task: Task, why: str) -> None:
        if task.state != TaskState.CREATED:
            self._note(session, task, "github.trigger_ignored", f"{why}; task is {task.state}")
            return
        actions.start_research(session, self.ctx.settings, task.id)
        self._note(session, task, "github.triggered", why)

    # -- import ---------------------------------------------------------------------------

    def import_open_issues(self) -> None:
        """Every open issue (with its writers' comments) becomes a task, once."""
        imported = 0
        for issue in self.api.open_issues():
            number = int(issue["number"])
            with self.ctx.db.session() as session:
                if self._task_for_issue(session, number) is not None:
                    continue
            comments = [
                (c["user"]["login"], c.get("body") or "")
                for c in self.api.issue_comments(number)
                if find_marker(c.get("body")) is None and self.api.can_write(c["user"]["login"])
            ]
            labels = {label.get("name") for label in issue.get("labels", [])}
            with self.ctx.db.session() as session:
                project = session.get_one(Project, self.project_id)
                if self._task_for_issue(session, number) is not None:
                    continue
                self._import(session, project, issue, comments)
                imported += 1
            if self.ctx.settings.github_trigger_label in labels:
                # The label was set by someone with triage rights or more; it still takes
                # write access to start work.
                self._maybe_start_labeled(number, issue)
        with self.ctx.db.session() as session:
            session.get_one(Project, self.project_id).github_imported_at = utcnow()
            self._note(session, None, "github.imported", f"Imported {imported} open issue(s)")

    def _maybe_start_labeled(self, number: int, issue: dict[str, Any]) -> None:
        author = str(issue.get("user", {}).get("login", ""))
        if not self.api.can_write(author):
            return
        with self.ctx.db.session() as session:
            task = self._task_for_issue(session, number)
            if task is not None:
                self._start(session, task, f"issue #{number} carries the trigger label")

    # -- deliveries -----------------------------------------------------------------------

    def process_deliveries(self) -> None:
        while True:
            with self.ctx.db.session() as session:
                delivery = session.scalars(
                    select(GitHubDelivery)
                    .where(
                        GitHubDelivery.project_id == self.project_id,
                        GitHubDelivery.state == "pending",
                    )
                    .order_by(GitHubDelivery.received_at, GitHubDelivery.id)
                ).first()
                if delivery is None:
                    return
                delivery_id, event = delivery.id, delivery.event
                payload = dict(delivery.payload or {})
            self.ctx.check_cancelled()
            can_write = self._sender_can_write(event, payload)
            try:
                with self.ctx.db.session() as session:
                    claimed = session.execute(
                        update(GitHubDelivery)
                        .where(GitHubDelivery.id == delivery_id, GitHubDelivery.state == "pending")
                        .values(state="done", processed_at=utcnow(), payload=None)
                    )
                    if claimed.rowcount != 1:  # type: ignore[attr-defined]
                        continue  # another github job of this project took it
                    project = session.get_one(Project, self.project_id)
                    outcome = self._apply(event, Context(session, project, payload, can_write))
                    session.get_one(GitHubDelivery, delivery_id).outcome = outcome
            except ErrandsError as exc:
                # The delivery asked for something the task's state refuses (approve with
                # blocking comments, cancel during a merge): record why, and move on.
                with self.ctx.db.session() as session:
                    row = session.get_one(GitHubDelivery, delivery_id)
                    row.state, row.outcome, row.processed_at = "failed", exc.message, utcnow()
                    row.payload = None
                    self._note(
                        session,
                        None,
                        "github.delivery_failed",
                        f"{event} delivery {delivery_id}: {exc.message}",
                    )

    def _sender_can_write(self, event: str, payload: dict[str, Any]) -> bool:
        login = {
            "issue_comment": ("comment", "user", "login"),
            "pull_request_review": ("review", "user", "login"),
            "pull_request_review_comment": ("comment", "user", "login"),
        }.get(event, ("sender", "login"))
        value: Any = payload
        for part in login:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or event in ("push", "pull_request"):
            return False
        return self.api.can_write(value)

    def _apply(self, event: str, c: Context) -> str:
        action = c.payload.get("action")
        if event == "issues":
            return self._issue_event(str(action), c)
        if event == "issue_comment":
            return self._issue_comment(c)
        if event == "pull_request":
            return self._pull_closed(c)
        if event == "pull_request_review":
            return self._review(c)
        if event == "pull_request_review_comment":
            return self._review_comment(c)
        if event == "push":
            return self._push(c)
        return f"{event} is not handled"

    def _issue_event(self, action: str, c: Context) -> str:
        issue = c.payload["issue"]
        number = int(issue["number"])
        task = self._task_for_issue(c.session, number)
        if action in ("opened", "labeled") and task is None and issue.get("state") != "closed":
            task = self._import(c.session, c.project, issue, [])
        if task is None:
            return f"issue #{number}: no task"
        trigger = self.ctx.settings.github_trigger_label
        if action == "opened":
            labels = {label.get("name") for label in issue.get("labels", [])}
            if trigger in labels and c.can_write:
                self._start(c.session, task, f"issue #{number} opened with the trigger label")
            return f"issue #{number} imported as task {task.id}"
        if action == "labeled":
            if c.payload.get("label", {}).get("name") != trigger:
                return "another label"
            if not c.can_write:
                self._note(
                    c.session,
                    task,
                    "github.trigger_ignored",
                    f"@{c.payload['sender']['login']} labelled #{number} but has no write access",
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
            task.body = text.issue_body(issue)
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
                f"Issue #{number} closed; the task is {task.state} and carries on",
            )
            return "task already past research"
        return f"issues.{action} not handled"

    def _issue_comment(self, c: Context) -> str:
        comment, issue = c.payload["comment"], c.payload["issue"]
        number, login, raw = int(issue["number"]), comment["user"]["login"], comment["body"]
        if find_marker(raw) is not None:
            return "our own comment"
        if "pull_request" in issue:
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
            task.body = (task.body + "\n\n" + text.comment_block(login, raw))[: text.MAX_BODY]
            self._note(c.session, task, "github.comment", f"Comment by @{login} added to the task")
            return "comment added to the task"
        self._note(c.session, task, "github.comment", text.comment_block(login, raw)[:2000])
        return "comment noted"

    def _pull_closed(self, c: Context) -> str:
        pull = c.payload["pull_request"]
        number = int(pull["number"])
        task = self._task_for_pull(c.session, number, pull["head"]["ref"])
        if task is None:
            return f"pull request #{number}: no task"
        state = TaskState(task.state)
        if pull.get("merged"):
            if state is TaskState.MERGED:
                return "already merged"  # our own merge, coming back
            task.merge_commit = pull.get("merge_commit_sha")
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
        why = "merged" if pull.get("merged") else "closed without merging"
        self._note(c.session, task, "github.pr_closed", f"Pull request #{number} {why} on GitHub")
        return f"task {task.id} cancelled"

    def _note_state(self, session: Session, task: Task, state: TaskState) -> None:
        event_log.record(
            session,
            "task.state",
            f"Task is {state}",
            task_id=task.id,
            project_id=self.project_id,
            job_id=self.ctx.lease.job_id,
            data={"state": state},
        )

    def _review(self, c: Context) -> str:
        review, pull = c.payload["review"], c.payload["pull_request"]
        task = self._task_for_pull(c.session, int(pull["number"]), pull["head"]["ref"])
        if task is None:
            return "no task for the pull request"
        login, verdict = review["user"]["login"], str(review["state"]).lower()
        if find_marker(review.get("body")) is not None:
            return "our own review"
        if not c.can_write:
            self._note(c.session, task, "github.review_ignored", f"@{login} lacks write access")
            return "reviewer lacks write access"
        self._note(c.session, task, "github.review", f"@{login} reviewed on GitHub: {verdict}")
        if verdict == "approved" and task.state == TaskState.IN_REVIEW:
            actions.approve(c.session, self.ctx.settings, task.id)
            return "approved: merge queued"
        if verdict == "changes_requested" and task.state == TaskState.IN_REVIEW:
            actions.request_changes(c.session, self.ctx.settings, task.id)
            return "changes requested: revise queued"
        return f"review {verdict} noted"

    def _review_comment(self, c: Context) -> str:
        comment, pull = c.payload["comment"], c.payload["pull_request"]
        task = self._task_for_pull(c.session, int(pull["number"]), pull["head"]["ref"])
        if task is None:
            return "no task for the pull request"
        github_id = int(comment["id"])
        if (
            find_marker(comment["body"]) is not None
            or c.session.scalars(
                select(ReviewComment.id).where(ReviewComment.github_id == github_id)
            ).first()
        ):
            return "our own comment"
        login = comment["user"]["login"]
        if not c.can_write:
            self._note(c.session, task, "github.comment_ignored", f"@{login} lacks write access")
            return "commenter lacks write access"
        if TaskState(task.state) not in LIVE:
            return f"task is {task.state}"
        parent = None
        if comment.get("in_reply_to_id"):
            parent = c.session.scalars(
                select(ReviewComment).where(
                    ReviewComment.github_id == int(comment["in_reply_to_id"])
                )
            ).first()
        line = comment.get("line") or comment.get("original_line") or 1
        start = comment.get("start_line")
        subtask = next(
            (s for s in task.subtasks if s.commit_sha and s.commit_sha == comment.get("commit_id")),
            None,
        )
        row = ReviewComment(
            task_id=task.id,
            subtask_id=subtask.id if subtask else None,
            parent_id=parent.id if parent else None,
            path=str(comment["path"]),
            line=int(start if start else line),
            end_line=int(line) if start else None,
            side="old" if comment.get("side") == "LEFT" else "new",
            body=sanitize(comment["body"]) or "(empty)",
            kind="blocking",
            commit_sha=comment.get("commit_id"),
            github_id=github_id,
            github_author=login,
        )
        c.session.add(row)
        c.session.flush()
        self._note(
            c.session,
            task,
            "review.comment",
            f"blocking comment from @{login} on GitHub, {row.path}:{row.line}: {row.body[:120]}",
        )
        return f"comment {row.id} added"

    def _push(self, c: Context) -> str:
        ref, after = c.payload["ref"], c.payload["after"]
        if ref != f"refs/heads/{c.project.base_branch}" or c.payload.get("deleted"):
            return "not the base branch"
        moved = 0
        for task in c.session.scalars(select(Task).where(Task.project_id == self.project_id)):
            if TaskState(task.state) in BASED and task.base_commit and task.base_commit != after:
                task.base_moved_to = after
                moved += 1
                self._note(
                    c.session,
                    task,
                    "github.base_moved",
                    f"{c.project.base_branch} moved to {after[:10]} on GitHub (the task is "
                    f"based on {task.base_commit[:10]}): it needs a rebase",
                )
        return f"{moved} task(s) need a rebase"

    # -- out ------------------------------------------------------------------------------

    def _task_ids(self, *where: ColumnElement[bool]) -> list[int]:
        """This project's tasks matching ``where``, by id (each is then handled in a
        transaction of its own)."""
        with self.ctx.db.session() as session:
            query = select(Task.id).where(Task.project_id == self.project_id, *where)
            return list(session.scalars(query))

    def post_questions(self) -> None:
        waiting = self._task_ids(
            Task.github_issue.is_not(None),
            Task.state == TaskState.AWAITING_ANSWERS,
            Task.github_questions_comment.is_(None),
        )
        for task_id in waiting:
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                issue = int(task.github_issue or 0)
                asked = text.questions_comment(list(task.questions))
                body = with_marker(asked, "questions", task_id)
            existing = next(
                (
                    c
                    for c in self.api.issue_comments(issue)
                    if find_marker(c.get("body")) == ("questions", task_id)
                ),
                None,
            )
            posted = existing or self.api.comment_on_issue(issue, body)
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                task.github_questions_comment = int(posted["id"])
                self._note(
                    session, task, "github.questions_posted", f"Questions posted on #{issue}"
                )

    def open_pull_requests(self) -> None:
        waiting = self._task_ids(
            Task.github_pr.is_(None),
            Task.branch.is_not(None),
            Task.state == TaskState.IN_REVIEW,
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
                pull = self.api.create_pull(title=title, body=body, head=branch, base=base)
            with self.ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                task.github_pr, task.github_pr_url = int(pull["number"]), pull.get("html_url")
                self._note(
                    session,
                    task,
                    "github.pr_opened",
                    f"Pull request #{pull['number']} for {branch}: {pull.get('html_url')}",
                )

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
                pr, branch = int(task.github_pr or 0), task.branch
                parent_github = (
                    session.get_one(ReviewComment, comment.parent_id).github_id
                    if comment.parent_id
                    else None
                )
                body = with_marker(comment.body, "comment", comment_id)
                path, line, end, side = comment.path, comment.line, comment.end_line, comment.side
                commit = comment.commit_sha
            if pr not in on_github:
                on_github[pr] = {}
                for c in self.api.review_comments(pr):
                    found = find_marker(c.get("body"))
                    if found and found[0] == "comment":
                        on_github[pr][found[1]] = int(c["id"])
            github_id = on_github[pr].get(comment_id)
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
                session.get_one(ReviewComment, comment_id).github_id = github_id
