"""A job's ``Meter`` for the egress proxy: the same budgets and the same per-job usage and
cost as the native loop's model calls (``JobContext.check_budget``/``usage``), for the calls
a third-party agent makes from inside the sandbox."""

from __future__ import annotations

import logging

from errands.accounts import budget, cost
from errands.agent.context import CHARS_PER_TOKEN
from errands.egress import ModelCall, Refusal, Usage
from errands.jobs import ledger
from errands.workflow.context import JobContext

log = logging.getLogger(__name__)


class JobMeter:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        # Output tokens of the longest answer so far: the next answer's estimate, as the
        # native loop estimates it.
        self.largest_answer = 0

    def check_before(self, call: ModelCall) -> None:
        """Before the call leaves: a cancelled job, a spent task or organization cap, a cap
        the call would pass (estimated as the native loop does: its request's characters at
        CHARS_PER_TOKEN, the longest answer so far), or a model without a price while a cap
        applies, refuse it (the upstream never sees it)."""
        self.ctx.check_cancelled()
        budget.check(
            self.ctx.db,
            task_id=self.ctx.lease.task_id,
            project_id=self.ctx.lease.project_id,
            model=call.model,
            next_input=call.request_chars // CHARS_PER_TOKEN,
            next_output=self.largest_answer,
            unpriced_refused=True,
        )

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        ctx = self.ctx
        # The model the request named is the one the budget check priced.
        model = call.model or (usage.model if usage is not None else None) or ""
        tokens_in = usage.input_tokens if usage is not None else 0
        tokens_out = usage.output_tokens if usage is not None else 0
        self.largest_answer = max(self.largest_answer, tokens_out)
        # Not fenced, like JobContext.usage: a stale attempt's calls cost money all the same.
        ledger.add_usage(
            ctx.services.db,
            ctx.lease.job_id,
            requests=1,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )
        micros = cost.add_job_cost(ctx.services.db, ctx.lease.job_id, model, tokens_in, tokens_out)
        if usage is None:
            message = (
                f"egress: {call.route} {model or '?'} answered without usage: counted as one "
                "request, no tokens"
            )
        else:
            message = (
                f"egress: {call.route} {model or '?'} ({tokens_in} in / {tokens_out} out tokens, "
                f"{cost.dollars(micros)})"
            )
        self._emit(
            "egress.call",
            message,
            route=call.route,
            protocol=call.protocol,
            model=model,
            stream=call.stream,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_micros=micros,
            metered=usage is not None,
        )

    def refused(self, refusal: Refusal) -> None:
        self._emit(
            "egress.refused",
            f"egress proxy refused {refusal.target}: {refusal.message}",
            code=refusal.code,
            target=refusal.target,
        )

    def _emit(self, kind: str, message: str, **data: object) -> None:
        try:
            self.ctx.emit(kind, message, **data)
        except Exception:  # a stale attempt's event is refused; the proxy must go on
            log.warning("could not record %s for job %s", kind, self.ctx.lease.job_id)
