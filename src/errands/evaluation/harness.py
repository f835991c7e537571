"""A whole run: the dataset, its own Errands store and embedded worker, instances a few at a
time, the results file (resumed: instances already in it are skipped) and the summary.

The run keeps its own data directory (``OUT/home``), so its projects and tasks never mix
with the user's; ``ERRANDS_HOME=OUT/home errands serve`` shows them. Its spending is capped
through the budget machinery every model call already passes: the run's projects belong to
an organization whose cap is what is left of ``--budget``, and every job checks it before
each model call (counting the call's run so far), so no call starts once it is spent.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from errands import runtime
from errands.accounts import budget as budgets
from errands.accounts import cost
from errands.domain import ACTIVE_STATES
from errands.errors import ConfigError, Conflict, InvalidInput
from errands.evaluation import summary
from errands.evaluation.dataset import Instance, load_dataset, load_environments
from errands.evaluation.repos import Repositories
from errands.evaluation.results import RESULTS_FILE, SUMMARY_FILE, InstanceResult, ResultsFile
from errands.evaluation.runner import Harness, run_instance
from errands.executors import create_executor
from errands.settings import Phase, Settings
from errands.store import Database, Job, Organization, Task
from errands.workflow import actions

ORG_NAME = "errands eval"
META_FILE = "run.json"
PHASES: tuple[Phase, ...] = ("research", "execute")


@dataclass(frozen=True)
class RunOptions:
    dataset: Path
    out: Path
    executor: str = "native"
    model: str | None = None
    limit: int | None = None
    jobs: int = 1
    budget_usd: float | None = None
    price: tuple[float, float] | None = None  # $ per million input, output tokens
    environments: Path | None = None
    mirrors: Path | None = None
    url_template: str = "https://github.com/{repo}.git"
    timeout: float = 3600.0
    poll: float = 0.5


@dataclass
class RunReport:
    results: list[InstanceResult] = field(default_factory=list)  # every instance done so far
    ran: int = 0
    skipped: int = 0  # done by an earlier run
    not_run: int = 0  # left when the budget ran out
    stopped_by_budget: bool = False


def default_out(dataset: Path, executor: str, model: str | None) -> Path:
    label = re.sub(r"[^\w.-]+", "_", model or "default-model")
    return Path("errands-eval") / f"{dataset.stem}-{executor}-{label}"


def run(options: RunOptions, on_result: Callable[[InstanceResult], None]) -> RunReport:
    # The selection every project uses (errands.executors): an unknown name, or an executor
    # that cannot run here (its CLI missing), is refused before anything starts.
    create_executor(options.executor)
    if options.jobs < 1:
        raise InvalidInput("--jobs must be at least 1.")
    instances = load_dataset(options.dataset, load_environments(options.environments))
    instances = instances[: options.limit] if options.limit is not None else instances
    results_file = ResultsFile(options.out / RESULTS_FILE)
    done = {r.instance_id: r for r in results_file.load()}
    todo = [i for i in instances if i.instance_id not in done]
    settings = _settings(options)
    model = _model_label(settings)
    _check_meta(options, model)
    report = RunReport(skipped=len(instances) - len(todo))
    report.results = [done[i.instance_id] for i in instances if i.instance_id in done]
    notes = _notes(options, model)
    if not todo:
        summary.write(
            options.out / SUMMARY_FILE, report.results, title=_title(options), notes=notes
        )
        return report
    settings.require_llm()
    db = runtime.open_database(settings)
    try:
        org_id = _prepare_store(db, settings, options)
        unpriced = _unpriced(db, settings, org_id)
        if unpriced:
            notes.append(
                f"cost: Errands knows no price for {', '.join(unpriced)} (give --price): its "
                "$0 here means unknown, not free; the tokens are counted"
            )
        harness = Harness(
            settings=settings,
            db=db,
            repos=Repositories(
                options.out / "repos", mirrors=options.mirrors, url_template=options.url_template
            ),
            origins=options.out / "origins",
            org_id=org_id,
            executor=options.executor,
            model=model,
            timeout=options.timeout,
            poll=min(options.poll, settings.worker_poll_interval * 4),
        )
        worker = runtime.build_worker(runtime.build_services(settings, db))
        worker.start()
        lock = threading.Lock()

        def finished(result: InstanceResult) -> None:
            with lock:
                results_file.append(result)
                report.results.append(result)
                report.ran += 1
                summary.write(
                    options.out / SUMMARY_FILE, report.results, title=_title(options), notes=notes
                )
            on_result(result)

        try:
            _run_all(harness, todo, options.jobs, org_id, finished, report)
        finally:
            worker.stop()
    finally:
        db.dispose()
    if report.stopped_by_budget:
        notes = [*notes, f"Budget reached: {report.not_run} instance(s) not run."]
    summary.write(options.out / SUMMARY_FILE, report.results, title=_title(options), notes=notes)
    return report


def _run_all(
    harness: Harness,
    todo: list[Instance],
    jobs: int,
    org_id: int,
    finished: Callable[[InstanceResult], None],
    report: RunReport,
) -> None:
    queue = list(reversed(todo))
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="eval") as pool:
        running: set[Future[InstanceResult]] = set()
        while queue or running:
            while queue and len(running) < jobs:
                # Once the budget stopped an instance (or is spent), no new one starts.
                if report.stopped_by_budget or _org_over_budget(harness.db, org_id):
                    report.stopped_by_budget = True
                    report.not_run = len(queue)
                    queue.clear()
                    break
                running.add(pool.submit(run_instance, harness, queue.pop()))
            if not running:
                break
            try:
                done, running = wait(running, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                # Instances in flight cancel their task and commands at their next look
                # (well under a second) and leave no result: the next run does them again.
                harness.stopping.set()
                wait(running)
                raise
            for future in done:
                result = future.result()
                finished(result)
                report.stopped_by_budget |= result.reason == "budget"


def _settings(options: RunOptions) -> Settings:
    overrides: dict[str, object] = {
        "home": (options.out / "home").absolute(),
        # The run's own store, whatever the environment points the user's Errands at.
        "database_url": None,
        "redis_url": None,
        "worker_concurrency": options.jobs + 1,
    }
    if options.model:
        overrides.update(model=options.model, research_model=None, execute_model=None)
    return Settings(**overrides)  # type: ignore[arg-type]


def _model_label(settings: Settings) -> str:
    names = []
    for phase in PHASES:
        try:
            names.append(settings.model_for(phase))
        except ConfigError:  # no model: require_llm says so where it matters
            names.append("")
    return names[0] if names[0] == names[1] else f"research={names[0]}, execute={names[1]}"


def _check_meta(options: RunOptions, model: str) -> None:
    """Results of one executor and model per directory: resuming with others would mix them."""
    path = options.out / META_FILE
    meta = {"executor": options.executor, "model": model, "dataset": str(options.dataset)}
    if path.exists():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        for key in ("executor", "model"):
            if earlier.get(key) != meta[key]:
                raise InvalidInput(
                    f"{options.out} holds results of {key} {earlier.get(key)!r}, not "
                    f"{meta[key]!r}: pass another --out to start a separate run."
                )
        return
    options.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _prepare_store(db: Database, settings: Settings, options: RunOptions) -> int:
    """The run's organization (its price and cap), and the tasks a crashed run left active
    cancelled: their instances run again from the start."""
    with db.session() as session:
        org = session.scalars(select(Organization).where(Organization.name == ORG_NAME)).first()
        if org is None:
            org = Organization(name=ORG_NAME)
            session.add(org)
            session.flush()
        if options.price is not None:
            for phase in PHASES:
                cost.set_price(session, org.id, settings.model_for(phase), *options.price)
        org.monthly_budget_micros = None
        if options.budget_usd is not None:
            _check_priced(session, settings, org.id)
            # The cap is per calendar month; the run's budget is for all of it.
            spent = int(session.scalar(select(func.sum(Job.cost_micros))) or 0)
            this_month = cost.org_month_cost(session, org.id)
            org.monthly_budget_micros = round(options.budget_usd * 1_000_000) - spent + this_month
        org_id = org.id
        stale = session.scalars(select(Task.id).where(Task.state.in_(list(ACTIVE_STATES)))).all()
    for task_id in stale:
        with contextlib.suppress(Conflict), db.session() as session:
            actions.cancel(session, task_id)
    return org_id


def _unpriced(db: Database, settings: Settings, org_id: int) -> list[str]:
    with db.session() as session:
        models = {cost.model_key(settings.model_for(phase)) for phase in PHASES}
        return sorted(m for m in models if cost.price_for(session, org_id, m) is None)


def _check_priced(session: Session, settings: Settings, org_id: int) -> None:
    for phase in PHASES:
        model = settings.model_for(phase)
        if cost.price_for(session, org_id, model) is None:
            raise InvalidInput(
                f"Errands knows no price for {cost.model_key(model)}, so --budget cannot be "
                "kept: give its "
                "price with --price INPUT OUTPUT (US dollars per million tokens)."
            )


def _org_over_budget(db: Database, org_id: int) -> bool:
    with db.session() as session:
        return budgets.org_over_budget(session, org_id) is not None


def _title(options: RunOptions) -> str:
    return f"errands eval: {options.dataset.name}"


def _notes(options: RunOptions, model: str) -> list[str]:
    notes = [
        f"dataset: {options.dataset}",
        f"executor: {options.executor}",
        f"model: {model}",
        f"results: {options.out / RESULTS_FILE} (this summary is computed from it)",
    ]
    if options.budget_usd is not None:
        notes.append(f"budget: ${options.budget_usd:,.2f}")
    return notes
