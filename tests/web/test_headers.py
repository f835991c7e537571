"""The security headers' values (the browser tests hold pages to them)."""

from __future__ import annotations

import base64
import hashlib

from errands.web.headers import docs_headers, html_headers


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
