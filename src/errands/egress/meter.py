"""The seam between the proxy and whoever pays: asked before each model call, told after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from errands.egress.routes import Protocol as CallProtocol
from errands.egress.routes import Provider
from errands.egress.usage import Usage


@dataclass(frozen=True)
class ModelCall:
    route: Provider
    protocol: CallProtocol
    model: str  # as the request named it ("" when it named none)
    stream: bool
    request_chars: int = 0  # the size of the request's body: what the call will read


@dataclass(frozen=True)
class Refusal:
    code: str  # not_allowed, budget_reached, unreachable, bad_request, …
    target: str  # what was asked, e.g. "POST /anthropic/api/event_logging/batch"
    message: str


class Meter(Protocol):
    def check_before(self, call: ModelCall) -> None:
        """Raise (an ErrandsError saying why, e.g. BudgetReached) to refuse the call before
        it is sent. Runs in a worker thread: it may block on the store."""

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        """The call was answered; ``usage`` is what the provider reported (None when it
        reported nothing, e.g. an error answer or a stream cut short)."""

    def refused(self, refusal: Refusal) -> None:
        """The proxy refused a request (not allowed, over budget, unreachable): for the
        job's record. Must not raise."""


class Unmetered:
    """For sandboxes that make no model calls (setup commands' package downloads)."""

    def check_before(self, call: ModelCall) -> None:
        return None

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        return None

    def refused(self, refusal: Refusal) -> None:
        return None
