"""``X-Hub-Signature-256``: HMAC-SHA256 of the raw request body with the webhook secret."""

from __future__ import annotations

import hashlib
import hmac

from errands.github.errors import WebhookUnauthorized

PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{PREFIX}{digest}"


def verify(secret: str, body: bytes, header: str | None) -> None:
    """Raise :class:`WebhookUnauthorized` unless ``header`` signs ``body`` with ``secret``.

    The comparison is constant-time (``hmac.compare_digest``) so the answer's timing does
    not reveal how much of a forged signature was right. The body must be the bytes as
    received: re-serialised JSON would not match.
    """
    signature = verify_present(header)
    expected = sign(secret, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookUnauthorized("X-Hub-Signature-256 does not match the body.")


def verify_present(header: str | None) -> str:
    """The cheap check that can run before the body is read: a sha256 signature is there."""
    if not header:
        raise WebhookUnauthorized("The X-Hub-Signature-256 header is missing.")
    if not header.startswith(PREFIX):
        raise WebhookUnauthorized("X-Hub-Signature-256 is not a sha256= signature.")
    return header
