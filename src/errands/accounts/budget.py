"""Spending caps: per task (its own, for all time) and per organization (per calendar month,
UTC). Checked before every model call, counting the usage of the agent run in flight that is
not recorded yet and an estimate of the call itself, so a job stops *before* the call that
the cap no longer covers: once the cap is spent, or when the call would pass it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from errands.accounts import cost, credits
from errands.accounts.errors import BudgetReached
from errands.accounts.service import project_org_id
from errands.store import Database, Organization, Project, Task


def check(
    db: Database,
    *,
    task_id: int | None,
    project_id: int,
    model: str,
    pending_input: int = 0,
    pending_output: int = 0,
    next_input: int = 0,
    next_output: int = 0,
    unpriced_refused: bool = False,
) -> None:
    """Raise BudgetReached once a cap is spent, or when the call about to be made (estimated
    at ``next_input``/``next_output`` tokens) would pass it. With ``unpriced_refused``, also
    when a cap applies and ``model`` has no price (its calls would count as free): for the
    egress proxy, where the sandbox names the model."""
    with db.session() as session:
        project = session.get(Project, project_id)
        org_id = project_org_id(session, project) if project is not None else None
        price = cost.price_for(session, org_id, model)
        pending = cost.call_cost(price, pending_input, pending_output)
        upcoming = cost.call_cost(price, next_input, next_output)
        task = session.get(Task, task_id) if task_id is not None else None
        org = session.get(Organization, org_id) if org_id is not None else None
        capped = (task is not None and task.budget_micros is not None) or (
            org is not None
            and (org.monthly_budget_micros is not None or credits.billed(session, org.id))
        )
        if unpriced_refused and capped and price is None:
            raise BudgetReached(
                f"Budget cannot be enforced: the model {model or '(none named)'!r} has no "
                "price, so its calls would count as free under a spending cap. An owner can "
                "set its price per million tokens on the Usage page."
            )
        if task is not None and task.budget_micros is not None:
            spent = cost.task_cost(session, task.id) + pending
            if spent >= task.budget_micros or spent + upcoming > task.budget_micros:
                raise BudgetReached(
                    f"Budget reached: task {task.id} has spent {cost.dollars(spent)} of its "
                    f"{cost.dollars(task.budget_micros)} cap{_next_call(upcoming)}. The work "
                    "committed so far is kept; raise the task's budget and retry to go on."
                )
        if org_id is not None:
            problem = org_over_budget(session, org_id, pending, upcoming)
            if problem:
                raise BudgetReached(problem)


def org_over_budget(
    session: Session, org_id: int, pending: int = 0, upcoming: int = 0
) -> str | None:
    """Why the organization may not spend more: out of credits (billing), or over its
    monthly cap (``upcoming``: the estimated cost of the call about to be made), or None."""
    out = credits.out_of_credits(session, org_id, pending, upcoming)
    if out is not None:
        return out
    org = session.get(Organization, org_id)
    if org is None or org.monthly_budget_micros is None:
        return None
    spent = cost.org_month_cost(session, org_id) + pending
    if spent < org.monthly_budget_micros and spent + upcoming <= org.monthly_budget_micros:
        return None
    return (
        f"Budget reached: the organization has spent {cost.dollars(spent)} this month, its cap "
        f"is {cost.dollars(org.monthly_budget_micros)}{_next_call(upcoming)}. An owner can "
        "raise the monthly budget; then retry."
    )


def _next_call(upcoming: int) -> str:
    return (
        f", and the next model call (about {cost.dollars(upcoming)}) would pass it"
        if upcoming
        else ""
    )


def project_over_budget(session: Session, project: Project) -> str | None:
    org_id = project_org_id(session, project)
    return org_over_budget(session, org_id) if org_id is not None else None


def task_budget_reached(session: Session, task: Task) -> bool:
    return task.budget_micros is not None and cost.task_cost(session, task.id) >= task.budget_micros
