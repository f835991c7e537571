"""A fake Stripe API on loopback, the third-party edge billing tests talk to (the real
``stripe`` package is pointed at it with ERRANDS_STRIPE_API_BASE), and Stripe's webhook
signing scheme for building the events Stripe would send."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header: t=…,v1=HMAC-SHA256(secret, "t.payload")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_id: str, kind: str, obj: dict[str, Any], created: int) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": created,
            "data": {"object": obj},
        }
    ).encode()


class FakeStripe:
    """Customers, Checkout sessions and portal sessions, as form-encoded POSTs to /v1/…;
    every request is kept (path, form, Authorization) for tests to look at."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        n = len(self.requests)
        if path == "/v1/customers":
            return 200, {"id": f"cus_{n}", "object": "customer", "name": form.get("name", [""])[0]}
        if path == "/v1/checkout/sessions":
            if "customer" not in form or "line_items[0][price]" not in form:
                return 400, {"error": {"type": "invalid_request_error", "message": "missing"}}
            sid = f"cs_test_{n}"
            return 200, {
                "id": sid,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/{sid}",
            }
        if path == "/v1/billing_portal/sessions":
            sid = f"bps_{n}"
            return 200, {
                "id": sid,
                "object": "billing_portal.session",
                "url": f"https://billing.stripe.test/{sid}",
            }
        return 404, {"error": {"type": "invalid_request_error", "message": f"no route {path}"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                fake.requests.append((self.path, form, self.headers.get("authorization", "")))
                status, body = fake._answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
