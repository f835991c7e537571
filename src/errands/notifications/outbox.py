"""The workers' ``notifications`` duty: compose what is due, then deliver it."""

from __future__ import annotations

from errands.faults import crash_point
from errands.notifications.compose import compose_due
from errands.notifications.deliver import deliver_due
from errands.settings import Settings
from errands.store import Database

EVERY = 1.0  # seconds between runs of the duty across all workers


def run(db: Database, settings: Settings) -> None:
    if compose_due(db, settings):
        crash_point("notify.composed")
    deliver_due(db, settings)
