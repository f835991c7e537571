"""Outgoing webhooks: a signed JSON POST to a URL a user typed in, which is hostile input.

The URL's host is resolved when the request is made, every address it resolves to must be
public (or inside ``ERRANDS_WEBHOOK_ALLOWED_NETWORKS``), and the connection goes to the
address that was checked, so a name that resolves to a public address for the check and to
127.0.0.1 for the connection (DNS rebinding) reaches nothing internal. Redirects are not
followed and no proxy from the environment is used.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
import typing
from typing import Any
from urllib.parse import urlsplit

import httpcore

from errands.errors import ConfigError, ErrandsError

TIMEOUT = 10.0  # seconds to connect, and to wait for the answer
SIGNATURE_HEADER = "X-Errands-Signature-256"
TIMESTAMP_HEADER = "X-Errands-Timestamp"
DELIVERY_HEADER = "X-Errands-Delivery"
EVENT_HEADER = "X-Errands-Event"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ErrandsError):
    """The URL names an address webhooks may not reach: never retried."""

    code = "webhook_refused"
    status = 422


class WebhookFailed(ErrandsError):
    """The receiver could not be reached or did not answer 2xx: retried with backoff."""

    code = "webhook_failed"
    status = 502
    retryable = True


def networks(allowed: list[str]) -> list[Network]:
    try:
        return [ipaddress.ip_network(cidr, strict=False) for cidr in allowed]
    except ValueError as exc:
        raise ConfigError(f"ERRANDS_WEBHOOK_ALLOWED_NETWORKS: {exc}") from exc


def check_address(address: Address, allowed: list[Network]) -> None:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        address = mapped
    if any(address in net for net in allowed):
        return
    if not address.is_global or address.is_multicast:
        raise WebhookRefused(
            f"The webhook's host resolves to {address}, an internal address; webhooks go only "
            "to public addresses unless ERRANDS_WEBHOOK_ALLOWED_NETWORKS lists its network."
        )


class _CheckedBackend(httpcore.SyncBackend):
    """Connects only to addresses that pass ``check_address``, and to exactly those."""

    def __init__(self, allowed: list[Network]) -> None:
        self.allowed = allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise WebhookFailed(f"The webhook's host {host!r} does not resolve: {exc}") from exc
        # Scoped IPv6 addresses carry their interface after a %.
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:  # every one: the resolver's order may change
            check_address(address, self.allowed)
        return super().connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` HMAC of ``<timestamp>.<body>``: the timestamp is signed too, so a
    receiver can refuse an old delivery replayed."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def post(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str,
    delivery: str,
    event: str,
    allowed: list[str],
) -> int:
    """POST ``payload`` signed; the status on 2xx, else ``WebhookFailed``/``WebhookRefused``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"{url!r} is not an http(s) URL.")
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers: dict[bytes | str, bytes | str] = {
        "Content-Type": "application/json",
        "User-Agent": "errands-notifications",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: delivery,
        EVENT_HEADER: event,
    }
    pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(),
        network_backend=_CheckedBackend(networks(allowed)),
        max_connections=1,
    )
    timeouts = {"connect": TIMEOUT, "read": TIMEOUT, "write": TIMEOUT, "pool": TIMEOUT}
    try:
        with pool:
            response = pool.request(
                "POST", url, headers=headers, content=body, extensions={"timeout": timeouts}
            )
    except (WebhookRefused, WebhookFailed):
        raise
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise WebhookFailed(f"The webhook could not be reached: {type(exc).__name__}") from exc
    except OSError as exc:
        raise WebhookFailed(f"The webhook could not be reached: {exc}") from exc
    if not 200 <= response.status < 300:
        raise WebhookFailed(f"The webhook answered HTTP {response.status}.")
    return response.status
