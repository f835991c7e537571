"""Billing for hosted installs (optional, off unless configured): plans, credits and Stripe.

errands.accounts.credits is the ledger (no Stripe in it); this package is Stripe's side:
Checkout and the customer portal (stripe_api), the signed webhook events that keep an
organization's plan and credits current (webhook), and their routes (routes), mounted only
when ``Settings.billing_enabled``."""
