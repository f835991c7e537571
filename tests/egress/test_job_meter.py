"""The job's meter behind the proxy: the budgets the native loop obeys (a task's cap, the
organization's monthly cap) stop a proxied call before it reaches the upstream; usage and cost
land on the job; the refusal is an event; the real key appears in no event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from errands.domain import JobKind
from errands.egress import EgressConfig, egress_proxy, model_routes
from errands.jobs import ledger
from errands.settings import Settings
from errands.store import Database, Event, Job, Organization, Project, Task
from errands.workflow.context import JobContext, Services
from errands.workflow.metering import JobMeter
from tests.egress.conftest import ANTHROPIC_KEY, ANTHROPIC_USAGE, OPENAI_KEY, Edge, client_for

SONNET_IN, SONNET_OUT = 3.00, 15.00  # claude-sonnet-4-5's built-in price per Mtok
CALL_INPUT = ANTHROPIC_USAGE["input_tokens"] + ANTHROPIC_USAGE["cache_read_input_tokens"]
CALL_MICROS = round(CALL_INPUT * SONNET_IN + ANTHROPIC_USAGE["output_tokens"] * SONNET_OUT)
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/errands.db")
    database.migrate()
    yield database
    database.dispose()


def job_context(db: Database, edge: Edge, tmp_path: Path, *, budget: int | None) -> JobContext:
    with db.session() as session:
        org = Organization(name="acme")
        session.add(org)
        session.flush()
        project = Project(name="demo", origin="/src/demo", base_branch="main", org_id=org.id)
        session.add(project)
        session.flush()
        task = Task(
            project_id=project.id,
            title="t",
            state="executing",
            base_branch="main",
            budget_micros=budget,
        )
        session.add(task)
        session.flush()
        ledger.enqueue(session, JobKind.EXECUTE, project_id=project.id, task_id=task.id)
    lease = ledger.claim(db, "worker", 600)
    assert lease is not None
    settings = Settings(
        home=tmp_path / "home",
        model="anthropic:claude-sonnet-4-5",
        anthropic_api_key=ANTHROPIC_KEY,
        anthropic_base_url=edge.url,
        openai_api_key=OPENAI_KEY,
        openai_base_url=f"{edge.url}/v1",
    )

    def no_model(*_: object) -> object:
        raise AssertionError("the native loop is not used here")

    services = Services(db=db, settings=settings, model_factory=no_model)  # type: ignore[arg-type]
    return JobContext(services, lease, threading.Event())


@contextmanager
def metered_client(ctx: JobContext) -> Iterator[httpx.Client]:
    """A client of the proxy a job would start: its routes, its keys, its meter."""
    config = EgressConfig(routes=model_routes(ctx.settings))
    with egress_proxy(config, JobMeter(ctx)) as proxy, client_for(proxy) as client:
        yield client


def events(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def the_job(db: Database, ctx: JobContext) -> Job:
    with db.session() as session:
        job = session.get(Job, ctx.lease.job_id)
        assert job is not None
        session.expunge(job)
        return job


def test_usage_and_cost_land_on_the_job_and_a_task_cap_stops_the_next_call(
    db: Database, edge: Edge, tmp_path: Path
) -> None:
    # The first call fits under the cap; what it spends does not leave room for a second.
    ctx = job_context(db, edge, tmp_path, budget=CALL_MICROS - 1)
    with metered_client(ctx) as client:
        first = client.post("/anthropic/v1/messages", json={**MESSAGE, "stream": True})
        second = client.post("/anthropic/v1/messages", json=MESSAGE)

    assert first.status_code == 200
    assert second.status_code == 403
    error = second.json()["error"]
    assert error["code"] == "budget_reached"
    assert error["message"].startswith(f"Budget reached: task {ctx.task_id} has spent")
    assert len(edge.seen) == 1  # the refused call never reached the upstream
    job = the_job(db, ctx)
    assert (job.model_requests, job.input_tokens, job.output_tokens) == (
        1,
        CALL_INPUT,
        ANTHROPIC_USAGE["output_tokens"],
    )
    assert job.cost_micros == CALL_MICROS
    kinds = [(e.kind, e.data.get("code")) for e in events(db)]
    assert ("egress.call", None) in kinds
    assert ("egress.refused", "budget_reached") in kinds
    text = json.dumps([(e.message, e.data) for e in events(db)])
    assert ANTHROPIC_KEY not in text and OPENAI_KEY not in text


def test_the_organizations_monthly_cap_applies_too(
    db: Database, edge: Edge, tmp_path: Path
) -> None:
    ctx = job_context(db, edge, tmp_path, budget=None)
    with db.session() as session:
        org = session.scalars(select(Organization)).one()
        org.monthly_budget_micros = CALL_MICROS  # spent by the first call
    with metered_client(ctx) as client:
        assert client.post("/anthropic/v1/messages", json=MESSAGE).status_code == 200
        refused = client.post("/openai/responses", json={"model": "gpt-5", "input": "x"})
    assert refused.status_code == 403
    assert "the organization has spent" in refused.json()["error"]["message"]
    assert len(edge.seen) == 1


def test_a_model_without_a_price_is_refused_under_a_cap(
    db: Database, edge: Edge, tmp_path: Path
) -> None:
    """Its calls would count as free: a sandbox could name one to spend without limit."""
    ctx = job_context(db, edge, tmp_path, budget=10_000_000)
    with metered_client(ctx) as client:
        unpriced = client.post(
            "/anthropic/v1/messages", json={**MESSAGE, "model": "claude-mystery-9"}
        )
        dated = client.post(
            "/anthropic/v1/messages", json={**MESSAGE, "model": "claude-sonnet-4-5-20250929"}
        )
    assert unpriced.status_code == 403
    assert "has no price" in unpriced.json()["error"]["message"]
    assert dated.status_code == 200  # a dated snapshot is priced as its model
    assert the_job(db, ctx).cost_micros == CALL_MICROS


def test_a_cancelled_job_makes_no_more_calls(db: Database, edge: Edge, tmp_path: Path) -> None:
    ctx = job_context(db, edge, tmp_path, budget=None)
    ctx.cancel.set()
    with metered_client(ctx) as client:
        answer = client.post("/anthropic/v1/messages", json=MESSAGE)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "cancelled"
    assert edge.seen == []


def test_a_call_that_would_pass_the_cap_is_refused_before_it_is_made(
    db: Database, edge: Edge, tmp_path: Path
) -> None:
    """As in the native loop: the call is estimated (its request's characters at three a
    token, its answer as long as the longest so far) and refused when it would pass the cap,
    even though the cap is not spent yet."""
    answer_micros = round(ANTHROPIC_USAGE["output_tokens"] * SONNET_OUT)
    # Room for the first call and for the next one's prompt, not for an answer as long.
    ctx = job_context(db, edge, tmp_path, budget=CALL_MICROS + answer_micros - 1)
    big = {**MESSAGE, "messages": [{"role": "user", "content": "x" * 3000}]}
    with metered_client(ctx) as client:
        with ctx.db.session() as session:
            task = session.get(Task, ctx.task_id)
            assert task is not None
            task.budget_micros = 2000  # the big request alone is estimated at ~3,000 micros
        too_big = client.post("/anthropic/v1/messages", json=big)
        with ctx.db.session() as session:
            task = session.get(Task, ctx.task_id)
            assert task is not None
            task.budget_micros = CALL_MICROS + answer_micros - 1
        first = client.post("/anthropic/v1/messages", json=MESSAGE)
        second = client.post("/anthropic/v1/messages", json=MESSAGE)
    assert too_big.status_code == 403
    assert "would pass it" in too_big.json()["error"]["message"]
    assert first.status_code == 200
    assert second.status_code == 403  # not spent (1,080 of 1,709), but the answer would pass
    assert "would pass it" in second.json()["error"]["message"]
    assert len(edge.seen) == 1
    assert the_job(db, ctx).cost_micros == CALL_MICROS < CALL_MICROS + answer_micros - 1
