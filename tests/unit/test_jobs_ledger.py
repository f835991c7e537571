"""The job ledger on real, migrated databases: the embedded SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from errands.domain import JobKind, JobState
from errands.errors import LeaseLost
from errands.jobs import ledger
from errands.store import Database, Event, Job, Project, Task, events
from errands.store.models import utcnow

SHORT_LEASE = 0.01
LONG_LEASE = 600.0


@pytest.fixture
def project_id(db: Database) -> int:
    with db.session() as session:
        project = Project(name="demo", origin="/src/demo", base_branch="main")
        session.add(project)
        session.flush()
        return project.id


@pytest.fixture
def task_id(db: Database, project_id: int) -> int:
    with db.session() as session:
        task = Task(project_id=project_id, title="t", state="researching", base_branch="main")
        session.add(task)
        session.flush()
        return task.id


def enqueue(
    db: Database, project_id: int, *, task_id: int | None = None, max_attempts: int = 3
) -> int:
    with db.session() as session:
        return ledger.enqueue(
            session,
            JobKind.RESEARCH,
            project_id=project_id,
            task_id=task_id,
            max_attempts=max_attempts,
        ).id


def job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


def outlive_lease(db: Database, job_id: int) -> None:
    """Wait (not assert on time) until the job's lease is in the past."""
    expires = job(db, job_id).lease_expires_at
    assert expires is not None
    while utcnow() <= expires:
        time.sleep(SHORT_LEASE)


def test_claim_leases_the_job_once(db: Database, project_id: int, task_id: int) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)

    lease = ledger.claim(db, "worker-a", LONG_LEASE)

    assert lease == ledger.Lease(
        job_id,
        JobKind.RESEARCH,
        task_id,
        project_id,
        attempt=1,
        max_attempts=3,
        owner="worker-a",
        epoch=1,
    )
    row = job(db, job_id)
    assert row.state == JobState.RUNNING
    assert row.attempts == 1
    assert row.lease_owner == "worker-a"
    assert ledger.claim(db, "worker-b", LONG_LEASE) is None


def test_claim_takes_the_oldest_job_first(db: Database, project_id: int) -> None:
    first, second = enqueue(db, project_id), enqueue(db, project_id)
    a = ledger.claim(db, "w", LONG_LEASE)
    b = ledger.claim(db, "w", LONG_LEASE)
    assert a is not None
    assert b is not None
    assert (a.job_id, b.job_id) == (first, second)


