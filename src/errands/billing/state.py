"""An organization's billing as the API and the pages show it (no Stripe call, no stripe
import: the pages read it whenever billing is on)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.orm import Session

from errands.accounts import credits
from errands.accounts.cost import dollars
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
    )
