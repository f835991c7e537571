"""Errors of accounts, access and budgets (part of Errands' exception tree)."""

from __future__ import annotations

from errands.errors import Conflict, ErrandsError


class Unauthenticated(ErrandsError):
    """No valid session or API token (or wrong credentials)."""

    code = "unauthenticated"
    status = 401


class Forbidden(ErrandsError):
    """Signed in, but the role does not allow this (or a CSRF token is missing)."""

    code = "forbidden"
    status = 403


class BudgetReached(Conflict):
    """Spending would pass a task's or an organization's cap: raised before a model call, so
    the work already committed stays and the task can resume once the cap is raised."""

    code = "budget_reached"


class TooManyAttempts(ErrandsError):
    """Too many failed sign-ins (or codes) in a row from this account or address: the next
    attempt must wait ``retry_after`` seconds (sent as Retry-After)."""

    code = "too_many_attempts"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
