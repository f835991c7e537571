"""The credits ledger of an organization on a billed (hosted) install: grants from paid
invoices, spends per job from the cost Errands already computes, refunds of failed jobs.

On a billed install (billing configured on the server, see errands.billing) every
organization's execution depends on its credits, one that never subscribed included: it has
none. The server records whether the install bills in the database at start-up
(:func:`record_install`), so workers, which need no Stripe settings, agree. On an install
without billing nothing here changes anything.

Rule for failed jobs: a job's spend is what its model calls cost, and a job that fails
*because of the platform* gets it back, as one refund line: an internal error, a worker lost
past its retries, a temporary problem that outlasted them (a rate-limited or overloaded
model endpoint, an unreachable remote), or the model endpoint failing. A job that fails
because of the work itself is not refunded: its calls did the work it reports (verification
still failing, the model's output unusable, a merge conflict, a bad setting of the
project's), nor is one stopped by a budget or by running out of credits (a call refused
*before* it is made costs nothing), nor a cancelled one."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from errands.accounts import cost
from errands.store import BillingAccount, CreditEntry, Database, InstallFlag, Job

BILLING_FLAG = "billing"


class CreditLine(BaseModel):
    """One ledger line as the API and the usage page show it."""

    at: datetime
    kind: str  # grant | spend | refund
    usd: float
    amount: str
    task_id: int | None
    job_id: int | None
    invoice_id: str | None


def record_install(db: Database, bills: bool) -> None:
    """Record whether this install bills its organizations (the server, at start-up)."""
    for attempt in range(2):
        try:
            with db.session() as session:
                flag = session.get(InstallFlag, BILLING_FLAG)
                if flag is None:
                    session.add(InstallFlag(name=BILLING_FLAG, enabled=bills))
                else:
                    flag.enabled = bills
            return
        except IntegrityError:
            if attempt:  # not another server starting at the same moment: a real problem
                raise


def billed(session: Session, org_id: int) -> bool:
    """Whether the organization's execution depends on its credits (see the module)."""
    flag = session.get(InstallFlag, BILLING_FLAG)
    return flag is not None and flag.enabled


def balance(session: Session, org_id: int) -> int:
    total = session.scalar(select(func.sum(CreditEntry.micros)).where(CreditEntry.org_id == org_id))
    return int(total or 0)


def record_spend(session: Session, org_id: int, job_id: int, micros: int) -> None:
    """A job's priced usage, as it is added to the job (cost.add_job_cost)."""
    if micros and billed(session, org_id):
        session.add(CreditEntry(org_id=org_id, kind="spend", micros=-micros, job_id=job_id))


def grant(session: Session, org_id: int, invoice_id: str, micros: int) -> bool:
    """Credits for a paid invoice, once per invoice; False if it was granted already."""
    known = session.scalar(select(CreditEntry.id).where(CreditEntry.invoice_id == invoice_id))
    if known is not None:
        return False
    session.add(CreditEntry(org_id=org_id, kind="grant", micros=micros, invoice_id=invoice_id))
    return True


def refund_job(session: Session, org_id: int, job_id: int) -> int:
    """Give a failed job's spends back (the module's rule decides when), once; the amount."""
    if not billed(session, org_id):
        return 0
    net = session.scalar(
        select(func.sum(CreditEntry.micros)).where(
            CreditEntry.job_id == job_id, CreditEntry.kind.in_(("spend", "refund"))
        )
    )
    owed = -int(net or 0)
    if owed <= 0:
        return 0
    session.add(CreditEntry(org_id=org_id, kind="refund", micros=owed, job_id=job_id))
    return owed


def lines(session: Session, org_id: int, limit: int = 100) -> list[CreditLine]:
    """The newest ledger lines first."""
    rows = session.execute(
        select(CreditEntry, Job.task_id)
        .outerjoin(Job, Job.id == CreditEntry.job_id)
        .where(CreditEntry.org_id == org_id)
        .order_by(CreditEntry.id.desc())
        .limit(limit)
    ).all()
    return [
        CreditLine(
            at=entry.created_at,
            kind=entry.kind,
            usd=entry.micros / 1_000_000,
            amount=("−" if entry.micros < 0 else "+") + cost.dollars(abs(entry.micros)),
            task_id=task_id,
            job_id=entry.job_id,
            invoice_id=entry.invoice_id,
        )
        for entry, task_id in rows
    ]


def out_of_credits(
    session: Session, org_id: int, pending: int = 0, upcoming: int = 0
) -> str | None:
    """Why a billed organization may not spend more (``pending``: usage in flight not yet
    recorded; ``upcoming``: the estimated cost of the call about to be made), or None."""
    if not billed(session, org_id):
        return None
    left = balance(session, org_id) - pending
    if left > 0 and left - upcoming >= 0:
        return None
    if session.get(BillingAccount, org_id) is None and left <= 0:
        return (
            "Out of credits: the organization has no plan yet, and execution spends credits. "
            "An owner can choose a plan on the organization page (/org), then retry."
        )
    return (
        f"Out of credits: the organization has {cost.dollars(max(left, 0))} of credits left"
        + (
            f" and the next model call would cost about {cost.dollars(upcoming)}"
            if upcoming
            else ""
        )
        + ". The work committed so far is kept; an owner can add credits on the organization "
        "page (/org), then retry."
    )
