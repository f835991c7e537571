"""A worker: N threads (slots) that lease jobs from the ledger and run them, one thread that
waits on the transport for them, one heartbeat thread, and one scheduler thread for periodic
duties.

Idle slots do not each poll the ledger: one doorbell thread waits on the transport (a ring,
or ``poll_interval`` without one) and then gives one idle slot a turn to claim. A slot that
claims a job gives the next idle slot a turn before running it (a burst of jobs is taken up
one after another, however few rings got through), and a slot that finishes a job looks for
the next one at once. So an idle worker costs one claim per ``poll_interval`` whatever its
number of slots, and a ring wakes one slot per worker, not a herd racing for one job.

The worker knows nothing about what a job does: the entry point hands it a ``JobHandler``
(the workflow's dispatcher). ``errands worker`` runs one in the foreground; ``errands serve``
embeds one next to the API. Any number of workers, on any number of machines, share one
ledger.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from errands.domain import JobState
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.jobs.schedule import Duty, Scheduler
from errands.jobs.transport import LocalTransport, Transport
from errands.store import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a job ended. ``QUEUED`` means: give it back. Without ``retry_in`` the worker is
    shutting down and the attempt does not count; with it, the job hit a retryable error and
    runs again after that many seconds."""

    state: JobState
    error: str | None = None
    retry_in: float | None = None


JobHandler = Callable[[Lease, threading.Event], Outcome]

# A running job whose lease could not be renewed for this fraction of the lease is stopped by
# its own worker: the rest of the lease is the margin for the stop to take effect before the
# lease expires and another worker may claim the job. Not less: on a loaded machine a
# renewal now and then comes late (with the chaos tests' 3 s lease, two thirds stopped and
# redid jobs often enough to slow a run noticeably), and safety never rests on this stop
# (every write is fenced), only the wasted work of two attempts running at once.
SELF_STOP_FRACTION = 0.8


@dataclass
class _Running:
    cancel: threading.Event
    renewed: float  # time.monotonic() of the claim or of the last renewal


