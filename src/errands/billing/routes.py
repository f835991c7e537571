"""HTTP: Stripe's webhook endpoint, an organization's billing state, and the owner's ways
to Stripe (Checkout for a plan, the customer portal). Mounted only when billing is on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from errands.accounts.access import PUBLIC, Admin, Reader
from errands.accounts.api import org_required
from errands.billing import stripe_api, webhook
from errands.billing.errors import MalformedStripeEvent
from errands.billing.state import BillingPublic, summary
from errands.errors import InvalidInput
from errands.store import BillingAccount, Organization
from errands.web.deps import get_db, get_settings
from errands.web.errors import error_responses

# Stripe's events are far smaller; anything bigger is not from Stripe.
MAX_EVENT_BYTES = 1024 * 1024

router = APIRouter(prefix="/api/billing", tags=["billing"])


class CheckoutCreate(BaseModel):
    plan: str


class StripeRedirect(BaseModel):
    url: str


class EventOutcome(BaseModel):
    outcome: str


@router.post("/stripe/webhook", dependencies=[PUBLIC], responses=error_responses(401))
async def stripe_webhook(request: Request) -> EventOutcome:
    """Verify Stripe's signature, then apply the event once (a redelivery changes nothing)."""
    settings = get_settings(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise MalformedStripeEvent("The event is over 1 MB; Stripe's are far smaller.")
    event = webhook.verify(settings, body, request.headers.get("stripe-signature"))
    return EventOutcome(outcome=webhook.apply(get_db(request), settings, event))


@router.get("")
def get_billing(request: Request, principal: Reader) -> BillingPublic:
    org_id = org_required(principal)
    with get_db(request).session() as s:
        return summary(s, get_settings(request), org_id)


@router.post("/checkout", responses=error_responses(502))
def checkout(body: CheckoutCreate, request: Request, principal: Admin) -> StripeRedirect:
    """A Stripe Checkout session for the plan's subscription (owners only)."""
    return StripeRedirect(url=checkout_url(request, org_required(principal), body.plan))


@router.post("/portal", responses=error_responses(502))
def portal(request: Request, principal: Admin) -> StripeRedirect:
    """A Stripe customer-portal session (owners only), once the organization subscribed."""
    return StripeRedirect(url=portal_url(request, org_required(principal)))


def checkout_url(request: Request, org_id: int, plan_name: str) -> str:
    settings = get_settings(request)
    plan = settings.billing_plans.get(plan_name)
    if plan is None:
        raise InvalidInput(
            f"Unknown plan {plan_name!r}; one of: {', '.join(settings.billing_plans)}."
        )
    customer = _customer(request, org_id)
    back = f"{request.base_url}org"
    return stripe_api.checkout_url(settings, customer, plan.price, org_id, back)


def portal_url(request: Request, org_id: int) -> str:
    with get_db(request).session() as s:
        account = s.get(BillingAccount, org_id)
        customer = account.stripe_customer_id if account else None
    if customer is None:
        raise InvalidInput(
            "The organization has no billing account yet: subscribe to a plan first."
        )
    return stripe_api.portal_url(get_settings(request), customer, f"{request.base_url}org")


def _customer(request: Request, org_id: int) -> str:
    """The organization's Stripe customer, created (and the billing account with it) on its
    first checkout: from then on its execution depends on credits."""
    db = get_db(request)
    with db.session() as s:
        account = s.get(BillingAccount, org_id)
        if account is not None:
            return account.stripe_customer_id
        name = s.get_one(Organization, org_id).name
    customer = stripe_api.create_customer(get_settings(request), org_id, name)
    with db.session() as s:
        if s.get(BillingAccount, org_id) is None:
            s.add(BillingAccount(org_id=org_id, stripe_customer_id=customer))
            return customer
        return s.get_one(BillingAccount, org_id).stripe_customer_id