def test_a_job_scheduled_for_later_is_not_claimed_yet(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.run_after = utcnow() + timedelta(hours=1)
    assert ledger.claim(db, "w", LONG_LEASE) is None


def test_a_dead_workers_job_is_claimed_again_after_its_lease(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    dead = ledger.claim(db, "dead-worker", SHORT_LEASE)
    assert dead is not None
    outlive_lease(db, job_id)  # and no heartbeat came

    lease = ledger.claim(db, "rescuer", LONG_LEASE)

    assert lease is not None
    assert lease.job_id == job_id
    assert lease.attempt == 2
    assert lease.epoch == dead.epoch + 1
    assert job(db, job_id).lease_owner == "rescuer"
    # the dead worker, should it come back, can no longer finish the job
    ledger.finish(db, dead, JobState.SUCCEEDED)
    assert job(db, job_id).state == JobState.RUNNING


def test_heartbeat_keeps_the_lease(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    lease = ledger.claim(db, "a", SHORT_LEASE)
    assert lease is not None
    first_expiry = job(db, job_id).lease_expires_at
    assert first_expiry is not None

    assert ledger.heartbeat(db, lease, LONG_LEASE) is False
    while utcnow() <= first_expiry:  # the lease as first granted is over
        time.sleep(SHORT_LEASE)

    assert ledger.claim(db, "b", LONG_LEASE) is None
    assert job(db, job_id).lease_owner == "a"


def test_heartbeat_of_an_older_claim_does_not_extend_the_lease(
    db: Database, project_id: int
) -> None:
    job_id = enqueue(db, project_id)
    stale = ledger.claim(db, "a", SHORT_LEASE)
    assert stale is not None
    outlive_lease(db, job_id)
    # The same worker claims it again (another of its threads) and stalls too.
    assert ledger.claim(db, "a", SHORT_LEASE) is not None

    assert ledger.heartbeat(db, stale, LONG_LEASE) is True  # stop, it says
    outlive_lease(db, job_id)
    assert ledger.claim(db, "b", LONG_LEASE) is not None


def test_cancel_of_a_running_job_is_reported_at_its_heartbeat(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    lease = ledger.claim(db, "a", LONG_LEASE)
    assert lease is not None

    with db.session() as session:
        ledger.request_cancel(session, task_id)

    assert job(db, job_id).state == JobState.RUNNING  # it stops itself
    assert ledger.heartbeat(db, lease, LONG_LEASE) is True


def test_one_heartbeat_for_all_of_a_workers_jobs_tells_each_apart(
    db: Database, project_id: int
) -> None:
    """A worker renews all its leases in one write; a lost claim and a cancelled job among
    them must still each be told to stop, and only the held ones extended."""
    with db.session() as session:
        tasks = [
            Task(project_id=project_id, title=f"t{i}", state="researching", base_branch="main")
            for i in range(3)
        ]
        session.add_all(tasks)
        session.flush()
        task_ids = [task.id for task in tasks]
    held_id, lost_id, cancelled_id = (enqueue(db, project_id, task_id=t) for t in task_ids)
    held = ledger.claim(db, "a", LONG_LEASE)
    stale = ledger.claim(db, "a", SHORT_LEASE)
    cancelled = ledger.claim(db, "a", LONG_LEASE)
    assert held and stale and cancelled
    assert [held.job_id, stale.job_id, cancelled.job_id] == [held_id, lost_id, cancelled_id]
    outlive_lease(db, lost_id)
    newer = ledger.claim(db, "b", SHORT_LEASE)  # another worker took the stalled one over
    assert newer is not None and newer.job_id == lost_id
    with db.session() as session:
        ledger.request_cancel(session, task_ids[2])
    before = job(db, held_id).lease_expires_at
    newer_expiry = job(db, lost_id).lease_expires_at

    stop = ledger.heartbeat_all(db, [held, stale, cancelled], LONG_LEASE)

    assert stop == {stale, cancelled}
    after = job(db, held_id).lease_expires_at
    assert before is not None and after is not None and after > before
    assert job(db, lost_id).lease_expires_at == newer_expiry  # the newer claim's, untouched
    assert ledger.heartbeat_all(db, [], LONG_LEASE) == set()


def test_cancel_of_a_queued_job_is_immediate(db: Database, project_id: int, task_id: int) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    with db.session() as session:
        assert ledger.active_job(session, task_id) is not None
        ledger.request_cancel(session, task_id)

    row = job(db, job_id)
    assert row.state == JobState.CANCELLED
    assert row.finished_at is not None
    assert ledger.claim(db, "a", LONG_LEASE) is None
    with db.session() as session:
        assert ledger.active_job(session, task_id) is None


def test_a_job_out_of_attempts_is_failed_by_exhausted(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id, max_attempts=2)
    for worker in ("first", "second"):
        assert ledger.claim(db, worker, 1.0) is not None
        assert ledger.exhausted(db) == []  # not while the lease runs
        outlive_lease(db, job_id)

    assert ledger.claim(db, "third", LONG_LEASE) is None  # no attempts left
    gave_up = ledger.exhausted(db)

    assert gave_up == [ledger.Lease(job_id, JobKind.RESEARCH, task_id, project_id, 2, 2, epoch=2)]
    row = job(db, job_id)
    assert row.state == JobState.FAILED
    assert row.lease_owner is None
    assert row.last_error is not None
    assert "2 time(s)" in row.last_error
    assert ledger.exhausted(db) == []  # reported once


def test_exhausted_leaves_a_job_with_attempts_left_alone(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id, max_attempts=3)
    assert ledger.claim(db, "a", SHORT_LEASE) is not None
    outlive_lease(db, job_id)
    assert ledger.exhausted(db) == []
    assert job(db, job_id).state == JobState.RUNNING


def test_requeue_gives_the_job_back_without_counting_the_attempt(
    db: Database, project_id: int
) -> None:
    job_id = enqueue(db, project_id, max_attempts=1)
    first = ledger.claim(db, "a", LONG_LEASE)
    assert first is not None

    ledger.requeue(db, first)

    row = job(db, job_id)
    assert row.state == JobState.QUEUED
    assert row.attempts == 0
    assert row.lease_owner is None
    lease = ledger.claim(db, "b", LONG_LEASE)  # its only attempt is still available
    assert lease is not None
    assert lease.attempt == 1
    assert lease.epoch == first.epoch + 1  # the fencing token never goes back


def test_requeue_of_an_older_claim_by_the_same_worker_does_nothing(
    db: Database, project_id: int
) -> None:
    """Two threads of one worker: the stale one giving its claim back must not release the
    newer claim the other thread holds (released by job and epoch, not worker name)."""
    job_id = enqueue(db, project_id)
    stale = ledger.claim(db, "w", SHORT_LEASE)
    assert stale is not None
    outlive_lease(db, job_id)
    current = ledger.claim(db, "w", LONG_LEASE)
    assert current is not None

    ledger.requeue(db, stale)
    ledger.finish(db, stale, JobState.FAILED, "stale")
    ledger.retry_later(db, stale, "stale", delay=0)

    row = job(db, job_id)
    assert (row.state, row.attempts, row.lease_owner) == (JobState.RUNNING, 2, "w")
    assert row.lease_epoch == current.epoch
    assert ledger.claim(db, "other", LONG_LEASE) is None


def test_finish_by_the_owner_records_the_outcome(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    lease = ledger.claim(db, "a", LONG_LEASE)
    assert lease is not None

    ledger.finish(db, lease, JobState.FAILED, "boom")

    row = job(db, job_id)
    assert (row.state, row.last_error, row.lease_owner) == (JobState.FAILED, "boom", None)
    assert row.finished_at is not None
    assert ledger.claim(db, "b", LONG_LEASE) is None


def test_finish_of_an_older_claim_does_nothing(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    stale = ledger.claim(db, "a", SHORT_LEASE)
    assert stale is not None
    outlive_lease(db, job_id)
    assert ledger.claim(db, "b", LONG_LEASE) is not None

    ledger.finish(db, stale, JobState.SUCCEEDED)

    row = job(db, job_id)
    assert (row.state, row.lease_owner, row.finished_at) == (JobState.RUNNING, "b", None)


def test_add_usage_accumulates(db: Database, project_id: int) -> None:
    job_id = enqueue(db, project_id)
    ledger.add_usage(db, job_id, requests=1, input_tokens=10, output_tokens=2)
    ledger.add_usage(db, job_id, requests=2, input_tokens=5, output_tokens=3)
    row = job(db, job_id)
    assert (row.model_requests, row.input_tokens, row.output_tokens) == (3, 15, 5)


def test_concurrent_claimers_get_every_job_exactly_once(db: Database, project_id: int) -> None:
    job_ids = {enqueue(db, project_id) for _ in range(20)}
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def queued_left() -> int:
        with db.session() as session:
            return (
                session.scalar(
                    select(func.count()).select_from(Job).where(Job.state == JobState.QUEUED)
                )
                or 0
            )

    def claimer(owner: str) -> None:
        try:
            start.wait()
            while True:
                lease = ledger.claim(db, owner, LONG_LEASE, project_limit=100)
                if lease is not None:
                    claimed[owner].append(lease.job_id)
                elif queued_left() == 0:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(owner,)) for owner in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    counts = Counter(claimed["a"] + claimed["b"])
    assert set(counts) == job_ids
    assert set(counts.values()) == {1}
    with db.session() as session:
        rows = session.scalars(select(Job)).all()
        assert {row.attempts for row in rows} == {1}
        owners = {row.id: row.lease_owner for row in rows}
    for owner, ids in claimed.items():
        assert all(owners[i] == owner for i in ids)


def add_project(db: Database, name: str, limit: int | None = None) -> int:
    with db.session() as session:
        project = Project(
            name=name, origin=f"/src/{name}", base_branch="main", max_concurrent_jobs=limit
        )
        session.add(project)
        session.flush()
        return project.id


def test_claims_go_round_the_projects_not_first_come_first_served(db: Database) -> None:
    busy, quiet, other = (add_project(db, name) for name in ("busy", "quiet", "other"))
    busy_jobs = [enqueue(db, busy) for _ in range(5)]
    quiet_job, other_job = enqueue(db, quiet), enqueue(db, other)

    order = []
    for _ in range(4):
        lease = ledger.claim(db, "w", LONG_LEASE, project_limit=10)
        assert lease is not None
        order.append(lease.job_id)

    # busy queued first, but once it runs a job the projects with none go ahead of it.
    assert order == [busy_jobs[0], quiet_job, other_job, busy_jobs[1]]


def test_a_project_never_runs_more_than_its_limit(db: Database) -> None:
    limited, free = add_project(db, "limited", limit=2), add_project(db, "free")
    limited_jobs = [enqueue(db, limited) for _ in range(4)]
    free_job = enqueue(db, free)

    leases = [ledger.claim(db, "w", LONG_LEASE, project_limit=1) for _ in range(4)]

    claimed = [lease.job_id for lease in leases if lease is not None]
    assert sorted(claimed) == sorted([*limited_jobs[:2], free_job])
    assert leases[-1] is None
    first = next(lease for lease in leases if lease and lease.job_id == limited_jobs[0])
    ledger.finish(db, first, JobState.SUCCEEDED)
    lease = ledger.claim(db, "w", LONG_LEASE, project_limit=1)
    assert lease is not None
    assert lease.job_id == limited_jobs[2]


def test_an_expired_lease_does_not_count_against_the_limit(db: Database) -> None:
    project = add_project(db, "p", limit=1)
    first, second = enqueue(db, project), enqueue(db, project)
    assert ledger.claim(db, "dead", SHORT_LEASE) is not None
    outlive_lease(db, first)
    # The dead worker's job is runnable again and takes the one slot; nothing else fits.
    lease = ledger.claim(db, "rescuer", LONG_LEASE)
    assert lease is not None
    assert lease.job_id == first
    assert ledger.claim(db, "rescuer", LONG_LEASE) is None
    assert job(db, second).state == JobState.QUEUED


def test_concurrent_claimers_never_exceed_a_project_limit(db: Database) -> None:
    project = add_project(db, "p", limit=3)
    for _ in range(12):
        enqueue(db, project)
    start = threading.Barrier(4)
    leases: list[ledger.Lease] = []
    errors: list[BaseException] = []

    def claimer(owner: str) -> None:
        try:
            start.wait()
            for _ in range(6):
                lease = ledger.claim(db, owner, LONG_LEASE)
                if lease is not None:
                    leases.append(lease)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(leases) == 3
    assert len({lease.job_id for lease in leases}) == 3


def test_retry_later_queues_the_job_after_a_delay_and_counts_the_attempt(
    db: Database, project_id: int
) -> None:
    job_id = enqueue(db, project_id, max_attempts=3)
    first = ledger.claim(db, "a", LONG_LEASE)
    assert first is not None

    ledger.retry_later(db, first, "HTTP 429", delay=600)

    row = job(db, job_id)
    assert (row.state, row.attempts, row.lease_owner) == (JobState.QUEUED, 1, None)
    assert row.last_error == "HTTP 429"
    assert ledger.claim(db, "b", LONG_LEASE) is None  # not before its time

    ledger.retry_later(db, first, "not mine any more", delay=0)  # a no-op now
    with db.session() as session:
        session.get_one(Job, job_id).run_after = utcnow() - timedelta(seconds=1)
    lease = ledger.claim(db, "b", LONG_LEASE)
    assert lease is not None
    assert (lease.attempt, lease.last_attempt) == (2, False)


def test_retry_delays_double_up_to_the_cap_with_jitter() -> None:
    for attempt, ceiling in [(1, 10.0), (2, 20.0), (3, 40.0), (6, 300.0), (30, 300.0)]:
        delays = [ledger.retry_delay(attempt, 10.0, 300.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_a_long_queue_in_one_project_never_hides_another_projects_job(db: Database) -> None:
    flood, small = add_project(db, "flood"), add_project(db, "small")
    with db.session() as session:
        for _ in range(150):
            ledger.enqueue(session, JobKind.INDEX, project_id=flood)
    late = enqueue(db, small)

    first = ledger.claim(db, "w", LONG_LEASE, project_limit=10)
    second = ledger.claim(db, "w", LONG_LEASE, project_limit=10)

    assert first is not None and second is not None
    assert (first.project_id, second.job_id) == (flood, late)


# -- one github job per project at a time (two would each look on GitHub for what the other
# is about to post, find nothing, and both post it)


def enqueue_kind(db: Database, project: int, kind: JobKind) -> int:
    with db.session() as session:
        return ledger.enqueue(session, kind, project_id=project).id


def lease_of(db: Database, job_id: int) -> ledger.Lease:
    """The current claim of a running job, as its worker holds it."""
    row = job(db, job_id)
    return ledger.Lease(
        row.id,
        JobKind(row.kind),
        row.task_id,
        row.project_id,
        row.attempts,
        row.max_attempts,
        row.lease_owner or "",
        epoch=row.lease_epoch,
    )


def claim_all(db: Database, lease: float = LONG_LEASE) -> set[int]:
    claimed = set()
    while (got := ledger.claim(db, "w", lease, project_limit=100)) is not None:
        claimed.add(got.job_id)
    return claimed


def test_a_second_github_job_of_a_project_waits_for_the_first(db: Database) -> None:
    mine, other = add_project(db, "mine"), add_project(db, "other")
    first = enqueue_kind(db, mine, JobKind.GITHUB)
    second = enqueue_kind(db, mine, JobKind.GITHUB)
    research = enqueue_kind(db, mine, JobKind.RESEARCH)
    elsewhere = enqueue_kind(db, other, JobKind.GITHUB)
    # The waiting github job hides neither its project's other jobs nor other projects'.
    assert claim_all(db) == {first, research, elsewhere}
    ledger.finish(db, lease_of(db, first), JobState.SUCCEEDED)
    assert claim_all(db) == {second}


def test_a_github_job_whose_worker_vanished_is_reclaimed_before_the_next_runs(
    db: Database,
) -> None:
    mine = add_project(db, "mine")
    first = enqueue_kind(db, mine, JobKind.GITHUB)
    second = enqueue_kind(db, mine, JobKind.GITHUB)
    lease = ledger.claim(db, "dead-worker", SHORT_LEASE, project_limit=100)
    assert lease is not None and lease.job_id == first
    # Its lease runs out: it is claimed again (it may have been half way), the next still waits.
    outlive_lease(db, first)
    rescued = ledger.claim(db, "w2", LONG_LEASE, project_limit=100)
    assert rescued is not None and rescued.job_id == first
    assert claim_all(db) == set()
    ledger.finish(db, rescued, JobState.SUCCEEDED)
    assert claim_all(db) == {second}


def test_concurrent_claimers_start_one_github_job_per_project(db: Database) -> None:
    mine = add_project(db, "mine")
    for _ in range(6):
        enqueue_kind(db, mine, JobKind.GITHUB)
    claimed: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(owner: str) -> None:
        try:
            start.wait()
            for _ in range(5):
                lease = ledger.claim(db, owner, LONG_LEASE, project_limit=100)
                if lease is not None:
                    claimed.append(lease.job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(claimed) == 1


# -- fencing: every write of a job carries its claim's epoch ----------------------------------


def stale_and_current(db: Database, job_id: int) -> tuple[ledger.Lease, ledger.Lease]:
    """A claim that stalled past its lease, and the claim that took the job over (by the
    same worker: names prove nothing, the epoch does)."""
    stale = ledger.claim(db, "w", SHORT_LEASE)
    assert stale is not None
    outlive_lease(db, job_id)
    current = ledger.claim(db, "w", LONG_LEASE)
    assert current is not None
    assert current.job_id == job_id
    return stale, current


def move_task(db: Database, task_id: int, state: str) -> None:
    with db.session() as session:
        session.get_one(Task, task_id).state = state
        events.record(session, "task.state", state, task_id=task_id)


def test_a_write_under_an_old_epoch_is_refused_whole(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    stale, current = stale_and_current(db, job_id)

    with pytest.raises(LeaseLost):
        move_task(db.fenced(lambda s: ledger.fence(s, stale)), task_id, "failed")

    with db.session() as session:
        assert session.get_one(Task, task_id).state == "researching"  # nothing landed
        assert session.scalars(select(Event).where(Event.task_id == task_id)).all() == []
    move_task(db.fenced(lambda s: ledger.fence(s, current)), task_id, "awaiting_answers")
    with db.session() as session:
        assert session.get_one(Task, task_id).state == "awaiting_answers"


def test_core_statements_of_an_old_epoch_are_refused_too(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    stale, _ = stale_and_current(db, job_id)

    with pytest.raises(LeaseLost), db.fenced(lambda s: ledger.fence(s, stale)).session() as s:
        s.execute(update(Task).where(Task.id == task_id).values(state="failed"))

    with db.session() as session:
        assert session.get_one(Task, task_id).state == "researching"


def test_a_fenced_transaction_that_only_reads_is_not_refused(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    stale, _ = stale_and_current(db, job_id)
    with db.fenced(lambda s: ledger.fence(s, stale)).session() as session:
        assert session.get_one(Task, task_id).state == "researching"


def test_settle_of_an_old_epoch_is_refused_and_moves_nothing(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id)
    stale, current = stale_and_current(db, job_id)

    def settle_in_review(lease: ledger.Lease) -> None:
        with db.session() as session:
            session.get_one(Task, task_id).state = "in_review"
            ledger.settle(session, lease)

    with pytest.raises(LeaseLost):
        settle_in_review(stale)

    assert job(db, job_id).state == JobState.RUNNING
    with db.session() as session:
        assert session.get_one(Task, task_id).state == "researching"
    settle_in_review(current)
    assert job(db, job_id).state == JobState.SUCCEEDED


def test_a_job_the_recovery_sweep_failed_fences_out_its_last_claim(
    db: Database, project_id: int, task_id: int
) -> None:
    job_id = enqueue(db, project_id, task_id=task_id, max_attempts=1)
    lease = ledger.claim(db, "w", SHORT_LEASE)
    assert lease is not None
    outlive_lease(db, job_id)
    assert [gave_up.job_id for gave_up in ledger.exhausted(db)] == [job_id]

    with pytest.raises(LeaseLost):
        move_task(db.fenced(lambda s: ledger.fence(s, lease)), task_id, "in_review")
    assert not ledger.still_held(db, lease)


def test_still_held_is_false_once_the_lease_expired_or_was_taken_over(
    db: Database, project_id: int
) -> None:
    job_id = enqueue(db, project_id)
    stale = ledger.claim(db, "w", SHORT_LEASE)
    assert stale is not None
    outlive_lease(db, job_id)
    assert not ledger.still_held(db, stale)  # expired, even before anyone claims it
    current = ledger.claim(db, "w", LONG_LEASE)
    assert current is not None
    assert ledger.still_held(db, current)
    assert not ledger.still_held(db, stale)
