"""What model calls cost: a price table per model (built-in defaults an owner can override
per organization), cost per job at the prices of the moment, and sums per task, project and
organization. Amounts are integers in millionths of a US dollar ("micros"): with prices in
dollars per million tokens, a call costs ``tokens * price`` micros."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from errands.accounts.service import now, project_org_id
from errands.errors import ConfigError, InvalidInput
from errands.limits import MAX_BUDGET_USD, MAX_PRICE_PER_MTOK, finite_dollars
from errands.settings import Phase, Settings
from errands.store import Database, Job, ModelPrice, Project, Task

# US dollars per million tokens (input, output), from the providers' public price lists.
# Models a provider has retired keep their rows: jobs that ran on them are still priced.
# Models priced by prompt length (Claude Haiku 5.5, OpenAI's gpt-6 family) are left out: one
# flat rate would undercount a long prompt, and budgets must not; an owner can set one.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-opus-5-5": (4.00, 20.00),
    "claude-sonnet-5-5": (2.00, 10.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    # The standard rate: Google's introductory half price ends on 2026-12-31.
    "gemini-3.8-flash": (1.50, 7.50),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
}


@dataclass(frozen=True)
class Price:
    model: str
    input_per_mtok: float
    output_per_mtok: float
    custom: bool  # set by the organization, not the built-in default


def model_key(model: str) -> str:
    """``openai:gpt-4.1`` and ``gpt-4.1`` are priced alike."""
    return model.split(":", 1)[1] if ":" in model else model


def price_table(session: Session, org_id: int | None) -> list[Price]:
    prices = {m: Price(m, i, o, False) for m, (i, o) in DEFAULT_PRICES.items()}
    if org_id is not None:
        for row in session.scalars(select(ModelPrice).where(ModelPrice.org_id == org_id)):
            prices[row.model] = Price(row.model, row.input_per_mtok, row.output_per_mtok, True)
    return sorted(prices.values(), key=lambda p: p.model)


# A provider's dated snapshot or alias of a model: "claude-sonnet-4-5-20250929",
# "gpt-4.1-2025-04-14", "claude-3-7-sonnet-latest".
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def price_for(session: Session, org_id: int | None, model: str) -> Price | None:
    """The price of ``model``; a dated snapshot (as providers name the model in their answers
    and as CLIs ask for it) costs what its model costs unless it has a price of its own."""
    key = model_key(model)
    for name in dict.fromkeys((key, _SNAPSHOT.sub("", key))):
        if org_id is not None:
            row = session.get(ModelPrice, (org_id, name))
            if row is not None:
                return Price(name, row.input_per_mtok, row.output_per_mtok, True)
        default = DEFAULT_PRICES.get(name)
        if default:
            return Price(name, *default, False)
    return None


def set_price(
    session: Session, org_id: int, model: str, input_per_mtok: float, output_per_mtok: float
) -> Price:
    key = model_key(model.strip())
    if not key or len(key) > 200:
        raise InvalidInput("Name the model, e.g. gpt-4.1 or claude-sonnet-5-5.")
    for price in (input_per_mtok, output_per_mtok):
        finite_dollars(price, "A price per million tokens", MAX_PRICE_PER_MTOK)
    row = session.get(ModelPrice, (org_id, key))
    if row is None:
        row = ModelPrice(org_id=org_id, model=key, input_per_mtok=0.0, output_per_mtok=0.0)
        session.add(row)
    row.input_per_mtok = input_per_mtok
    row.output_per_mtok = output_per_mtok
    return Price(key, input_per_mtok, output_per_mtok, True)


def unpriced_models(session: Session, org_id: int | None, settings: Settings) -> list[str]:
    """The configured models Errands knows no price for: their calls are counted in tokens
    and cost nothing here, which a page must not present as free."""
    names: set[str] = set()
    for phase in get_args(Phase):
        try:
            names.add(settings.model_for(phase))
        except ConfigError:
            continue
    return sorted(model_key(n) for n in names if price_for(session, org_id, n) is None)


def call_cost(price: Price | None, input_tokens: int, output_tokens: int) -> int:
    if price is None:
        return 0
    return round(input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok)


def add_job_cost(
    db: Database, job_id: int, model: str, input_tokens: int, output_tokens: int
) -> int:
    """Price a job's model usage at this moment's prices and add it to the job."""
    with db.session() as session:
        project = session.scalar(
            select(Project).join(Job, Job.project_id == Project.id).where(Job.id == job_id)
        )
        org_id = project_org_id(session, project) if project is not None else None
        micros = call_cost(price_for(session, org_id, model), input_tokens, output_tokens)
        if micros:
            session.execute(
                update(Job).where(Job.id == job_id).values(cost_micros=Job.cost_micros + micros)
            )
            if org_id is not None:
                from errands.accounts import credits  # it imports this module

                credits.record_spend(session, org_id, job_id, micros)
        return micros


def task_cost(session: Session, task_id: int) -> int:
    return int(session.scalar(select(func.sum(Job.cost_micros)).where(Job.task_id == task_id)) or 0)


def cost_by_task(session: Session, task_ids: list[int]) -> dict[int, int]:
    if not task_ids:
        return {}
    rows = session.execute(
        select(Job.task_id, func.sum(Job.cost_micros))
        .where(Job.task_id.in_(task_ids))
        .group_by(Job.task_id)
    )
    return {int(task_id): int(total or 0) for task_id, total in rows if task_id is not None}


def month_start(moment: datetime | None = None) -> datetime:
    moment = moment or now()
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _org_projects(session: Session, org_id: int) -> list[int]:
    return [p.id for p in session.scalars(select(Project)) if project_org_id(session, p) == org_id]


def org_month_cost(session: Session, org_id: int) -> int:
    projects = _org_projects(session, org_id)
    if not projects:
        return 0
    started = func.coalesce(Job.started_at, Job.created_at)
    total = session.scalar(
        select(func.sum(Job.cost_micros)).where(
            Job.project_id.in_(projects), started >= month_start()
        )
    )
    return int(total or 0)


@dataclass(frozen=True)
class UsageRow:
    project: str
    task_id: int | None
    title: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


def org_usage(session: Session, org_id: int | None, since: datetime) -> list[UsageRow]:
    """Usage per task since a moment (jobs of a project without a task, e.g. indexing, are
    one row per project), most expensive first."""
    projects = (
        [p.id for p in session.scalars(select(Project))]
        if org_id is None
        else _org_projects(session, org_id)
    )
    if not projects:
        return []
    started = func.coalesce(Job.started_at, Job.created_at)
    rows = session.execute(
        select(
            Project.name,
            Job.task_id,
            Task.title,
            func.sum(Job.model_requests),
            func.sum(Job.input_tokens),
            func.sum(Job.output_tokens),
            func.sum(Job.cost_micros),
        )
        .join(Project, Project.id == Job.project_id)
        .outerjoin(Task, Task.id == Job.task_id)
        .where(Job.project_id.in_(projects), started >= since)
        .group_by(Project.name, Job.task_id, Task.title)
    )
    found = [
        UsageRow(name, task_id, title or "", int(r or 0), int(i or 0), int(o or 0), int(c or 0))
        for name, task_id, title, r, i, o, c in rows
    ]
    return sorted(found, key=lambda row: (-row.cost_micros, row.project, row.task_id or 0))


def dollars(micros: int | None) -> str:
    value = (micros or 0) / 1_000_000
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def to_micros(dollars_value: float | None) -> int | None:
    if dollars_value is None:
        return None
    return round(finite_dollars(dollars_value, "A budget", MAX_BUDGET_USD) * 1_000_000)
