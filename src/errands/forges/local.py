"""The local forge: a repository on disk or behind a plain git URL. Nothing to tell anyone;
merges land with git here."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from errands.domain import JobKind
from errands.forges.base import PendingMerge, Stage
from errands.store import Project, Task


class LocalForge:
    name = "local"

    def claims(self, project: Project) -> bool:
        return True

    def claims_origin(self, origin: str) -> bool:
        return False

    def git_env(self, origin: str) -> dict[str, str]:
        return {}

    def nudge(self, session: Session, project: Project) -> None:
        return None

    def pending_merge(self, task: Task, message: str) -> PendingMerge | None:
        return None

    def stages(self) -> Mapping[JobKind, Stage]:
        return {}
