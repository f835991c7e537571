"""The security headers' values (the browser tests hold pages to them)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from errands.accounts.access import PUBLIC
from errands.web.app import create_app
from errands.web.headers import OTHER_POLICY, docs_headers, html_headers
from tests.support import settings_for


def test_billing_lets_its_forms_lead_to_stripe_only() -> None:
    plain = html_headers()["Content-Security-Policy"]
    billing = html_headers(billing=True)["Content-Security-Policy"]
    assert "form-action 'self';" in plain and "stripe" not in plain
    assert "form-action 'self' https://checkout.stripe.com https://billing.stripe.com;" in billing
    assert plain.replace("form-action 'self';", "") == billing.replace(
        "form-action 'self' https://checkout.stripe.com https://billing.stripe.com;", ""
    )


def test_a_documentation_page_names_its_inline_scripts_by_hash() -> None:
    body = b'<script src="https://cdn.jsdelivr.net/x.js"></script><script>\nrun(1)\n</script>'
    digest = base64.b64encode(hashlib.sha256(b"\nrun(1)\n").digest()).decode()
    policy = docs_headers(body)["Content-Security-Policy"]
    assert f"script-src 'self' https://cdn.jsdelivr.net 'sha256-{digest}';" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_an_unexpected_error_carries_the_headers(home: Path) -> None:
    """A route that fails unexpectedly is answered from outside every middleware (Starlette's
    ServerErrorMiddleware): its page and its JSON must carry the headers all the same."""
    app = create_app(settings_for(home, "http://127.0.0.1:9/v1"))

    @app.get("/boom", dependencies=[PUBLIC])
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        html = client.get("/boom", headers={"Accept": "text/html"})
        assert html.status_code == 500 and "Something went wrong" in html.text
        assert html.headers["content-security-policy"] == html_headers()["Content-Security-Policy"]
        assert html.headers["x-frame-options"] == "DENY"
        answer = client.get("/boom", headers={"Accept": "application/json"})
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
        assert answer.headers["content-security-policy"] == OTHER_POLICY
        for response in (html, answer):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
        # A page that passes through the middleware has them once, not twice.
        login = client.get("/login", headers={"Accept": "text/html"})
        assert login.headers.get_list("content-security-policy") == [
            html_headers()["Content-Security-Policy"]
        ]
