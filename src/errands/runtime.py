"""Wiring: the one place that picks concrete classes. Entry points (CLI, web, worker) call it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import socket
import threading
import weakref
from typing import TYPE_CHECKING

from errands.errors import ConfigError
from errands.jobs.transport import Transport, attach, open_transport
from errands.settings import Settings
from errands.store import Database

if TYPE_CHECKING:
    from errands.jobs.worker import Worker
    from errands.workflow.context import Services

log = logging.getLogger(__name__)

# Every database handle rings its own transport after commits that queue jobs; a worker in
# the same process waits on that same transport.
_transports: weakref.WeakKeyDictionary[Database, Transport] = weakref.WeakKeyDictionary()

RECOVERY_SWEEP_SECONDS = 2.0
WORKSPACE_SWEEP_SECONDS = 300.0
LEANING_SWEEP_SECONDS = 5.0  # questions past their project's lean_after_hours


def open_database(settings: Settings) -> Database:
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    transport = open_transport(settings.redis_url, settings.queue_name, db.sqlite_path)
    attach(transport, db)
    _transports[db] = transport
    return db


def transport_of(db: Database) -> Transport:
    return _transports[db]


# The agent stack (pydantic-ai, the provider SDKs) is imported only where it is used: it
# takes seconds to import, and most CLI commands never need it.


def build_services(settings: Settings, db: Database) -> Services:
    from errands.agent.providers import build_model
    from errands.workflow.context import Services

    return Services(db=db, settings=settings, model_factory=build_model)


# What building the first model of each provider imports: a second or more of CPU.
_PROVIDER_MODULES = {
    "openai": ("openai", "pydantic_ai.models.openai", "pydantic_ai.providers.openai"),
    "anthropic": ("anthropic", "pydantic_ai.models.anthropic", "pydantic_ai.providers.anthropic"),
    "google": ("google.genai", "pydantic_ai.models.google", "pydantic_ai.providers.google"),
}


def warm_up(settings: Settings) -> threading.Thread:
    """Import, in the background, the model SDKs the server's phases use, so that the first
    task after a start does not wait for them (the OpenAI SDK and pydantic-ai's model take
    about 1.5 s of CPU, eagerly built: see errands.agent.providers). Never fails: a job that
    needs a module imports it anyway (Python's import lock makes it wait for this import
    rather than repeat it), and one that is missing is reported by that job."""

    def run() -> None:
        providers = set()
        for phase in ("research", "execute"):
            with contextlib.suppress(ConfigError):
                providers.add(settings.model_for(phase).partition(":")[0])
        for module in ("errands.agent.providers", "errands.agent.loop"):
            with contextlib.suppress(Exception):
                importlib.import_module(module)
        for provider in sorted(providers):
            for module in _PROVIDER_MODULES.get(provider, ()):
                with contextlib.suppress(Exception):
                    importlib.import_module(module)

    thread = threading.Thread(target=run, name="errands-warm-up", daemon=True)
    thread.start()
    return thread


def build_worker(services: Services, *, name: str | None = None) -> Worker:
    from errands.jobs import ledger
    from errands.jobs.schedule import Duty
    from errands.jobs.worker import Worker
    from errands.notifications import outbox
    from errands.sandbox import reap_orphaned_commands
    from errands.workflow import asking
    from errands.workflow.runner import Dispatcher
    from errands.workflow.workspaces import sweep_machine

    dispatcher = Dispatcher(services)
    settings, db = services.settings, services.db
    warm_up(settings)  # while the worker waits for its first job

    def recover() -> None:
        for lease in ledger.exhausted(db):
            dispatcher.gave_up(lease)

    def sweep_machine_state() -> None:
        reap_orphaned_commands()
        cleaned = sweep_machine(settings, db)
        if cleaned:
            log.info("reclaimed %d workspace(s) of dead jobs", cleaned)

    def lean_overdue() -> None:
        resumed = asking.lean_overdue(db, settings)
        if resumed:
            log.info("went on with the agent's leaning in %d task(s)", resumed)

    # Workspaces belong to a machine (and its data directory); the recovery sweep to all.
    machine = hashlib.sha256(f"{socket.gethostname()}:{settings.home}".encode()).hexdigest()
    duties = [
        Duty("recovery", RECOVERY_SWEEP_SECONDS, recover),
        Duty(f"workspaces@{machine[:16]}", WORKSPACE_SWEEP_SECONDS, sweep_machine_state),
        Duty("notifications", outbox.EVERY, lambda: outbox.run(db, settings)),
        Duty("leanings", LEANING_SWEEP_SECONDS, lean_overdue),
    ]
    return Worker(
        db,
        dispatcher,
        transport=transport_of(db),
        duties=duties,
        concurrency=settings.worker_concurrency,
        poll_interval=settings.worker_poll_interval,
        lease_seconds=settings.job_lease_seconds,
        project_limit=settings.project_max_jobs,
        name=name,
    )
