"""A worker: N threads that lease jobs from the ledger and run them, plus one heartbeat thread.

The worker knows nothing about what a job does: the entry point hands it a ``JobHandler``
(the workflow's dispatcher). ``errands worker`` runs one in the foreground; ``errands serve``
embeds one next to the API.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from errands.domain import JobState
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.store import Database

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0  # also how quickly a running job notices it was cancelled


@dataclass(frozen=True)
class Outcome:
    state: JobState
    error: str | None = None


JobHandler = Callable[[Lease, threading.Event], Outcome]
GaveUpHandler = Callable[[Lease], None]


class Worker:
    def __init__(
        self,
        db: Database,
        handler: JobHandler,
        *,
        on_gave_up: GaveUpHandler,
        concurrency: int = 2,
        poll_interval: float = 0.5,
        lease_seconds: float = 120.0,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.handler = handler
        self.on_gave_up = on_gave_up
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self._running: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._slot, name=f"errands-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self._threads.append(
            threading.Thread(target=self._heartbeats, name="errands-heartbeat", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        log.info("worker %s started with %d slot(s)", self.name, self.concurrency)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; ask running jobs to stop and wait for them."""
        self.stopping.set()
        with self._lock:
            for cancel in self._running.values():
                cancel.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_forever(self) -> None:
        self.start()
        try:
            self.stopping.wait()
        finally:
            self.stop()

    # -- internals ------------------------------------------------------------------------

    def _slot(self) -> None:
        while not self.stopping.is_set():
            lease: Lease | None = None
            try:
                lease = ledger.claim(self.db, self.name, self.lease_seconds)
            except Exception:
                log.exception("could not claim a job")
            if lease is None:
                self.stopping.wait(self.poll_interval)
                continue
            self._run(lease)

    def _run(self, lease: Lease) -> None:
        cancel = threading.Event()
        with self._lock:
            self._running[lease.job_id] = cancel
        try:
            outcome = self.handler(lease, cancel)
        except BaseException as exc:  # the handler should not raise; never lose the lease
            log.exception("job %s crashed", lease.job_id)
            outcome = Outcome(JobState.FAILED, f"internal error: {exc!r}")
        finally:
            with self._lock:
                self._running.pop(lease.job_id, None)
        if outcome.state is JobState.QUEUED:
            # Interrupted by shutdown, not by a user: put it back for another worker to
            # resume (its stages are idempotent).
            ledger.requeue(self.db, lease.job_id, self.name)
            return
        ledger.finish(self.db, lease.job_id, self.name, outcome.state, outcome.error)

    def _heartbeats(self) -> None:
        """Extend the leases of running jobs (and hear of cancellations); give up on jobs
        whose workers died too often. Once a second, for the whole worker."""
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                for lease in ledger.exhausted(self.db):
                    self.on_gave_up(lease)
            except Exception:
                log.exception("the recovery sweep failed")
            with self._lock:
                running = dict(self._running)
            for job_id, cancel in running.items():
                try:
                    if ledger.heartbeat(self.db, job_id, self.name, self.lease_seconds):
                        cancel.set()
                except Exception:
                    log.exception("heartbeat for job %s failed", job_id)
