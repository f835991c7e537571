"""Wiring: the one place that picks concrete classes. Entry points (CLI, web, worker) call it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from errands.settings import Settings
from errands.store import Database

if TYPE_CHECKING:
    from errands.jobs.worker import Worker
    from errands.workflow.context import Services

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return db


# The agent stack (pydantic-ai, the provider SDKs) is imported only where it is used: it
# takes seconds to import, and most CLI commands never need it.


def build_services(settings: Settings, db: Database) -> Services:
    from errands.agent.providers import build_model
    from errands.workflow.context import Services

    return Services(db=db, settings=settings, model_factory=build_model)


def build_worker(services: Services, *, name: str | None = None) -> Worker:
    from errands.jobs.worker import Worker
    from errands.workflow.runner import Dispatcher

    dispatcher = Dispatcher(services)
    settings = services.settings
    return Worker(
        services.db,
        dispatcher,
        on_gave_up=dispatcher.gave_up,
        concurrency=settings.worker_concurrency,
        poll_interval=settings.worker_poll_interval,
        lease_seconds=settings.job_lease_seconds,
        name=name,
    )
