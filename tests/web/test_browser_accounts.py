"""Invitation, email verification and password reset end to end in the browser, with the
emails going over real SMTP to a server on loopback (aiosmtpd) that the test reads."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.smtp import Inbox
from tests.support import running_server, settings_for

PASSWORD = "correct horse battery"


def submit(page: Page, form: str) -> None:
    with page.expect_navigation():
        page.locator(f"{form} button[type=submit]").click()


def test_invitation_verification_and_password_reset_in_the_browser(
    home: Path,
    inbox: tuple[Inbox, int],
    chromium: Browser,
) -> None:
    mails, port = inbox
    settings = settings_for(
        home, "http://127.0.0.1:9/v1", smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none"
    )
    with running_server(settings) as url:
        owner = chromium.new_context(base_url=url).new_page()
        owner.goto("/")  # single-user mode: the board, no sign-in
        expect(owner.locator("h1, h2").first).to_be_visible()
        assert owner.url == f"{url}/"
        owner.goto("/signup")
        owner.fill("#s-email", "owner@example.test")
        owner.fill("#s-org", "Example")
        owner.fill("#s-password", PASSWORD)
        submit(owner, "#signup-form")
        expect(owner.locator(".who")).to_contain_text("owner@example.test (owner)")

        # Invite a member: the email goes over SMTP.
        owner.goto("/org")
        owner.fill("#invite-form input[name=email]", "bob@example.test")
        submit(owner, "#invite-form")
        expect(owner.locator(".flash")).to_contain_text("Invitation sent to bob@example.test")
        invitation = mails.code_for("bob@example.test", "invited")

        bob = chromium.new_context(base_url=url).new_page()
        bob.goto(f"/signup?code={invitation}")
        bob.fill("#s-email", "bob@example.test")
        bob.fill("#s-password", PASSWORD)
        submit(bob, "#signup-form")
        expect(bob.locator(".who")).to_contain_text("bob@example.test (member)")
        # The invitation works once.
        again = chromium.new_context(base_url=url).new_page()
        again.goto(f"/signup?code={invitation}")
        again.fill("#s-email", "bob@example.test")
        again.fill("#s-password", PASSWORD)
        submit(again, "#signup-form")
        expect(again.locator(".flash.error")).to_be_visible()

        # The owner verifies their address with a code sent by email.
        owner.goto("/account")
        expect(owner.locator("#email-state")).to_have_text("Not verified yet.")
        submit(owner, "form[action='/account/verify']")
        code = mails.code_for("owner@example.test", "Verify")
        owner.fill("#verify-form input[name=code]", code)
        submit(owner, "#verify-form")
        expect(owner.locator("#email-state")).to_have_text("Verified.")

        # Bob forgot his password: reset by email, then sign in with the new one.
        stranger = chromium.new_context(base_url=url).new_page()
        stranger.goto("/reset")
        stranger.fill("#r-email", "bob@example.test")
        submit(stranger, "#reset-request")
        reset = mails.code_for("bob@example.test", "Reset")
        stranger.fill("#r-code", reset)
        stranger.fill("#r-password", "a brand new password")
        submit(stranger, "#reset-confirm")
        expect(stranger).to_have_url(re.compile(r"/login\?reset=1"))
        stranger.fill("#l-email", "bob@example.test")
        stranger.fill("#l-password", PASSWORD)
        submit(stranger, "#login-form")
        expect(stranger.locator(".flash.error")).to_contain_text("Wrong email address or password")
        stranger.fill("#l-email", "bob@example.test")
        stranger.fill("#l-password", "a brand new password")
        submit(stranger, "#login-form")
        expect(stranger.locator(".who")).to_contain_text("bob@example.test")
        # The reset signed Bob's other sessions out.
        bob.goto("/")
        expect(bob).to_have_url(re.compile(r"/login"))
