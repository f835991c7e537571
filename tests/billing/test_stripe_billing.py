"""Billing against a fake Stripe API (the real stripe package pointed at it) and webhook
events signed with Stripe's scheme: subscribe → credits granted → a task spends → credits
run out → execution held → invoice paid → resumes; redelivered and out-of-order events
change nothing twice; a bad signature is refused; with billing off no billing route exists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from errands.testing.fake_stripe import FakeStripe, event, sign
from errands.testing.scripted_llm import FAST_RETRY_HEADERS, ChatRequest, Reply, ScriptedLLM
from tests.support import (
    CalcScript,
    Override,
    owner_client,
    price_every_call,
    running_server,
    settings_for,
    wait_for_state,
)

WEBHOOK = "/api/billing/stripe/webhook"
SECRET = "whsec_test_0123456789"
# Calibrated on the scripted calc task at $1 per 1,000 tokens: its research fits in these
# credits, its execution does not (the test asserts both).
PLANS = {
    "small": {"price": "price_small", "monthly_credits_usd": 5, "seats": 2},
    "team": {"price": "price_team", "monthly_credits_usd": 100, "seats": 5},
}


def billing_settings(home: Path, llm_url: str, stripe_url: str, **extra: Any) -> Any:
    return settings_for(
        home,
        llm_url,
        stripe_secret_key="sk_test_fake_key_123",
        stripe_webhook_secret=SECRET,
        stripe_api_base=stripe_url,
        billing_plans=PLANS,
        **extra,
    )


def deliver(client: httpx.Client, body: bytes, secret: str = SECRET) -> httpx.Response:
    return client.post(
        WEBHOOK, content=body, headers={"Stripe-Signature": sign(body, secret), "Authorization": ""}
    )


def subscription(sub: str, customer: str, status: str, price: str) -> dict[str, Any]:
    return {
        "id": sub,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "items": {"data": [{"price": {"id": price}}]},
    }


def invoice(inv: str, customer: str, price: str) -> dict[str, Any]:
    return {
        "id": inv,
        "object": "invoice",
        "customer": customer,
        "lines": {"data": [{"price": {"id": price}}]},
    }


def join(url: str, email: str, link: str) -> httpx.Response:
    """Sign up with the invitation ``link`` an owner was handed (no mail server here)."""
    code = link.rsplit("code=", 1)[1]
    body = {"email": email, "password": "correct horse battery", "invite_code": code}
    return httpx.post(f"{url}/api/auth/signup", json=body)


@contextmanager
def billed_server(home: Path, fake: FakeStripe) -> Iterator[str]:
    """A server with billing on and no worker (no job runs): for the webhook and the pages."""
    settings = billing_settings(home, "http://127.0.0.1:9", fake.base_url)
    with running_server(settings, embedded_worker=False) as url:
        yield url


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


def test_subscribe_spend_run_out_held_paid_resumes(
    sample_repo: Path, home: Path, fake_stripe: FakeStripe
) -> None:
    with (
        ScriptedLLM(CalcScript()) as llm,
        running_server(
            billing_settings(
                home, llm.base_url, fake_stripe.base_url, local_origins=[sample_repo.parent]
            )
        ) as url,
    ):
        client = owner_client(url)
        price_every_call(client)
        started = client.post("/api/billing/checkout", json={"plan": "small"})
        assert started.status_code == 200, started.text
        assert started.json()["url"].startswith("https://checkout.stripe.test/")
        paths = [p for p, _, _ in fake_stripe.requests]
        assert paths == ["/v1/customers", "/v1/checkout/sessions"]
        form = fake_stripe.requests[1][1]
        assert form["line_items[0][price]"] == ["price_small"] and form["mode"] == ["subscription"]
        assert fake_stripe.requests[1][2] == "Bearer sk_test_fake_key_123"
        customer = form["customer"][0]

        # Stripe's events, the invoice before the subscription (Stripe does not order them).
        assert (
            deliver(
                client,
                event("evt_1", "invoice.paid", invoice("in_1", customer, "price_small"), 100),
            ).status_code
            == 200
        )
        sub = subscription("sub_1", customer, "active", "price_small")
        assert (
            deliver(client, event("evt_2", "customer.subscription.created", sub, 99)).status_code
            == 200
        )
        done = {
            "id": "cs_1",
            "object": "checkout.session",
            "customer": customer,
            "subscription": "sub_1",
        }
        assert (
            deliver(client, event("evt_3", "checkout.session.completed", done, 98)).status_code
            == 200
        )
        billing = client.get("/api/billing").json()
        assert billing["plan"] == "small" and billing["status"] == "active"
        assert billing["credits_usd"] == pytest.approx(5)

        project = client.post("/api/projects", json={"origin": str(sample_repo)}).json()
        task_id = client.post(
            "/api/tasks", json={"project": project["id"], "title": "Add multiply", "body": "a*b"}
        ).json()["id"]
        wait_for_state(client, task_id, "awaiting_answers")
        spent = client.get(f"/api/tasks/{task_id}/cost").json()["cost_usd"]
        assert spent > 0
        left = client.get("/api/billing").json()["credits_usd"]
        assert left == pytest.approx(5 - spent)  # a spend per job, from the job's cost

        client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
        held = wait_for_state(client, task_id, "failed")
        assert held["failure_reason"].startswith("Out of credits"), held["failure_reason"]
        assert "/org" in held["failure_reason"]
        committed = [s["commit_sha"] for s in held["subtasks"] if s["state"] == "committed"]
        assert client.get("/api/billing").json()["credits_usd"] >= 0

        # The next month's invoice is paid: credits granted, the task resumes and finishes.
        assert (
            deliver(
                client,
                event("evt_4", "invoice.paid", invoice("in_2", customer, "price_small"), 200),
            ).status_code
            == 200
        )
        assert (
            deliver(
                client,
                event(
                    "evt_5",
                    "customer.subscription.updated",
                    subscription("sub_1", customer, "active", "price_team"),
                    201,
                ),
            ).status_code
            == 200
        )
        assert (
            deliver(
                client, event("evt_6", "invoice.paid", invoice("in_3", customer, "price_team"), 202)
            ).status_code
            == 200
        )
        assert client.post(f"/api/tasks/{task_id}/retry").status_code == 200
        finished = wait_for_state(client, task_id, "in_review")
        assert [s["state"] for s in finished["subtasks"]] == ["committed", "committed"]
        assert [s["commit_sha"] for s in finished["subtasks"]][: len(committed)] == committed


def test_redelivered_and_out_of_order_events_change_nothing_twice(
    home: Path, fake_stripe: FakeStripe
) -> None:
    with billed_server(home, fake_stripe) as url:
        client = owner_client(url)
        client.post("/api/billing/checkout", json={"plan": "team"}).raise_for_status()
        customer = fake_stripe.requests[1][1]["customer"][0]
        paid = event("evt_a", "invoice.paid", invoice("in_a", customer, "price_team"), 10)
        assert "granted" in deliver(client, paid).json()["outcome"]
        assert "redelivery" in deliver(client, paid).json()["outcome"]
        # The same invoice under another event id (Stripe retried with a new event): once.
        again = event("evt_b", "invoice.paid", invoice("in_a", customer, "price_team"), 11)
        assert "already granted" in deliver(client, again).json()["outcome"]
        # A payment failure of the paid invoice, arriving late, changes nothing.
        late = event("evt_c", "invoice.payment_failed", invoice("in_a", customer, "price_team"), 5)
        assert "was paid" in deliver(client, late).json()["outcome"]
        # A newer cancellation, then an older update arriving late: stays cancelled.
        gone = subscription("sub_a", customer, "canceled", "price_team")
        deliver(client, event("evt_d", "customer.subscription.deleted", gone, 50))
        old = subscription("sub_a", customer, "active", "price_team")
        assert (
            "older"
            in deliver(client, event("evt_e", "customer.subscription.updated", old, 40)).json()[
                "outcome"
            ]
        )
        billing = client.get("/api/billing").json()
        assert billing["credits_usd"] == 100 and billing["status"] == "canceled"
        assert billing["plan"] is None and billing["payment_failed"] is False
        portal = client.post("/api/billing/portal")
        assert portal.json()["url"].startswith("https://billing.stripe.test/")
        assert fake_stripe.requests[-1][1]["customer"] == [customer]


def test_bad_signature_refused_and_unknown_plan_is_an_error(
    home: Path, fake_stripe: FakeStripe
) -> None:
    with billed_server(home, fake_stripe) as url:
        client = owner_client(url)
        body = event("evt_x", "invoice.paid", invoice("in_x", "cus_x", "price_team"), 1)
        assert deliver(client, body, secret="whsec_wrong_secret").status_code == 401
        assert client.post(WEBHOOK, content=body).status_code == 401  # unsigned
        stale = sign(body, SECRET, timestamp=1)
        assert (
            client.post(WEBHOOK, content=body, headers={"Stripe-Signature": stale}).status_code
            == 401
        )
        assert deliver(client, body).json()["outcome"].startswith("ignored")  # not our customer
        wrong = client.post("/api/billing/checkout", json={"plan": "gold"})
        assert wrong.status_code == 422 and "Unknown plan" in wrong.text


def test_billing_off_no_billing_route(home: Path) -> None:
    with running_server(settings_for(home, "http://127.0.0.1:9"), embedded_worker=False) as url:
        client = owner_client(url)
        body = event("evt_1", "invoice.paid", invoice("in_1", "cus_1", "p"), 1)
        assert (
            client.post(
                WEBHOOK, content=body, headers={"Stripe-Signature": sign(body, SECRET)}
            ).status_code
            == 404
        )
        assert client.get("/api/billing").status_code == 404
        assert client.post("/api/billing/checkout", json={"plan": "team"}).status_code == 404
        assert not any("/billing" in p for p in client.get("/openapi.json").json()["paths"])


def test_org_page_shows_credits_and_leads_owners_to_stripe(
    home: Path, fake_stripe: FakeStripe
) -> None:
    with billed_server(home, fake_stripe) as url:
        signup = httpx.post(
            f"{url}/api/auth/signup",
            json={"email": "owner@example.test", "password": "correct horse battery"},
        )
        browser = httpx.Client(base_url=url, cookies=signup.cookies, timeout=30)
        csrf = signup.json()["csrf_token"]
        org = browser.get("/org")
        page = org.text
        assert 'id="credits-left">$0' in page and "Subscribe: team" in page
        # The page's policy lets its billing forms be redirected to Stripe (Chromium checks a
        # form's redirects against form-action).
        assert (
            "form-action 'self' https://checkout.stripe.com https://billing.stripe.com;"
            in org.headers["content-security-policy"]
        )
        assert "Manage billing" not in page  # no billing account yet
        go = browser.post("/org/billing/checkout", data={"plan": "team", "csrf_token": csrf})
        assert go.status_code == 303, go.text
        assert go.headers["location"].startswith("https://checkout.stripe.test/")
        customer = fake_stripe.requests[1][1]["customer"][0]
        body = event("evt_p", "invoice.paid", invoice("in_p", customer, "price_team"), 1)
        browser.post(WEBHOOK, content=body, headers={"Stripe-Signature": sign(body, SECRET)})
        page = browser.get("/org").text
        assert 'id="credits-left">$100' in page and "Manage billing" in page
        assert "$100" in browser.get("/usage").text
        portal = browser.post("/org/billing/portal", data={"csrf_token": csrf})
        assert portal.headers["location"].startswith("https://billing.stripe.test/")
        wrong = browser.post("/org/billing/checkout", data={"plan": "gold", "csrf_token": csrf})
        assert wrong.status_code == 422 and "Unknown plan" in wrong.text


def test_invitations_stop_at_the_plans_seats(home: Path, fake_stripe: FakeStripe) -> None:
    with billed_server(home, fake_stripe) as url:
        client = owner_client(url)
        client.post("/api/billing/checkout", json={"plan": "small"}).raise_for_status()
        customer = fake_stripe.requests[1][1]["customer"][0]
        invite = {"email": "a@example.test", "role": "member"}
        sent_a = client.post("/api/invitations", json=invite)
        assert sent_a.status_code == 201  # no plan yet
        sub = subscription("sub_s", customer, "active", "price_small")  # 2 seats
        deliver(client, event("evt_s", "customer.subscription.created", sub, 1))
        refused = client.post(
            "/api/invitations", json={"email": "b@example.test", "role": "member"}
        )
        assert refused.status_code == 409 and "2 seats" in refused.text
        bigger = subscription("sub_s", customer, "active", "price_team")  # 5 seats
        deliver(client, event("evt_t", "customer.subscription.updated", bigger, 2))
        second = {"email": "b@example.test", "role": "member"}
        sent_b = client.post("/api/invitations", json=second)
        assert sent_b.status_code == 201
        # Downgraded with both invitations out: the first to join takes the last seat, the
        # second is refused, and its invitation still works after an upgrade.
        smaller = subscription("sub_s", customer, "active", "price_small")
        deliver(client, event("evt_u", "customer.subscription.updated", smaller, 3))
        assert join(url, "a@example.test", sent_a.json()["link"]).status_code == 201
        refused = join(url, "b@example.test", sent_b.json()["link"])
        assert refused.status_code == 409 and "2 seats" in refused.text, refused.text
        deliver(client, event("evt_v", "customer.subscription.updated", bigger, 4))
        assert join(url, "b@example.test", sent_b.json()["link"]).status_code == 201
        assert len(client.get("/api/members").json()) == 3


def test_no_plan_is_held_and_a_job_failing_through_no_fault_of_the_work_is_refunded(
    sample_repo: Path, home: Path, fake_stripe: FakeStripe
) -> None:
    state = {"down": False}

    def hook(req: ChatRequest, phase: str) -> Reply | None:
        # The model endpoint stays overloaded from subtask 2's second call: past the retries,
        # the execute job fails through no fault of the work.
        if state["down"] and "subtask 2 of 2" in req.user and req.n_assistant == 1:
            return Reply.error(503, "overloaded", headers=FAST_RETRY_HEADERS)
        return None

    with (
        ScriptedLLM(Override(hook)) as llm,
        running_server(
            billing_settings(
                home,
                llm.base_url,
                fake_stripe.base_url,
                local_origins=[sample_repo.parent],
                llm_max_retries=1,
                job_max_attempts=1,
            )
        ) as url,
    ):
        client = owner_client(url)
        price_every_call(client)
        project = client.post("/api/projects", json={"origin": str(sample_repo)}).json()
        task_id = client.post(
            "/api/tasks", json={"project": project["id"], "title": "Add multiply", "body": "a*b"}
        ).json()["id"]
        # Never subscribed: on a billed install that is no credits, and nothing is spent.
        held = wait_for_state(client, task_id, "failed")
        assert "no plan yet" in held["failure_reason"] and "/org" in held["failure_reason"]
        assert llm.requests == [] and client.get("/api/billing").json()["ledger"] == []

        client.post("/api/billing/checkout", json={"plan": "team"}).raise_for_status()
        customer = fake_stripe.requests[1][1]["customer"][0]
        paid = invoice("in_1", customer, "price_team")
        assert deliver(client, event("evt_1", "invoice.paid", paid, 1)).status_code == 200
        assert client.post(f"/api/tasks/{task_id}/retry").status_code == 200
        wait_for_state(client, task_id, "awaiting_answers")
        state["down"] = True
        client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
        failed = wait_for_state(client, task_id, "failed")
        assert "503" in failed["failure_reason"] and "gave up" in failed["failure_reason"]

        billing = client.get("/api/billing").json()
        spends: dict[int, float] = {}
        for line in billing["ledger"]:
            if line["kind"] == "spend":
                spends[line["job_id"]] = spends.get(line["job_id"], 0) + line["usd"]
        research, execute = sorted(spends)
        refunds = [line for line in billing["ledger"] if line["kind"] == "refund"]
        # The execute job's spends come back, once; the research job succeeded: no refund.
        assert [(r["job_id"], r["task_id"]) for r in refunds] == [(execute, task_id)]
        assert refunds[0]["usd"] == pytest.approx(-spends[execute])
        assert billing["credits_usd"] == pytest.approx(100 + spends[research])
        kinds = [e["kind"] for e in client.get(f"/api/tasks/{task_id}/events").json()]
        assert kinds.count("credits.refunded") == 1
        usage = client.get("/usage").text
        assert 'id="ledger"' in usage and "Refunded (failed job)" in usage
        assert "invoice in_1" in usage