class Worker:
    def __init__(
        self,
        db: Database,
        handler: JobHandler,
        *,
        transport: Transport | None = None,
        duties: Sequence[Duty] = (),
        concurrency: int = 2,
        poll_interval: float = 0.5,
        lease_seconds: float = 120.0,
        project_limit: int = 4,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.handler = handler
        self.transport = transport or LocalTransport()
        self.duties = duties
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.project_limit = project_limit
        # Several heartbeats per lease, so one slow database round trip does not lose it;
        # also how quickly a running job hears it was cancelled.
        self.heartbeat_seconds = min(1.0, lease_seconds / 4)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        # Keyed by claim, not by job: after a stall the same worker may hold a newer claim of
        # a job in another thread while the stale one winds down.
        self._running: dict[Lease, _Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Slots waiting for a turn, and turns given but not yet taken (never more than idle).
        self._turns = threading.Condition()
        self._idle = 0
        self._given = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._slot, name=f"errands-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self._threads.append(
            threading.Thread(target=self._doorbell, name="errands-doorbell", daemon=True)
        )
        self._threads.append(
            threading.Thread(target=self._heartbeats, name="errands-heartbeat", daemon=True)
        )
        self._threads.append(
            threading.Thread(target=self._watchdog, name="errands-watchdog", daemon=True)
        )
        if self.duties:
            scheduler = Scheduler(self.db, self.duties, self.name, self.stopping)
            self._threads.append(
                threading.Thread(target=scheduler.run, name="errands-scheduler", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        log.info("worker %s started with %d slot(s)", self.name, self.concurrency)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; ask running jobs to stop and wait for them."""
        self.stopping.set()
        self.transport.close()
        with self._turns:
            self._turns.notify_all()
        with self._lock:
            for running in self._running.values():
                running.cancel.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_forever(self) -> None:
        self.start()
        try:
            self.stopping.wait()
        finally:
            self.stop()

    # -- internals ------------------------------------------------------------------------

    def _doorbell(self) -> None:
        """Wait for a ring (or the poll interval) only while some slot is idle, so a worker
        whose slots are all busy leaves a Redis ring to a worker that can take the job."""
        while not self.stopping.is_set():
            with self._turns:
                self._turns.wait_for(
                    lambda: self._idle > self._given or self.stopping.is_set(), timeout=1.0
                )
                if self._idle <= self._given:
                    continue
            self.transport.wait(self.poll_interval)
            self._give_turn()

    def _give_turn(self) -> None:
        with self._turns:
            if self._given < self._idle:
                self._given += 1
                self._turns.notify_all()

    def _await_turn(self) -> bool:
        """Block until this idle slot may look for a job; False when the worker stops."""
        with self._turns:
            self._idle += 1
            self._turns.notify_all()  # the doorbell thread waits for an idle slot
            try:
                self._turns.wait_for(lambda: self._given > 0 or self.stopping.is_set())
                if self._given > 0:
                    self._given -= 1
            finally:
                self._idle -= 1
        return not self.stopping.is_set()

    def _slot(self) -> None:
        look_now = True  # at start, and after each job: what freed this slot may be runnable
        while not self.stopping.is_set():
            if not look_now and not self._await_turn():
                return
            lease: Lease | None = None
            try:
                lease = ledger.claim(
                    self.db, self.name, self.lease_seconds, project_limit=self.project_limit
                )
            except Exception:
                log.exception("could not claim a job")
            look_now = lease is not None
            if lease is None:
                continue
            self._give_turn()  # there may be more: the next idle slot looks too
            self._run(lease)

    def _run(self, lease: Lease) -> None:
        running = _Running(threading.Event(), time.monotonic())
        with self._lock:
            self._running[lease] = running
        try:
            outcome = self.handler(lease, running.cancel)
        except BaseException as exc:  # the handler should not raise; never lose the lease
            log.exception("job %s crashed", lease.job_id)
            outcome = Outcome(JobState.FAILED, f"internal error: {exc!r}")
        finally:
            with self._lock:
                self._running.pop(lease, None)
        try:
            self._release(lease, outcome)
        except Exception:
            # The database is unreachable: the lease expires and another worker takes over.
            log.exception("could not release job %s", lease.job_id)

    def _release(self, lease: Lease, outcome: Outcome) -> None:
        # Each release names the claim (job and epoch): a stale one changes nothing.
        if outcome.state is JobState.QUEUED and outcome.retry_in is not None:
            ledger.retry_later(self.db, lease, outcome.error or "", outcome.retry_in)
        elif outcome.state is JobState.QUEUED:
            # Interrupted by shutdown (or this worker lost touch with the ledger), not by a
            # user: put it back for another worker to resume (its stages are idempotent).
            ledger.requeue(self.db, lease)
        else:
            ledger.finish(self.db, lease, outcome.state, outcome.error)

    def _heartbeats(self) -> None:
        """Extend the leases of running jobs and hear of cancellations; stop the jobs whose
        lease this worker can no longer vouch for."""
        while not self.stopping.wait(self.heartbeat_seconds):
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                stop = ledger.heartbeat_all(self.db, list(running), self.lease_seconds)
            except Exception:
                log.exception("heartbeat for jobs %s failed", [lease.job_id for lease in running])
                continue
            renewed = time.monotonic()
            for lease, job in running.items():
                if lease in stop:
                    job.cancel.set()
                else:
                    job.renewed = renewed

    def _watchdog(self) -> None:
        """Stop every job whose lease was last renewed more than ``SELF_STOP_FRACTION`` of a
        lease ago (its agent and its commands too, through its cancel event), before another
        worker may take it over: two workers must never work on one job at once. A thread
        of its own, so a heartbeat stuck on an unreachable database cannot hold it up; and
        it is what a worker frozen past its leases (SIGSTOP, a paused VM) does first on
        waking."""
        while not self.stopping.wait(self.heartbeat_seconds / 2):
            now = time.monotonic()
            with self._lock:
                running = dict(self._running)
            for lease, job in running.items():
                silent = now - job.renewed
                if silent > self.lease_seconds * SELF_STOP_FRACTION and not job.cancel.is_set():
                    log.warning(
                        "job %s: lease not renewed for %.1fs (lease %.1fs); stopping it",
                        lease.job_id,
                        silent,
                        self.lease_seconds,
                    )
                    job.cancel.set()
