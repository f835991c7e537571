"""An organization's billing as the API and the pages show it (no Stripe call, no stripe
import: the pages read it whenever billing is on)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.orm import Session

from errands.accounts import credits, service
from errands.accounts.cost import dollars
from errands.accounts.credits import CreditLine
from errands.errors import Conflict
from errands.settings import Settings
from errands.store import BillingAccount


class PlanPublic(BaseModel):
    name: str
    monthly_credits_usd: float
    seats: int | None


class BillingPublic(BaseModel):
    plan: str | None
    status: str | None
    payment_failed: bool
    subscribed: bool
    credits_usd: float
    credits: str
    plans: list[PlanPublic]
    # The newest lines of the ledger (grants, spends, refunds), newest first.
    ledger: list[CreditLine]


def summary(session: Session, settings: Settings, org_id: int) -> BillingPublic:
    account = session.get(BillingAccount, org_id)
    left = credits.balance(session, org_id)
    return BillingPublic(
        plan=account.plan if account else None,
        status=account.status if account else None,
        payment_failed=bool(account and account.payment_failed),
        subscribed=account is not None,
        credits_usd=left / 1_000_000,
        credits=dollars(left),
        plans=[
            PlanPublic(name=n, monthly_credits_usd=p.monthly_credits_usd, seats=p.seats)
            for n, p in settings.billing_plans.items()
        ],
        ledger=credits.lines(session, org_id),
    )


def check_seats(session: Session, settings: Settings, org_id: int) -> None:
    """Refuse (Conflict) one more invitation when the members and the pending invitations
    already fill the seats the organization's plan includes. A plan without seats, or an
    organization without a plan, has no limit."""
    account = session.get(BillingAccount, org_id)
    plan = settings.billing_plans.get(account.plan) if account and account.plan else None
    if plan is None or plan.seats is None:
        return
    taken = len(service.members(session, org_id)) + len(
        service.pending_invitations(session, org_id)
    )
    if taken >= plan.seats:
        raise Conflict(
            f"The {account.plan if account else ''} plan includes {plan.seats} seats, and "
            f"{taken} are taken (members and pending invitations). An owner can change the "
            "plan with Manage billing on the organization page."
        )


def check_seats_on_join(session: Session, settings: Settings, org_id: int) -> None:
    """Refuse (Conflict) a member joining past the seats of the organization's plan: an
    invitation sent before a downgrade. Called in the joining transaction, after the member
    is added, so the refusal leaves the invitation unused for after an upgrade."""
    account = session.get(BillingAccount, org_id)
    plan = settings.billing_plans.get(account.plan) if account and account.plan else None
    if plan is None or plan.seats is None:
        return
    members = len(service.members(session, org_id))
    if members > plan.seats:
        raise Conflict(
            f"The organization's {account.plan if account else ''} plan includes {plan.seats} "
            "seats, and all are taken, so this invitation cannot be accepted now. An owner can "
            "change the plan with Manage billing on the organization page; the invitation "
            "stays valid until it expires."
        )
