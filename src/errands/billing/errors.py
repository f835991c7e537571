from __future__ import annotations

from errands.errors import ErrandsError


class StripeFailed(ErrandsError):
    """Stripe answered with an error, or could not be reached."""

    code = "stripe_error"
    status = 502


class StripeSignatureInvalid(ErrandsError):
    """Missing, wrong or stale ``Stripe-Signature``: the request is not from Stripe."""

    code = "bad_signature"
    status = 401


class MalformedStripeEvent(ErrandsError):
    code = "malformed_event"
    status = 400
