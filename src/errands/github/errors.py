"""GitHub's failures, translated into Errands' own exception tree at the HTTP boundary."""

from __future__ import annotations

from errands.errors import ErrandsError, MergeConflict


class GitHubError(ErrandsError):
    """GitHub answered with an error, or could not be reached, after our retries."""

    code = "github_error"
    status = 502

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class GitHubNotConfigured(ErrandsError):
    code = "github_not_configured"
    status = 400


class RateLimited(GitHubError):
    """GitHub asked us to wait longer than we are willing to block a job for."""

    code = "github_rate_limited"
    status = 503
    # The job ledger retries retryable errors later, with back-off.
    retryable = True

    def __init__(self, message: str, *, wait: float) -> None:
        super().__init__(message, http_status=429)
        self.wait = wait


class WebhookUnauthorized(ErrandsError):
    """Missing or wrong ``X-Hub-Signature-256``: the request is not from GitHub."""

    code = "bad_signature"
    status = 401


class MalformedWebhook(ErrandsError):
    code = "malformed_webhook"
    status = 400


class WebhookTooLarge(ErrandsError):
    code = "payload_too_large"
    status = 413


class PullNotMergeable(MergeConflict):
    """GitHub refused the squash-merge (conflicts, failing required checks, a moved head).
    A MergeConflict, so the task stays in review with the reason, as a local conflict does."""

    code = "pull_not_mergeable"
