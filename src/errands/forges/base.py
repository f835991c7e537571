"""The Forge protocol: what the workflow asks of the place a project's repository lives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from errands.domain import JobKind
from errands.git import Mirror
from errands.store import Project, Task

if TYPE_CHECKING:
    # Type-only: the job context pulls in the agent stack.
    from errands.workflow.context import JobContext

Stage = Callable[["JobContext"], None]


class Emit(Protocol):
    def __call__(self, kind: str, message: str, **data: Any) -> None: ...


@dataclass(frozen=True)
class Merged:
    """A task merged by its forge (through a pull request, say): the commit now on the base
    branch, the event's message and its data. The workflow records it."""

    commit: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class PendingMerge(Protocol):
    """A merge the forge will make, with everything read from the store already: performing
    it makes network calls, which must not hold a database session open."""

    def perform(self, mirror: Mirror, emit: Emit) -> Merged: ...


class Forge(Protocol):
    name: str

    def claims(self, project: Project) -> bool:
        """Whether this forge hosts ``project`` (the local forge claims every project)."""
        ...

    def claims_origin(self, origin: str) -> bool:
        """Whether git commands against ``origin`` would be handed this server's credentials
        for this forge (so an ordinary user may not attach it as a plain git URL)."""
        ...

    def git_env(self, origin: str) -> dict[str, str]:
        """Credentials, as environment, for git commands against ``origin``; {} for none."""
        ...

    def nudge(self, session: Session, project: Project) -> None:
        """Something the forge should hear about happened (questions asked, a branch ready
        for review, a review comment): queue whatever tells it, in the caller's transaction."""
        ...

    def pending_merge(self, task: Task, message: str) -> PendingMerge | None:
        """The merge this forge makes for ``task`` (a pull request's) with the squash
        ``message``, or None to land it with git here."""
        ...

    def stages(self) -> Mapping[JobKind, Stage]:
        """The job stages this forge adds to the worker (its sync job)."""
        ...
