"""Stripe's API, the calls Errands makes: a customer per organization, a Checkout session
for a plan's subscription, a customer-portal session. Stripe's errors become StripeFailed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import stripe
from stripe._base_address import BaseAddresses

from errands.billing.errors import StripeFailed
from errands.settings import Settings

T = TypeVar("T")


def client(settings: Settings) -> stripe.StripeClient:
    assert settings.stripe_secret_key is not None  # routes exist only when billing is on
    base: BaseAddresses | None = (
        {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    )
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(), base_addresses=base, max_network_retries=1
    )


def _call(work: Callable[[], T]) -> T:
    try:
        return work()
    except stripe.StripeError as exc:
        raise StripeFailed(
            f"Stripe refused or could not be reached: {exc.user_message or exc}"
        ) from exc


def create_customer(settings: Settings, org_id: int, name: str) -> str:
    api = client(settings)
    customer = _call(
        lambda: api.v1.customers.create(
            params={"name": name, "metadata": {"errands_org_id": str(org_id)}}
        )
    )
    return str(customer.id)


def checkout_url(settings: Settings, customer: str, price: str, org_id: int, back: str) -> str:
    api = client(settings)
    session = _call(
        lambda: api.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer,
                "client_reference_id": str(org_id),
                "line_items": [{"price": price, "quantity": 1}],
                "success_url": f"{back}?billing=done",
                "cancel_url": f"{back}?billing=cancelled",
            }
        )
    )
    if not session.url:
        raise StripeFailed("Stripe created a Checkout session without a URL.")
    return str(session.url)


def portal_url(settings: Settings, customer: str, back: str) -> str:
    api = client(settings)
    session = _call(
        lambda: api.v1.billing_portal.sessions.create(
            params={"customer": customer, "return_url": back}
        )
    )
    return str(session.url)
