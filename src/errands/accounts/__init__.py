"""Accounts and teams: users, organizations and roles, sessions and API tokens, invitations
and email codes, encrypted organization secrets, model prices and budgets, the audit log.

Until the first account exists Errands runs in single-user local mode: every route is open
to whoever reaches the (loopback) server, exactly as before accounts existed. Signing up the
first user creates the first organization, adopts every existing project into it, and from
then on every route requires a session or an API token (see ``access``).
"""
