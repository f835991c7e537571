"""Stripe's webhook events, verified and applied once each.

Stripe signs ``t.payload`` with the endpoint's secret (``Stripe-Signature: t=…,v1=…``);
stripe.Webhook.construct_event checks it, and its age (5 minutes), before anything is read.
Each event id is applied at most once (stripe_events, in the same transaction as its
effects), and every effect is safe in any order, because Stripe does not order deliveries:
credits are granted once per *invoice* (not per event), a subscription event older than the
newest one applied changes nothing, and a payment failure of an invoice already paid is
ignored."""

from __future__ import annotations

from typing import Any

import stripe
from pydantic import ValidationError
from pydantic_core import from_json
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from errands.accounts import credits
from errands.accounts.cost import to_micros
from errands.billing.errors import MalformedStripeEvent, StripeSignatureInvalid
from errands.settings import Settings
from errands.store import BillingAccount, CreditEntry, Database, StripeEvent

SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)


def verify(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, once its signature is Stripe's; else StripeSignatureInvalid."""
    assert settings.stripe_webhook_secret is not None  # the route exists only when set
    if not signature:
        raise StripeSignatureInvalid("The Stripe-Signature header is missing.")
    try:
        stripe.Webhook.construct_event(
            payload, signature, settings.stripe_webhook_secret.get_secret_value()
        )
    except stripe.SignatureVerificationError as exc:
        raise StripeSignatureInvalid("The Stripe-Signature does not match.") from exc
    except ValueError as exc:
        raise MalformedStripeEvent("The event is not JSON.") from exc
    try:
        event = from_json(payload)
    except ValueError as exc:
        raise MalformedStripeEvent("The event is not JSON.") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise MalformedStripeEvent("The event has no id.")
    return event


def apply(db: Database, settings: Settings, event: dict[str, Any]) -> str:
    """Apply ``event`` once; what it did (or that it was a redelivery)."""
    event_id = str(event["id"])[:255]
    kind = str(event.get("type", ""))[:64]
    try:
        with db.session() as session:
            seen = session.get(StripeEvent, event_id)
            if seen is not None:
                return f"redelivery of {event_id}: already applied ({seen.outcome})"
            try:
                outcome = _apply(session, settings, kind, event)
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                raise MalformedStripeEvent(
                    f"The {kind} event is not shaped as Stripe sends it."
                ) from exc
            session.add(StripeEvent(id=event_id, type=kind, outcome=outcome))
            return outcome
    except IntegrityError:
        # The same event delivered twice at once: the other delivery applied it.
        return f"redelivery of {event_id}: applied concurrently"


def _apply(session: Session, settings: Settings, kind: str, event: dict[str, Any]) -> str:
    obj: dict[str, Any] = event["data"]["object"]
    account = _account(session, obj.get("customer"))
    if account is None:
        return "ignored: not a customer of this install"
    if kind == "checkout.session.completed":
        if obj.get("subscription") and account.subscription_id is None:
            account.subscription_id = str(obj["subscription"])
        return "checkout completed"
    if kind in SUBSCRIPTION_EVENTS:
        created = int(event["created"])
        if created < account.subscription_event_at:
            return "ignored: older than the subscription state applied"
        account.subscription_event_at = created
        account.subscription_id = str(obj["id"])
        if kind == "customer.subscription.deleted":
            account.status, account.plan = "canceled", None
        else:
            account.status = str(obj["status"])
            account.plan = _plan_of(settings, _subscription_price(obj)) or account.plan
        return f"subscription {account.status}, plan {account.plan}"
    if kind == "invoice.paid":
        plan = _plan_of(settings, _invoice_price(obj)) or account.plan
        if plan is None:
            return "ignored: the invoice is for no plan of this install"
        account.payment_failed = False
        micros = to_micros(settings.billing_plans[plan].monthly_credits_usd) or 0
        if not credits.grant(session, account.org_id, str(obj["id"]), micros):
            return f"invoice {obj['id']} already granted"
        return f"granted {micros} micros for invoice {obj['id']} ({plan})"
    if kind == "invoice.payment_failed":
        paid = session.scalar(
            select(CreditEntry.id).where(CreditEntry.invoice_id == str(obj["id"]))
        )
        if paid is not None:
            return "ignored: the invoice was paid"
        account.payment_failed = True
        return f"payment failed for invoice {obj['id']}"
    return "ignored: not an event billing handles"


def _account(session: Session, customer: object) -> BillingAccount | None:
    if not isinstance(customer, str):
        return None
    return session.scalar(
        select(BillingAccount).where(BillingAccount.stripe_customer_id == customer)
    )


def _plan_of(settings: Settings, price: str | None) -> str | None:
    for name, plan in settings.billing_plans.items():
        if price is not None and plan.price == price:
            return name
    return None


def _subscription_price(obj: dict[str, Any]) -> str | None:
    items = obj.get("items", {}).get("data") or []
    return str(items[0]["price"]["id"]) if items else None


def _invoice_price(obj: dict[str, Any]) -> str | None:
    """The price of the invoice's first line: ``price.id`` (API versions before 2025-03-31)
    or ``pricing.price_details.price`` (later ones)."""
    lines = obj.get("lines", {}).get("data") or []
    if not lines:
        return None
    line = lines[0]
    if isinstance(line.get("price"), dict):
        return str(line["price"]["id"])
    details = (line.get("pricing") or {}).get("price_details") or {}
    price = details.get("price")
    return str(price) if price else None
