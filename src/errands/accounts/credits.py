"""The credits ledger of an organization on a billed (hosted) install: grants from paid
invoices, spends per job from the cost Errands already computes. Only an organization with a
billing account (errands.billing created it) has credits at all; for every other one, and
on every install without billing, nothing here changes anything.

Rule for failed jobs: a job's spend is what its model calls cost, whether the job then
succeeds or fails: the provider charged those calls either way. Nothing is refunded
automatically; a call refused *before* it is made (out of credits, a spent budget) costs
nothing, so a job stopped by the ledger spends nothing more than its completed calls."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from errands.accounts import cost
from errands.store import BillingAccount, CreditEntry


def billed(session: Session, org_id: int) -> bool:
    return session.get(BillingAccount, org_id) is not None


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
