"""Persistence: SQLAlchemy models, the database handle, migrations, the event log."""

from errands.store.db import Database
from errands.store.models import (
    Base,
    Event,
    GitHubDelivery,
    GitHubInstallation,
    Job,
    Project,
    Question,
    ReviewComment,
    Schedule,
    Subtask,
    Task,
)

__all__ = [
    "Base",
    "Database",
    "Event",
    "GitHubDelivery",
    "GitHubInstallation",
    "Job",
    "Project",
    "Question",
    "ReviewComment",
    "Schedule",
    "Subtask",
    "Task",
]
