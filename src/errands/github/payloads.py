"""Typed models of the webhook payload fields Errands uses, checked when a delivery arrives.

A delivery that does not fit is refused at the door (400, nothing stored), so the project's
``github`` job only ever reads payloads of these shapes: it stores the validated model's dump,
and reads it back through the same model. Strict: GitHub's numbers are JSON numbers and its
strings are strings, never one for the other (nor a boolean for a number). Fields Errands does
not read are dropped. Logins go into API paths (``/collaborators/{login}/permission``), so a
login is held to GitHub's own alphabet.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from errands.github.errors import MalformedWebhook
from errands.limits import Id

# Issue and pull request numbers and line numbers are stored as 32-bit integers; GitHub's ids
# (comments, installations) as 64-bit ones (``Id``). Anything larger is not from GitHub.
Number = Annotated[int, Field(ge=1, le=2**31 - 1)]

# GitHub logins: letters, digits and hyphens (Enterprise Server may map underscores and dots
# from its identity provider); an App's bot user carries "[bot]".
Login = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(\[bot\])?$")]
Name = Annotated[str, Field(max_length=1000)]


class Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class User(Model):
    login: Login


class Label(Model):
    name: Name


class Repository(Model):
    full_name: Name


class Issue(Model):
    number: Number
    title: str
    body: str | None = None
    state: str | None = None
    html_url: str = ""
    user: User | None = None
    labels: list[Label] = []
    # Present (with links) when the "issue" is a pull request's conversation.
    pull_request: dict[str, Any] | None = None


class IssueComment(Model):
    id: Id
    body: str
    user: User


class Head(Model):
    ref: Name
    sha: str | None = None


class PullRequest(Model):
    number: Number
    head: Head
    merged: bool | None = None
    merge_commit_sha: str | None = None


class Review(Model):
    id: Id | None = None
    state: Name
    body: str | None = None
    user: User


class ReviewComment(Model):
    id: Id
    path: str
    body: str
    user: User
    line: Number | None = None
    original_line: Number | None = None
    start_line: Number | None = None
    side: str | None = None
    commit_id: str | None = None
    in_reply_to_id: Id | None = None
    # ISO 8601, as GitHub writes it: when the comment was last edited (the newer edit wins).
    updated_at: Annotated[str, Field(max_length=40)] | None = None


class Thread(Model):
    """A review thread (``pull_request_review_thread``): its GraphQL id and its comments,
    the first of which opened it."""

    node_id: Annotated[str, Field(max_length=200)]
    comments: list[ReviewComment] = []


class RepoEvent(Model):
    """What every repository event Errands acts on carries."""

    action: str | None = None
    repository: Repository


class IssuesEvent(RepoEvent):
    issue: Issue
    sender: User
    label: Label | None = None


class IssueCommentEvent(RepoEvent):
    issue: Issue
    comment: IssueComment


class PullRequestEvent(RepoEvent):
    pull_request: PullRequest


class PullRequestReviewEvent(RepoEvent):
    pull_request: PullRequest
    review: Review
    sender: User | None = None


class PullRequestReviewCommentEvent(RepoEvent):
    pull_request: PullRequest
    comment: ReviewComment
    # Who did it: for an edit or a deletion, not necessarily the comment's author.
    sender: User | None = None


class PullRequestReviewThreadEvent(RepoEvent):
    pull_request: PullRequest
    thread: Thread
    sender: User | None = None


class PushEvent(RepoEvent):
    ref: Name
    after: Name
    deleted: bool = False


class InstallationRef(Model):
    id: Id
    account: User


class RepoRef(Model):
    full_name: Name


class InstallationEvent(Model):
    action: str | None = None
    installation: InstallationRef
    repositories: list[RepoRef] | None = None
    repositories_added: list[RepoRef] = []
    repositories_removed: list[RepoRef] = []


Event = (
    IssuesEvent
    | IssueCommentEvent
    | PullRequestEvent
    | PullRequestReviewEvent
    | PullRequestReviewCommentEvent
    | PullRequestReviewThreadEvent
    | PushEvent
)

REPO_EVENTS: dict[str, type[Event]] = {
    "issues": IssuesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request": PullRequestEvent,
    "pull_request_review": PullRequestReviewEvent,
    "pull_request_review_comment": PullRequestReviewCommentEvent,
    "pull_request_review_thread": PullRequestReviewThreadEvent,
    "push": PushEvent,
}


def explain(error: ValidationError) -> str:
    """Where the payload went wrong, without echoing its (hostile, possibly huge) values."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the payload"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def repo_event(event: str, payload: Any) -> Event:
    """The typed delivery; :class:`MalformedWebhook` when it does not fit."""
    try:
        return REPO_EVENTS[event].model_validate(payload)
    except ValidationError as exc:
        raise MalformedWebhook(f"The {event} payload does not fit: {explain(exc)}") from exc


def installation_event(event: str, payload: Any) -> InstallationEvent:
    try:
        return InstallationEvent.model_validate(payload)
    except ValidationError as exc:
        raise MalformedWebhook(f"The {event} payload does not fit: {explain(exc)}") from exc
