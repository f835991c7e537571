"""The egress proxy for the agent of one subtask (errands.egress): opened when an executor
first asks for a way out to its model, closed when the subtask ends.

Every model call the agent makes from inside the sandbox goes through it: the real key is
put on there, the call is metered under the job (JobMeter: usage, cost, events) and refused
before it leaves when the task's or organization's budget is spent. Such a refusal ends the
agent's turn as BudgetReached, whatever the agent made of the 403 it got.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from errands.accounts.errors import BudgetReached
from errands.egress import PLACEHOLDER_KEY, EgressConfig, EgressProxy, egress_proxy, model_routes
from errands.errors import ConfigError
from errands.executors import EgressEndpoint, Provider
from errands.sandbox import Backend, SandboxPolicy, create_sandbox
from errands.workflow.context import JobContext
from errands.workflow.metering import JobMeter


class AgentEgress:
    def __init__(
        self, ctx: JobContext, backend: Backend, policy: SandboxPolicy, stack: ExitStack
    ) -> None:
        self.ctx = ctx
        self.backend = backend
        self.policy = policy
        self.stack = stack
        self.proxy: EgressProxy | None = None

    def __call__(self, provider: Provider) -> EgressEndpoint:
        if self.proxy is None:
            config = EgressConfig(routes=model_routes(self.ctx.settings))
            self.proxy = self.stack.enter_context(egress_proxy(config, meter=JobMeter(self.ctx)))
        if not any(route.name == provider for route in self.proxy.config.routes):
            raise ConfigError(
                f"The agent needs a {provider} model endpoint, and none is configured: set "
                f"{provider.upper()}_API_KEY (and its base URL for a gateway or local server)."
            )
        sandbox = create_sandbox(self.backend, replace(self.policy, egress=self.proxy.grant))
        # The route's address inside the sandbox (also in the grant's environment).
        return EgressEndpoint(f"{self.proxy.origin}/{provider}", PLACEHOLDER_KEY, sandbox)

    def check(self) -> None:
        """After each turn: a call refused for a spent budget stops the subtask."""
        for refusal in self.proxy.refusals if self.proxy is not None else ():
            if refusal.code == "budget_reached":
                raise BudgetReached(refusal.message)
